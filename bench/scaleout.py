"""`python -m bench scaleout`: MindRoute as several processes on one PostgreSQL, checked and measured.

Starts, on loopback, a local upstream, two app processes (`streamlit run app.py`) and the API as
`uvicorn mindroute.api:app --workers 2`, all on one PostgreSQL database it creates and drops, then shows with
figures that what one process does, the others see:

- sessions: a sign-in on app A is signed out on app B (its token is revoked);
- revocations: a key revoked (in the database, as any process would) is refused by every API worker within the
  stated bound (at most 1 s);
- limits: an RPM 10 rule admits exactly 10 of 40 calls spread over both workers;
- rollups: the usage rollups count every call the workers logged, and Logs rows = calls answered or refused;
- the audit trail: rows written by both app processes and the workers' sides chain, and `audit verify` holds;
- throughput: the same load through 1 worker and through 2, alternating over `--runs` runs, medians (the
  machine's cores bound the gain; wrk as the load when installed, so the load takes little of them).

Prints one JSON object; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from cryptography.fernet import Fernet

from bench import wrk
from bench.api import (
    PROJECT_ROOT,
    _free_port,
    _load,
    _serve,
    _set_up,
    _stop,
    _wait_until_up,
    bench_body,
)

START_TIMEOUT_S = 180.0
REVOCATION_BOUND_S = 1.0
RPM_RULE = 10
RPM_CALLS = 40
ADMIN_PASSWORD = "scale-out bench password"  # noqa: S105 - a throwaway account in a throwaway database


def _pg_database(base_url: str) -> tuple[str, Any]:
    from sqlalchemy import create_engine, make_url, text

    url = make_url(base_url)
    name = f"mindroute_scaleout_{os.getpid()}_{time.time_ns() % 10**6}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return url.set(database=name).render_as_string(hide_password=False), (admin, name)


def _drop_database(handle: Any) -> None:
    from sqlalchemy import text

    admin, name = handle
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _wait_for(url: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Until `url` answers 200: an app process starts Streamlit and migrates, slower than the API alone."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def _serve_workers(port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "mindroute.api:app", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=2)  # its log lines: not the JSON


def _serve_app(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true", "--logger.level", "warning"]
    return subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)


@contextmanager
def _running(*processes: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            _stop(process)


def _admin(engine: Any) -> Any:
    from mindroute.db import transaction
    from mindroute.services.users import create_user

    with transaction(engine) as session:
        return create_user(
            session, None, email="scaleout-admin@example.com", name="Admin", password=ADMIN_PASSWORD, role="admin"
        ).id


def check_sessions(engine: Any, app_a: str, app_b: str) -> dict[str, Any]:
    from mindroute.db import transaction
    from mindroute.http.web import SESSION_COOKIE
    from mindroute.services import auth

    form = {"email": "scaleout-admin@example.com", "password": ADMIN_PASSWORD}
    with httpx.Client(base_url=app_a) as client:
        signed_in = client.post("/auth/signin", data=form, headers={"origin": app_a})
    token = signed_in.cookies.get(SESSION_COOKIE)
    with transaction(engine) as session:
        live_before = token is not None and auth.resolve_session(session, token) is not None
    with httpx.Client(base_url=app_b, cookies={SESSION_COOKIE: token or ""}) as client:
        signed_out = client.post("/auth/signout", headers={"origin": app_b})
    with transaction(engine) as session:
        live_after = token is not None and auth.resolve_session(session, token) is not None
    ok = signed_in.status_code in (302, 303) and live_before and signed_out.status_code in (302, 303) and not live_after
    return {"ok": ok, "signed_in_on_a": live_before, "signed_out_on_b": not live_after}


def _call(client: httpx.Client, url: str, key: str, body: dict[str, Any]) -> int:
    return client.post(url, json=body, headers={"authorization": f"Bearer {key}"}).status_code


def check_revocation(engine: Any, api: str, key: str, model: str, admin_id: Any) -> dict[str, Any]:
    from sqlalchemy import select

    from mindroute.db import transaction
    from mindroute.models import ApiKey, User
    from mindroute.security import digest
    from mindroute.services import api_keys

    body = bench_body(model, tools=False)
    url = f"{api}/v1/chat/completions"
    with httpx.Client(timeout=30) as client:
        before = [_call(client, url, key, body) for _ in range(10)]
        with transaction(engine) as session:
            admin = session.get(User, admin_id)
            key_id = session.scalar(select(ApiKey.id).where(ApiKey.key == digest(key)))
            api_keys.revoke_key(session, admin, key_id)
        revoked_at = time.monotonic()
        answered_after: list[float] = []
        statuses: list[int] = []
        # Fresh connections, so the workers' accept queue spreads them over both processes.
        while time.monotonic() - revoked_at < REVOCATION_BOUND_S + 0.5:
            with httpx.Client(timeout=30) as fresh:
                status = _call(fresh, url, key, body)
            statuses.append(status)
            if status == 200:
                answered_after.append(time.monotonic() - revoked_at)
    last_ok = max(answered_after, default=0.0)
    ok = before == [200] * 10 and last_ok <= REVOCATION_BOUND_S and statuses[-1] == 401
    return {
        "ok": ok,
        "calls_after": len(statuses),
        "answered_after_revocation": len(answered_after),
        "last_answer_after_s": round(last_ok, 3),
        "bound_s": REVOCATION_BOUND_S,
    }


def check_limits(engine: Any, api: str, model: str) -> dict[str, Any]:
    """An RPM rule on a second key of the bench user: 40 calls at once over fresh connections (so both workers
    take some) admit exactly the rule's 10."""
    from sqlalchemy import select

    from mindroute.db import transaction
    from mindroute.models import User
    from mindroute.services import api_keys, limit_admin, limit_rules

    with transaction(engine) as session:
        owner = session.scalar(select(User).where(User.name == "bench"))
        issued = api_keys.create_key(session, owner, owner.id, "scale-out limits", None)
        session.flush()
        rule = limit_rules.validate_settings(rpm=RPM_RULE)
        limit_admin.set_limit(session, None, limit_rules.key_target(issued.key.id), rule)
        key = issued.plaintext
    body = bench_body(model, tools=False)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            headers = {"authorization": f"Bearer {key}"}
            calls = [client.post(f"{api}/v1/chat/completions", json=body, headers=headers) for _ in range(RPM_CALLS)]
            return [answer.status_code for answer in await asyncio.gather(*calls)]

    # The counters count per minute: a burst across a minute's end would meet two windows.
    while time.time() % 60 > 55:
        time.sleep(0.5)
    statuses = asyncio.run(burst())
    admitted = statuses.count(200)
    return {
        "ok": admitted == RPM_RULE and statuses.count(429) == RPM_CALLS - RPM_RULE,
        "rpm": RPM_RULE,
        "calls": RPM_CALLS,
        "admitted": admitted,
        "refused_429": statuses.count(429),
    }


