"""The three rollup levels (hourly, daily, per model) on both databases: kept in step by batches,
equal to a rebuild and to the raw rows, consistent after pruning; and the Usage page read from them."""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.orm import Session

from mindroute.analytics.filter import UsageFilter
from mindroute.analytics.histograms import decode_histogram, latency_bucket
from mindroute.analytics.levels import BY_MODEL, DAILY, HOURLY, LEVELS
from mindroute.analytics.plan import window_pieces
from mindroute.analytics.rollups import add_logs_to_rollups, derive_levels_from_hourly, prune_logs, rebuild_rollups
from mindroute.db import transaction
from mindroute.models import Log
from mindroute.services.usage import usage_page
from tests.test_analytics import T0, expected, insert_rows, log_row, make_people, tiles


def snapshot(engine: Engine) -> dict[str, set]:
    """Every level's rows, histograms decoded (their byte order is not part of the contract)."""
    out: dict[str, set] = {}
    with Session(engine) as session:
        for level in LEVELS:
            t = level.table
            out[level.name] = {
                (
                    row.bucket,
                    row.dimkey,
                    row.requests,
                    row.errors,
                    row.tokens,
                    row.prompttokens,
                    row.completiontokens,
                    row.durationsum,
                    row.durationcount,
                    tuple(sorted(decode_histogram(row.latency).items())),
                )
                for row in session.execute(select(t))
            }
    return out


def random_rows(people, count: int, seed: int, start: datetime = T0, days: int = 4) -> list[dict]:
    _admin, alice, bob, p1, p2 = people
    rng = random.Random(seed)
    key = str(uuid.UUID(int=seed))
    rows = []
    for _ in range(count):
        provider, model = rng.choice([(p1, "m-big"), (p1, "m-small"), (p2, "m-free"), (None, None)])
        status = rng.choice([200] * 6 + [429, 500, None])
        rows.append(
            log_row(
                start + timedelta(seconds=rng.randrange(days * 86400)),
                rng.choice([alice, bob, None]),
                provider,
                model,
                status=status,
                prompt=rng.randrange(0, 2000),
                completion=rng.randrange(0, 500),
                duration=None if rng.random() < 0.05 else rng.randrange(0, 20_000),
                source=rng.choice(["playground", "api", None]),
                api_key=key if rng.random() < 0.3 else None,
            )
        )
    return rows


def write_in_batches(engine: Engine, rows: list[dict], batch: int) -> None:
    """As the call logger does: a Core INSERT of the batch, then add_logs_to_rollups, one transaction."""
    for offset in range(0, len(rows), batch):
        chunk = rows[offset : offset + batch]
        with transaction(engine) as session:
            session.execute(insert(Log), chunk)
            add_logs_to_rollups(session, [Log(**row) for row in chunk])


@pytest.fixture
def people(engine: Engine):
    return make_people(engine)


def test_batches_equal_a_rebuild_at_every_level(engine: Engine, people) -> None:
    rows = random_rows(people, 1500, seed=1)
    write_in_batches(engine, rows[:700], batch=500)
    write_in_batches(engine, rows[700:], batch=137)  # later batches add to rows that exist
    live = snapshot(engine)
    assert all(sum(r[2] for r in live[level.name]) == len(rows) for level in LEVELS)
    rebuild_rollups(engine, progress=False)
    assert snapshot(engine) == live


def test_coarse_levels_agree_with_raw_rows(engine: Engine, people) -> None:
    rows = random_rows(people, 1200, seed=2)
    insert_rows(engine, rows)
    rebuild_rollups(engine, progress=False)
    by_model: dict[tuple, Counter] = defaultdict(Counter)
    by_day: dict[tuple, Counter] = defaultdict(Counter)
    for r in rows:
        hour = r["created_at"].replace(minute=0, second=0, microsecond=0)
        for sums in (by_model[(hour, r["provider_id"], r["model_id"])], by_day[(hour.date(), r["user_id"])]):
            sums["requests"] += 1
            sums["tokens"] += r["tokens_used"] or 0
            sums["errors"] += int(r["status_code"] is not None and r["status_code"] >= 400)
            if r["duration"] is not None:
                sums[("latency", latency_bucket(r["duration"]))] += 1
    with Session(engine) as session:
        got_model: dict[tuple, Counter] = defaultdict(Counter)
        for row in session.execute(select(BY_MODEL.table)):
            sums = got_model[(row.bucket, row.providerid, row.modelid)]
            sums.update({"requests": row.requests, "tokens": row.tokens, "errors": row.errors})
            sums.update({("latency", i): c for i, c in decode_histogram(row.latency).items()})
        got_day: dict[tuple, Counter] = defaultdict(Counter)
        for row in session.execute(select(DAILY.table)):
            assert row.bucket == row.bucket.replace(hour=0)
            sums = got_day[(row.bucket.date(), row.userid)]
            sums.update({"requests": row.requests, "tokens": row.tokens, "errors": row.errors})
            sums.update({("latency", i): c for i, c in decode_histogram(row.latency).items()})
    strip = lambda table: {k: +v for k, v in table.items()}  # noqa: E731 - drop zero counts
    assert strip(got_model) == strip(by_model)
    assert strip(got_day) == strip(by_day)


