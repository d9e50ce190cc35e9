"""Every bulk write of Logs leaves the three rollup levels in step with them, on both databases:
seed-demo, restore, copy-to and prune-logs; the check that finds the days that are not; and the
Usage page's check of its own range."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

import mindroute.db as db
from mindroute.analytics.in_step import days_out_of_step
from mindroute.analytics.levels import LEVELS, day_of
from mindroute.analytics.rollups import rebuild_rollups
from mindroute.cli import seed
from mindroute.cli.transfer import copy_database, row_counts
from mindroute.db import make_engine, transaction
from mindroute.models import Log, utcnow
from mindroute.services.usage import rollup_check
from tests import test_cli
from tests.conftest import create_pg_database, drop_pg_database
from tests.test_analytics import insert_rows, log_row, make_people
from tests.test_cli import both, cli, use_database
from tests.test_rollups_levels import random_rows, snapshot, write_in_batches

SUMS = (Log.tokens_used, Log.prompt_tokens, Log.completion_tokens)


def log_totals(session: Session) -> tuple[int, ...]:
    """count(*) and the token sums of Logs."""
    row = session.execute(select(func.count(), *(func.coalesce(func.sum(c), 0) for c in SUMS))).one()
    return tuple(int(v) for v in row)


def level_totals(session: Session) -> dict[str, tuple[int, ...]]:
    out = {}
    for level in LEVELS:
        c = level.table.c
        columns = (c.requests, c.tokens, c.prompttokens, c.completiontokens)
        row = session.execute(select(*(func.coalesce(func.sum(col), 0) for col in columns))).one()
        out[level.name] = tuple(int(v) for v in row)
    return out


def assert_in_step(engine: Engine) -> None:
    """Every level sums to Logs' count and token sums, no day is out of step, and a rebuild from
    the raw rows changes no rollup row (sums, latency histograms, dimensions)."""
    with Session(engine) as session:
        want = log_totals(session)
        assert want[0] > 0, "nothing to compare"
        assert level_totals(session) == dict.fromkeys((level.name for level in LEVELS), want)
        assert days_out_of_step(session) == []
    live = snapshot(engine)
    rebuild_rollups(engine, progress=False)
    assert snapshot(engine) == live


def stale_rows(engine: Engine, people, when: datetime, count: int) -> list[dict]:
    """Logs rows inserted behind the rollups' back, as SQL by hand would."""
    _admin, alice, _bob, p1, _p2 = people
    rows = [log_row(when + timedelta(minutes=7 * i), alice, p1, "m-big", prompt=100 + i) for i in range(count)]
    insert_rows(engine, rows)
    return rows


cli_db = test_cli.cli_db  # the empty database in-process CLI calls use


@pytest.fixture
def people(engine: Engine):
    return make_people(engine)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # Several batches (and transactions) per load, on both databases, with a day shared by two.
    monkeypatch.setattr(seed, "SQLITE_BATCH_ROWS", 700)
    monkeypatch.setattr(seed, "PG_BATCH_ROWS", 700)


# --- seed-demo --------------------------------------------------------------------------------


def test_seed_demo_leaves_every_level_in_step(engine: Engine, people, small_batches) -> None:
    # Calls the app logged already in the same days: the seed's rebuilt days must keep them.
    real = random_rows(people, 400, seed=21, start=utcnow() - timedelta(days=4), days=4)
    write_in_batches(engine, real, batch=200)
    seed.seed_demo(engine, rows=3000, days=5, seed=3, progress=False)
    assert_in_step(engine)
    seed.seed_demo(engine, rows=1100, days=2, seed=4, progress=False)  # adds to existing rollup rows
    assert_in_step(engine)
    with Session(engine) as session:
        assert log_totals(session)[0] == 400 + 3000 + 1100


def test_an_interrupted_seed_keeps_whole_batches_in_step(engine: Engine, small_batches, monkeypatch) -> None:
    real_batches = seed.generate_log_batches

    def two_then_stop(*args, **kwargs):
        batches = real_batches(*args, **kwargs)
        yield next(batches)
        yield next(batches)
        raise KeyboardInterrupt

    monkeypatch.setattr(seed, "generate_log_batches", two_then_stop)
    with pytest.raises(KeyboardInterrupt):
        seed.seed_demo(engine, rows=5000, days=10, seed=5, progress=False)
    with Session(engine) as session:
        assert log_totals(session)[0] == 1400
    assert_in_step(engine)