def _wait_for_logs(engine: Any, expected: int, timeout_s: float = 30.0) -> int:
    from sqlalchemy import func, select

    from mindroute.db import transaction
    from mindroute.models import Log

    deadline = time.monotonic() + timeout_s
    while True:
        with transaction(engine) as session:
            rows = session.scalar(select(func.count()).select_from(Log)) or 0
        if rows >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def check_rollups(engine: Any, calls: int) -> dict[str, Any]:
    """Every answered or limit-refused call is one Logs row (`calls`), and both rollup levels count every row."""
    from sqlalchemy import func, select

    from mindroute.db import transaction
    from mindroute.models import UsageDailyRollup, UsageRollup

    rows = _wait_for_logs(engine, calls)
    with transaction(engine) as session:
        hourly = int(session.scalar(select(func.sum(UsageRollup.requests))) or 0)
        daily = int(session.scalar(select(func.sum(UsageDailyRollup.requests))) or 0)
    return {
        "ok": rows == calls and hourly == rows and daily == rows,
        "calls": calls,
        "logs_rows": rows,
        "hourly_rollup_requests": hourly,
        "daily_rollup_requests": daily,
    }


def check_audit(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "mindroute", "audit", "verify"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return {"ok": done.returncode == 0 and done.stdout.startswith("OK"), "verify": done.stdout.strip()}


def _one_run(url: str, body: dict[str, Any], key: str, requests: int, concurrency: int, load: str) -> dict[str, Any]:
    """One load run against `url`: calls per second, failures, and the calls sent (wrk's threads stop after
    their share, but the calls still in flight are answered and logged too)."""
    headers = {"authorization": f"Bearer {key}"}
    if load == "wrk":
        run = wrk.run(url, json.dumps(body).encode(), headers, requests, concurrency, stream=False)
        kinds = {kind: run.summary[kind] for kind in ("not_200", "socket_errors")}
        return {"rps": run.answered / run.seconds, "failures": run.failures, "sent": run.sent, "kinds": kinds}
    done = asyncio.run(_load(url, body, headers, requests, concurrency))
    return {"rps": requests / done.seconds, "failures": done.failures, "sent": requests, "kinds": {}}


def measure_throughput(
    env: dict[str, str], key: str, model: str, requests: int, concurrency: int, *, runs: int = 1, load: str = "wrk"
) -> dict[str, Any]:
    """The same load through 1 API worker and through 2, `runs` times each, the two alternating (so a change
    in the machine's load hits both alike); medians of calls per second, with the load average around it."""
    body = bench_body(model, tools=False)
    rps: dict[int, list[float]] = {1: [], 2: []}
    failures = {1: 0, 2: 0}
    kinds: dict[int, dict[str, int]] = {1: {}, 2: {}}  # with wrk: answers other than 200, and socket errors
    sent = 0
    load_before = os.getloadavg()[0]
    servers: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for workers in (1, 2):
            port = _free_port()
            servers[workers] = (_serve_workers(port, workers, env), f"http://127.0.0.1:{port}")
        for workers, (_process, base) in servers.items():
            _wait_for(f"{base}/healthz")
            warm = _one_run(f"{base}/v1/chat/completions", body, key, 50 * workers, min(concurrency, 8), load)
            sent += warm["sent"]  # warms every worker's connections and caches
        for _ in range(runs):
            for workers, (_process, base) in servers.items():
                run = _one_run(f"{base}/v1/chat/completions", body, key, requests, concurrency, load)
                rps[workers].append(run["rps"])
                failures[workers] += run["failures"]
                for kind, count in run["kinds"].items():
                    kinds[workers][kind] = kinds[workers].get(kind, 0) + count
                sent += run["sent"]
    finally:
        for process, _base in servers.values():
            _stop(process)
    figures: dict[str, Any] = {
        f"workers_{w}": {
            "rps": round(statistics.median(v), 1),
            "runs": [round(x, 1) for x in v],
            "failures": failures[w],
            **({"failure_kinds": kinds[w]} if kinds[w] else {}),
        }
        for w, v in rps.items()
    }
    figures["gain"] = round(figures["workers_2"]["rps"] / figures["workers_1"]["rps"], 2)
    figures.update(cores=os.cpu_count(), load=load, load_average=[round(load_before, 2), round(os.getloadavg()[0], 2)])
    figures["calls_sent"] = sent
    return figures


def run_scaleout(
    database_url: str, requests: int, concurrency: int, *, runs: int = 1, load: str = "wrk"
) -> dict[str, Any]:
    url, handle = _pg_database(database_url)
    env = dict(os.environ)
    env.update({"MINDROUTE_DATABASE_URL": url, "MINDROUTE_SECRET_KEY": Fernet.generate_key().decode()})
    env.pop("MINDROUTE_REDIS_URL", None)
    os.environ.update({"MINDROUTE_DATABASE_URL": url, "MINDROUTE_SECRET_KEY": env["MINDROUTE_SECRET_KEY"]})
    upstream_port = _free_port()
    upstream = _serve("bench.api:upstream_app", upstream_port, env)
    result: dict[str, Any] = {}
    try:
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        _wait_until_up(upstream_url)
        key_and_model, engine, _rules = _set_up(url, upstream_url)
        key, model = key_and_model.split("\n")
        admin_id = _admin(engine)
        ports = [_free_port() for _ in range(3)]
        app_a, app_b, api = (f"http://127.0.0.1:{port}" for port in ports)
        processes = [_serve_app(ports[0], env), _serve_app(ports[1], env), _serve_workers(ports[2], 2, env)]
        with _running(*processes):
            for base in (app_a, app_b, api):
                _wait_for(f"{base}/healthz")
            result["throughput"] = measure_throughput(env, key, model, requests, concurrency, runs=runs, load=load)
            calls = result["throughput"]["calls_sent"]  # the throughput runs' calls and their warm-ups
            result["sessions"] = check_sessions(engine, app_a, app_b)
            result["limits"] = check_limits(engine, api, model)
            calls += RPM_CALLS
            result["revocation"] = check_revocation(engine, api, key, model, admin_id)
            calls += 10 + result["revocation"]["calls_after"]
        result["rollups"] = check_rollups(engine, calls)
        result["audit"] = check_audit(env)
        engine.dispose()
    finally:
        _stop(upstream)
        _drop_database(handle)
    result["ok"] = all(part.get("ok", True) for part in result.values() if isinstance(part, dict))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scaleout", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server to create the run's database on (default: %(default)s)",
    )
    parser.add_argument("--requests", type=int, default=2000, help="calls per throughput run (default %(default)s)")
    # Enough calls in flight to keep two workers busy: at 32 on two cores one worker already had them all.
    parser.add_argument("--concurrency", type=int, default=128, help="default %(default)s")
    parser.add_argument("--runs", type=int, default=3, help="throughput runs per worker count (default %(default)s)")
    parser.add_argument(
        "--load",
        choices=("wrk", "python"),
        default="wrk" if wrk.available() else "python",
        help="the load generator: wrk (C; default when installed) or the bench's own asyncio client",
    )
    args = parser.parse_args(argv)
    result = run_scaleout(args.database_url, args.requests, args.concurrency, runs=args.runs, load=args.load)
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
