"""Times the admin user list (search, sort, paginate) on a large synthetic user table.

    python -m bench.users                       # a throw-away SQLite file
    python -m bench.users --database-url URL    # an EMPTY database; the bench users are removed after

Prints the median of several runs of `admin_users.list_users` (count + one page) per case.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.engine import URL, make_url

from mindroute.db import make_engine, transaction, upgrade
from mindroute.models import User
from mindroute.services.admin_users import SORT_COLUMNS, UserFilter, list_users

BENCH_DOMAIN = "bench.mindroute.invalid"
BATCH_ROWS = 5000
RUNS = 5
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Ritchie")


def fill(engine: Engine, users: int) -> None:
    rng = random.Random(4)
    start = datetime(2024, 1, 1)
    # Not a bcrypt hash on purpose: verify_password rejects it, so nobody can sign in as a bench user.
    unusable_hash = "!" * 60
    for offset in range(0, users, BATCH_ROWS):
        rows = []
        for n in range(offset, min(offset + BATCH_ROWS, users)):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "email": f"{first}.{last}.{n}@{BENCH_DOMAIN}".lower(),
                    "name": f"{first} {last} {n}",
                    "password": unusable_hash,
                    "role": "admin" if n % 1000 == 0 else "user",
                    "is_active": n % 17 != 0,
                    "last_login": None if n % 3 == 0 else start + timedelta(minutes=rng.randrange(1_000_000)),
                    "created_at": start + timedelta(minutes=n),
                    "updated_at": start + timedelta(minutes=n),
                }
            )
        with transaction(engine) as session:
            session.execute(insert(User), rows)


def median_ms(call: Callable[[], object]) -> float:
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def run(url: URL, users: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    with transaction(engine) as session:
        if session.scalar(select(func.count()).select_from(User)):
            raise SystemExit("refusing to run: the database already has users (give an empty database)")
    started = time.perf_counter()
    fill(engine, users)
    print(f"{engine.dialect.name}: inserted {users:,} users in {time.perf_counter() - started:.1f} s")

    def page(where: UserFilter | None = None, **options: object) -> Callable[[], object]:
        def call() -> object:
            with transaction(engine) as session:
                return list_users(session, None, where, **options)  # type: ignore[arg-type]

        return call

    cases: list[tuple[str, Callable[[], object]]] = [("first page, newest first (default)", page())]
    for sort in SORT_COLUMNS:
        for descending in (False, True):
            cases.append((f"sort {sort} {'desc' if descending else 'asc'}", page(sort=sort, descending=descending)))
    cases += [
        ("last page (offset ~100k, page_size 50)", page(page=users // 50)),
        ("search 'hopper' (1 in 10 match)", page(UserFilter(search="hopper"))),
        ("search 'HOPPER 4242' (one match)", page(UserFilter(search="HOPPER 4242"))),
        ("search 'nobody' (no match)", page(UserFilter(search="nobody"))),
        ("search 'turing' + admins + active", page(UserFilter(search="turing", role="admin", is_active=True))),
        ("search 'lovelace', sort name, page 20", page(UserFilter(search="lovelace"), sort="name", page=20)),
    ]
    try:
        for label, call in cases:
            print(f"  {label:<45} {median_ms(call):8.1f} ms")
    finally:
        with transaction(engine) as session:
            session.execute(delete(User).where(User.email.like(f"%@{BENCH_DOMAIN}")))
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="an empty database (default: a temporary SQLite file)")
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    if args.database_url:
        run(make_url(args.database_url), args.users)
        return
    with tempfile.TemporaryDirectory() as folder:
        run(URL.create("sqlite", database=str(Path(folder) / "bench.db")), args.users)


if __name__ == "__main__":
    main()