@both
def test_seed_demo_command_leaves_the_rollups_in_step(cli_db, capsys) -> None:
    code, _out, err = cli(capsys, "seed-demo", "--rows", "2000", "--days", "30", "--seed", "11")
    assert code == 0, err
    engine = make_engine(cli_db)
    try:
        assert_in_step(engine)
    finally:
        engine.dispose()


# --- restore ----------------------------------------------------------------------------------


@both
def test_restore_rebuilds_the_days_a_backup_holds_stale_rollups_for(cli_db, capsys, monkeypatch, tmp_path) -> None:
    assert cli(capsys, "seed-demo", "--rows", "600", "--days", "6", "--seed", "12")[0] == 0
    consistent, stale = tmp_path / "consistent.backup", tmp_path / "stale.backup"
    assert cli(capsys, "backup", str(consistent))[0] == 0
    source = make_engine(cli_db)
    people = make_people(source)
    when = day_of(utcnow()) - timedelta(days=3) + timedelta(hours=22)
    stale_rows(source, people, when, 30)  # 22:00 to 01:30: on two UTC days
    with Session(source) as session:
        assert days_out_of_step(session) == [day_of(when), day_of(when) + timedelta(days=1)]
    source.dispose()
    db._engine.dispose()
    assert cli(capsys, "backup", str(stale))[0] == 0

    if cli_db.get_backend_name() == "sqlite":
        target = URL.create("sqlite", database=str(tmp_path / "restored.db"))
    else:
        target = create_pg_database("mindroute_restore")
    try:
        use_database(monkeypatch, target)
        code, out, err = cli(capsys, "restore", str(consistent))
        assert code == 0, err
        assert "usage rollups: in step with the logs" in out
        code, out, err = cli(capsys, "restore", str(stale), "--force")
        assert code == 0, err
        assert "usage rollups: rebuilt 2 UTC day(s) that did not match the logs" in out
        db._engine.dispose()
        engine = make_engine(target)
        try:
            assert_in_step(engine)
            with Session(engine) as session:
                assert log_totals(session)[0] == 630
        finally:
            engine.dispose()
    finally:
        if db._engine is not None:
            db._engine.dispose()
        if target.get_backend_name() == "postgresql":
            drop_pg_database(target)


# --- copy-to ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target_kind", ["sqlite", "postgresql"])
def test_copy_to_rebuilds_stale_rollups_in_the_target(tmp_path, pg_server, target_kind: str) -> None:
    source = make_engine(URL.create("sqlite", database=str(tmp_path / "src.db")))
    db.ensure_schema(source)
    seed.seed_demo(source, rows=900, days=5, seed=13, progress=False)
    people = make_people(source)
    when = day_of(utcnow()) - timedelta(days=3, hours=-2)
    stale_rows(source, people, when, 12)
    if target_kind == "sqlite":
        target_url = URL.create("sqlite", database=str(tmp_path / "target.db"))
    else:
        target_url = create_pg_database("mindroute_copy")
    target = make_engine(target_url)
    try:
        copied = copy_database(source, target, progress=False)
        assert copied.rebuilt_days == [day_of(when)]
        assert copied.rows == row_counts(source)
        assert_in_step(target)
        with Session(source) as session:
            assert days_out_of_step(session) == [day_of(when)]  # the source is left as it was
    finally:
        target.dispose()
        source.dispose()
        if target_kind == "postgresql":
            drop_pg_database(target_url)


def test_copy_to_command_reports_the_rollups(tmp_path, monkeypatch, capsys) -> None:
    source = URL.create("sqlite", database=str(tmp_path / "src.db"))
    use_database(monkeypatch, source)
    assert cli(capsys, "seed-demo", "--rows", "300", "--days", "3", "--seed", "14")[0] == 0
    code, out, err = cli(capsys, "copy-to", f"sqlite:///{tmp_path / 'target.db'}")
    assert code == 0, err
    assert "logs 300" in out and "usage rollups: in step with the logs" in out
    engine = make_engine(f"sqlite:///{tmp_path / 'target.db'}")
    try:
        assert_in_step(engine)
    finally:
        engine.dispose()


# --- prune-logs -------------------------------------------------------------------------------


