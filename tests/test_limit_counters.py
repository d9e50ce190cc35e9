"""The minute counters on SQLite, PostgreSQL and a real Redis: all-or-none counting, clocks that disagree, tokens
added only in their minute, the bound across two OS processes (RPM 10, 100 concurrent calls: exactly 10
admitted, 0 over), and a Redis that is down falling back to the database."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from mindroute import config
from mindroute.config import PROJECT_ROOT
from mindroute.db import counters_file, transaction
from mindroute.models import LimitCounter
from mindroute.services import limit_counters, limits
from mindroute.services.limit_counters import CounterLimit, DatabaseStore, RedisStore
from mindroute.services.limit_rules import minute_window
from tests.limit_helpers import free_port, make_rule, redis_url  # noqa: F401 - the fixture
from tests.test_limits_check import NOW, run

WINDOW = minute_window(NOW)


@pytest.fixture(autouse=True)
def fresh_stores() -> Iterator[None]:
    limits.close_stores()
    yield
    limits.close_stores()


def _key() -> str:
    return f"user:{uuid.uuid4()}"


def _row(engine: Engine, key: str) -> tuple[int, int, int] | None:
    with transaction(engine) as session:
        row = session.get(LimitCounter, key)
        return (row.window_start, row.requests, row.tokens) if row is not None else None


# --- the database store --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_all_or_none(engine: Engine, mode: str) -> None:
    store = DatabaseStore(engine)
    a, b = CounterLimit(_key(), 5, None), CounterLimit(_key(), 1, None)

    def take(*chosen: CounterLimit) -> limit_counters.CounterOutcome:
        return store.take(chosen, WINDOW) if mode == "sync" else run(store.atake(chosen, WINDOW))

    first = take(a, b)
    assert first.admitted and first.counts == {a.key: (1, 0), b.key: (1, 0)}
    refused = take(a, b)
    assert not refused.admitted and refused.counts == {a.key: (1, 0), b.key: (1, 0)}
    assert _row(engine, a.key) == (WINDOW, 1, 0)
    assert take(a).counts == {a.key: (2, 0)}
    store.close()


def test_a_slow_clock_counts_into_the_newer_minute(engine: Engine) -> None:
    store = DatabaseStore(engine)
    limit = CounterLimit(_key(), 2, None)
    assert store.take([limit], WINDOW + 1).admitted
    behind = store.take([limit], WINDOW)  # this process's clock is a minute behind
    assert behind.admitted and _row(engine, limit.key) == (WINDOW + 1, 2, 0)
    assert not store.take([limit], WINDOW).admitted  # never a restart back to the older minute
    assert store.take([limit], WINDOW + 2).counts == {limit.key: (1, 0)}
    store.close()


def test_tokens_are_added_in_their_minute_only(engine: Engine) -> None:
    store = DatabaseStore(engine)
    limit = CounterLimit(_key(), None, 100)
    store.take([limit], WINDOW)
    with transaction(engine) as session:
        store.add_tokens(session, [limit.key], WINDOW, 30)
        store.add_tokens(session, [limit.key], WINDOW - 1, 500)  # a call of the minute before
    assert _row(engine, limit.key) == (WINDOW, 1, 30)
    with transaction(engine) as session:
        store.add_tokens(session, [limit.key], WINDOW, 70)
    assert store.take([limit], WINDOW).admitted is False
    assert store.take([limit], WINDOW + 1).counts == {limit.key: (1, 0)}
    store.close()


def test_record_tokens_joins_the_callers_transaction(engine: Engine) -> None:
    rule = make_rule(tpm=10)
    admitted = limits.check(engine, (rule,), NOW)
    assert admitted.charges is not None
    with pytest.raises(RuntimeError), transaction(engine) as session:
        limits.record_tokens(session, admitted.charges, 50, NOW)
        raise RuntimeError("the Logs row failed")
    assert _row(engine, rule.counter_key) == (WINDOW, 1, 0)  # rolled back with it


def test_sqlite_counters_never_wait_for_the_logs_writer(engine: Engine) -> None:
    """SQLite: the counters are in their own file, so a call's counters are taken on the event loop (no wait,
    busy timeout 0) while another connection holds the database's write lock, as the Logs writer's batch does."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's one write lock per file")
    assert engine.url.database is not None
    assert counters_file(engine.url.database).exists()
    store = DatabaseStore(engine)
    limit = CounterLimit(_key(), 3, None)
    writer = engine.raw_connection()
    try:
        writer.execute("BEGIN")
        writer.execute("INSERT INTO alembic_version (version_num) VALUES ('held')")  # the database's write lock
        took = [store._sqlite_take([limit], WINDOW, 0) for _ in range(4)]
        assert [outcome.admitted for outcome in took] == [True, True, True, False]  # RPM 3 holds meanwhile
        assert run(store.atake([limit], WINDOW)).counts == {limit.key: (3, 0)}
    finally:
        writer.rollback()
        writer.close()
    with transaction(engine) as session:  # the table the app's sessions see is the one in the counters' file
        assert session.get(LimitCounter, limit.key) is not None
        files = {row[1]: row[2] for row in session.connection().exec_driver_sql("PRAGMA database_list")}
    assert Path(files["counters"]) == counters_file(engine.url.database).resolve()
    store.close()