def test_prune_keeps_every_level_consistent(engine: Engine, people) -> None:
    rows = random_rows(people, 1500, seed=3)
    write_in_batches(engine, rows, batch=500)
    now = T0 + timedelta(days=4)
    # The cutoff falls inside an hour and a day: both partial periods are subtracted call by call.
    cutoff = now - timedelta(days=2, hours=5, minutes=17)
    deleted = prune_logs(engine, 2, batch_rows=111, now=now - timedelta(hours=5, minutes=17), progress=False)
    assert deleted == sum(1 for r in rows if r["created_at"] < cutoff)
    pruned = snapshot(engine)
    assert all(sum(r[2] for r in pruned[level.name]) == len(rows) - deleted for level in LEVELS)
    rebuild_rollups(engine, progress=False)
    assert snapshot(engine) == pruned


def test_migration_fills_the_new_levels_from_the_hourly_one(engine: Engine, people) -> None:
    insert_rows(engine, random_rows(people, 800, seed=4))
    rebuild_rollups(engine, progress=False)
    want = snapshot(engine)
    with engine.begin() as conn:
        conn.execute(delete(DAILY.table))
        conn.execute(delete(BY_MODEL.table))
        derive_levels_from_hourly(conn)
    assert snapshot(engine) == want


def test_window_pieces_cover_the_hours_once() -> None:
    for first, last in [
        (datetime(2026, 10, 1, 15), datetime(2026, 10, 31, 7)),
        (datetime(2026, 10, 1, 0), datetime(2026, 10, 3, 0)),
        (datetime(2026, 10, 1, 3), datetime(2026, 10, 1, 20)),
        (datetime(2026, 10, 1, 3), datetime(2026, 10, 2, 2)),
    ]:
        pieces = window_pieces(first, last)
        covered = []
        for level, low, high in pieces:
            assert level in (HOURLY, DAILY)
            if level is DAILY:
                assert low == low.replace(hour=0) and high == high.replace(hour=0)
            covered.append((low, high))
        assert covered[0][0] == first and covered[-1][1] == last
        assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))


@pytest.mark.parametrize("zone", ["Asia/Seoul", "Asia/Kolkata"])
@pytest.mark.parametrize(
    "extra",
    [{}, {"source": "playground"}, {"outcome": "error"}, {"models": ("m-big", "m-free")}],
    ids=["all", "playground", "errors", "models"],
)
def test_the_page_adds_up_on_every_read_path(engine: Engine, people, zone: str, extra: dict) -> None:
    """Unfiltered and provider/model filters read the per-model level; other filters the hourly one.
    Either way the charts, the tiles and the breakdowns agree with the raw rows."""
    rows = random_rows(people, 2500, seed=5, days=9)
    write_in_batches(engine, rows, batch=500)
    admin = people[0]
    start, end = T0 + timedelta(days=1, hours=2, minutes=31), T0 + timedelta(days=8, hours=4, minutes=9)
    keep = {
        "source": lambda r: r["request_body"].get("source") == "playground",
        "outcome": lambda r: r["status_code"] is not None and r["status_code"] >= 400,
        "models": lambda r: r["model_id"] in ("m-big", "m-free"),
    }
    want = expected(rows, start, end, keep[next(iter(extra))] if extra else lambda r: True)
    with Session(engine) as session:
        page = usage_page(session, admin, UsageFilter(start, end, timezone=zone, **extra))
    got = tiles(page)
    assert (got["requests"], got["tokens"]) == (want["requests"], want["tokens"])
    assert page.requests["requests"].sum() == want["requests"]
    assert page.requests["errors"].sum() == want["errors"]
    assert page.tokens_by_model["tokens"].sum() == want["tokens"]
    assert page.status_codes["requests"].sum() == want["requests"]
    for table in (page.breakdown_provider_model, page.breakdown_user):
        assert table["requests"].sum() == want["requests"]
        assert table["tokens"].sum() == want["tokens"]
    assert page.latency_histogram["calls"].sum() == len(want["durations"])
    previous = expected(rows, start - (end - start), start, keep[next(iter(extra))] if extra else lambda r: True)
    assert next(t for t in page.tiles if t.key == "requests").previous == previous["requests"]


def test_concurrent_batches_neither_deadlock_nor_lose_calls(engine: Engine, people) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite writes one transaction at a time")
    batches = [random_rows(people, 300, seed=10 + n, days=1) for n in range(8)]
    errors: list[BaseException] = []

    def worker(mine: list[list[dict]]) -> None:
        try:
            for rows in mine:
                write_in_batches(engine, rows, batch=300)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(batches[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    live = snapshot(engine)
    assert all(sum(r[2] for r in live[level.name]) == 2400 for level in LEVELS)
    rebuild_rollups(engine, progress=False)
    assert snapshot(engine) == live