@both
def test_prune_logs_command_keeps_the_rollups_in_step(cli_db, capsys) -> None:
    assert cli(capsys, "seed-demo", "--rows", "1500", "--days", "10", "--seed", "15")[0] == 0
    code, out, err = cli(capsys, "prune-logs", "--older-than-days", "4", "--batch-rows", "97")
    assert code == 0, err
    engine = make_engine(cli_db)
    try:
        with Session(engine) as session:
            oldest = session.scalar(select(func.min(Log.created_at)))
            kept = log_totals(session)[0]
        assert oldest >= utcnow() - timedelta(days=4, minutes=5)
        assert 0 < kept < 1500 and f"deleted {1500 - kept:,} log rows" in out
        assert_in_step(engine)
    finally:
        engine.dispose()


# --- the checks -------------------------------------------------------------------------------


def test_days_out_of_step_names_the_days_that_differ(engine: Engine, people) -> None:
    rows = random_rows(people, 600, seed=22, start=datetime(2026, 10, 1), days=6)
    write_in_batches(engine, rows, batch=250)
    with Session(engine) as session:
        assert days_out_of_step(session) == []
    stale_rows(engine, people, datetime(2026, 10, 2, 3), 1)
    with transaction(engine) as session:
        after = select(Log.id).order_by(Log.created_at).limit(1)
        first = session.scalar(after.where(Log.created_at >= datetime(2026, 10, 4)))
        session.execute(delete(Log).where(Log.id == first))
        third = session.scalar(after.where(Log.created_at >= datetime(2026, 10, 6), Log.tokens_used > 0))
        session.execute(update(Log).where(Log.id == third).values(tokens_used=Log.tokens_used + 1))
    with Session(engine) as session:
        assert days_out_of_step(session) == [datetime(2026, 10, 2), datetime(2026, 10, 4), datetime(2026, 10, 6)]
    rebuild_rollups(engine, progress=False)
    with Session(engine) as session:
        assert days_out_of_step(session) == []


def test_rollup_check_of_a_range(engine: Engine, people) -> None:
    admin, alice, bob, _p1, _p2 = people
    rows = random_rows(people, 800, seed=23, start=datetime(2026, 10, 1), days=5)
    write_in_batches(engine, rows, batch=300)
    start, end = datetime(2026, 10, 1, 5, 30), datetime(2026, 10, 4, 20, 10)
    whole = [r for r in rows if datetime(2026, 10, 1, 6) <= r["created_at"] < datetime(2026, 10, 4, 20)]
    with Session(engine) as session:
        check = rollup_check(session, admin, start, end)
        assert check.in_step and check.logs == len(whole)
        assert rollup_check(session, alice, start, end).logs == sum(r["user_id"] == alice.id for r in whole)
    stale_rows(engine, people, datetime(2026, 10, 2, 10), 5)  # alice's
    stale_rows(engine, people, datetime(2026, 10, 4, 20, 1), 1)  # in the partial last hour: read raw
    with Session(engine) as session:
        check = rollup_check(session, admin, start, end)
        assert (check.in_step, check.logs - check.totals, check.logs - check.charts) == (False, 5, 5)
        assert not rollup_check(session, alice, start, end).in_step
        assert rollup_check(session, bob, start, end).in_step  # a user's check is about their calls
        assert rollup_check(session, admin, datetime(2026, 10, 3), end).in_step
        assert rollup_check(session, admin, end - timedelta(minutes=5), end).in_step  # no whole hour


@both
def test_rebuild_rollups_only_changed_rebuilds_the_days_that_differ(cli_db, capsys) -> None:
    assert cli(capsys, "seed-demo", "--rows", "500", "--days", "5", "--seed", "16")[0] == 0
    code, out, err = cli(capsys, "rebuild-rollups", "--only-changed")
    assert (code, out.strip()) == (0, "usage rollups: in step with the logs"), err
    engine = make_engine(cli_db)
    try:
        when = day_of(utcnow()) - timedelta(days=2) + timedelta(hours=3)
        stale_rows(engine, make_people(engine), when, 4)
        code, out, err = cli(capsys, "rebuild-rollups", "--only-changed")
        assert code == 0, err
        assert f"rebuilt 1 UTC day(s) that did not match the logs ({when:%Y-%m-%d})" in out
        assert_in_step(engine)
    finally:
        engine.dispose()