def test_token_adds_lock_counters_in_the_upserts_order(engine: Engine) -> None:
    """PostgreSQL: an upsert locks its counters in key order; adding tokens must too. Here the rows lie in the
    table against key order and the planner may only scan it, so a plain UPDATE would take k2 first: while
    an upsert holds k1 and wants k2, that is a deadlock (a 1 s stall for every call on them, then an error)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's (SQLite has one write lock per file)")
    k1, k2 = f"key:a-{uuid.uuid4()}", f"user:z-{uuid.uuid4()}"
    with transaction(engine) as session:
        for key in (k2, k1):  # k2 first in the heap
            session.add(LimitCounter(counter_key=key, window_start=WINDOW, requests=1, tokens=0))
    database = engine.url.database
    with engine.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{database}" SET enable_indexscan = off')
        conn.exec_driver_sql(f'ALTER DATABASE "{database}" SET enable_bitmapscan = off')
        conn.commit()
    engine.dispose()  # new connections take the settings
    upsert = engine.connect()
    try:
        upsert.exec_driver_sql("SELECT 1 FROM limitcounters WHERE counterkey = %s FOR UPDATE", (k1,))  # holds k1

        def add() -> None:
            with transaction(engine) as session:
                limit_counters.add_tokens_in_database(session, [k2, k1], WINDOW, 7)

        worker = threading.Thread(target=add)
        worker.start()
        time.sleep(0.5)  # the add waits for k1 now
        upsert.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
        started = time.monotonic()
        upsert.exec_driver_sql("SELECT 1 FROM limitcounters WHERE counterkey = %s FOR UPDATE", (k2,))  # k2 is free
        assert time.monotonic() - started < 0.5
        upsert.commit()
        worker.join(timeout=10)
        assert not worker.is_alive()
    finally:
        upsert.close()
        with engine.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" RESET enable_indexscan')
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" RESET enable_bitmapscan')
            conn.commit()
        engine.dispose()
    assert _row(engine, k1) == (WINDOW, 1, 7) and _row(engine, k2) == (WINDOW, 1, 7)


# --- two processes -------------------------------------------------------------------------------------


def _two_processes(engine: Engine, tmp_path: Path, extra_env: dict[str, str]) -> list[dict[str, int]]:
    key = _key()
    go = tmp_path / "go"
    env = {**os.environ, **extra_env}
    url = engine.url.render_as_string(hide_password=False)
    command = [sys.executable, "-m", "tests.limit_worker", url, key, "10", "50", NOW.isoformat(), str(go)]
    workers = [
        subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    time.sleep(1.0)  # both import and connect, then wait for the go file
    go.write_text("go")
    outcomes = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    return outcomes


@pytest.mark.parametrize("store", ["database", "redis"])
def test_two_processes_admit_exactly_rpm(
    engine: Engine, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    extra = {"MINDROUTE_REDIS_URL": request.getfixturevalue("redis_url")} if store == "redis" else {}
    outcomes = _two_processes(engine, tmp_path, extra)
    assert sum(o["admitted"] + o["refused"] for o in outcomes) == 100
    assert sum(o["admitted"] for o in outcomes) == 10  # the bound: 0 over


# --- Redis -----------------------------------------------------------------------------------------------


@pytest.fixture
def with_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    monkeypatch.setenv("MINDROUTE_REDIS_URL", redis_url)
    config.get_settings.cache_clear()  # settings are read once per process
    return redis_url


def test_counter_store_is_redis_when_configured(engine: Engine, with_redis: str) -> None:
    store = limits.counter_store(engine)
    assert isinstance(store, RedisStore) and store is limits.counter_store(engine)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_redis_refuses_at_rpm_and_counts_all_or_none(engine: Engine, with_redis: str, mode: str) -> None:
    user = make_rule(rpm=5)
    key = make_rule(f"key:{uuid.uuid4()}", rpm=2, label="the limit on API key 'ci'")

    def call(*rules: object) -> limits.LimitCheck:
        chosen = tuple(rules)  # type: ignore[arg-type]
        return limits.check(engine, chosen, NOW) if mode == "sync" else run(limits.acheck(engine, chosen, NOW))

    assert [call(user, key).refusal is None for _ in range(3)] == [True, True, False]
    refused = call(user, key)
    assert refused.refusal is not None and refused.refusal.rule_target == key.target
    assert refused.headers["x-ratelimit-remaining-requests"] == "0" and refused.headers["retry-after"] == "23"
    client = redis.Redis.from_url(with_redis)
    assert int(client.hget(limit_counters.redis_key(user.counter_key, WINDOW), "r")) == 2  # refused: not counted
    assert 0 < client.ttl(limit_counters.redis_key(user.counter_key, WINDOW)) <= limit_counters.REDIS_TTL_S
    assert call(user).headers["x-ratelimit-remaining-requests"] == "2"
    assert _row(engine, user.counter_key) is None  # nothing in the database
    assert call(user, key).refusal is not None
    assert call(make_rule(user.counter_key, rpm=5)).refusal is None  # 4 of 5
    fresh = limits.check(engine, (user, key), NOW + timedelta(minutes=1))
    assert fresh.refusal is None and fresh.headers["x-ratelimit-remaining-requests"] == "1"


def test_redis_tpm_with_record_tokens(engine: Engine, with_redis: str) -> None:
    rule = make_rule(tpm=100)
    admitted = limits.check(engine, (rule,), NOW)
    assert admitted.charges is not None
    with transaction(engine) as session:
        limits.record_tokens(session, admitted.charges, 100, NOW)
    refused = limits.check(engine, (rule,), NOW)
    assert refused.refusal is not None and refused.refusal.type == "tokens"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert _row(engine, rule.counter_key) is None
    assert limits.check(engine, (rule,), NOW + timedelta(minutes=1)).refusal is None


def test_redis_100_concurrent_checks_in_one_process(engine: Engine, with_redis: str) -> None:
    rule = make_rule(rpm=10)

    async def many() -> list[limits.LimitCheck]:
        return await asyncio.gather(*(limits.acheck(engine, (rule,), NOW) for _ in range(100)))

    assert sum(r.refusal is None for r in run(many())) == 10


def test_a_redis_that_is_down_falls_back_to_the_database(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MINDROUTE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    config.get_settings.cache_clear()  # settings are read once per process
    monkeypatch.setattr(limit_counters, "REDIS_RETRY_S", 0.0)  # try Redis on every call
    rule = make_rule(rpm=2, tpm=50)
    with caplog.at_level(logging.WARNING, logger="mindroute.limits"):
        first = limits.check(engine, (rule,), NOW)
        second = run(limits.acheck(engine, (rule,), NOW))
        third = limits.check(engine, (rule,), NOW)
        assert first.charges is not None
        with transaction(engine) as session:
            limits.record_tokens(session, first.charges, 20, NOW)
    assert (first.refusal, second.refusal) == (None, None)
    assert third.refusal is not None and third.refusal.type == "requests"
    assert _row(engine, rule.counter_key) == (WINDOW, 2, 20)  # counted in the database
    store = limits.counter_store(engine)
    assert isinstance(store, RedisStore) and store.failures == 4
    warnings = [r for r in caplog.records if r.name == "mindroute.limits"]
    assert len(warnings) == 1 and "Redis did not answer" in warnings[0].getMessage()


def test_redis_is_tried_again_after_it_comes_back(engine: Engine, with_redis: str) -> None:
    store = limits.counter_store(engine)
    assert isinstance(store, RedisStore)
    store.went_away(ConnectionError("gone"))
    rule = make_rule(rpm=3)
    assert limits.check(engine, (rule,), NOW).refusal is None
    assert _row(engine, rule.counter_key) == (WINDOW, 1, 0)  # within REDIS_RETRY_S: the database
    store._down_until = 0.0
    assert limits.check(engine, (rule,), NOW).headers["x-ratelimit-remaining-requests"] == "2"  # Redis: its own count
    assert _row(engine, rule.counter_key) == (WINDOW, 1, 0)
