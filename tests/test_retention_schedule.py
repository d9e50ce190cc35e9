"""Scheduled log retention: due once a day, run by exactly one of several processes, recorded as "system"."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import URL

from mindroute.config import PROJECT_ROOT
from mindroute.db import make_engine, transaction, upgrade
from mindroute.models import AuditLog, Log, utcnow
from mindroute.services import retention_schedule

both = pytest.mark.parametrize("fresh_db_url", ["sqlite", "postgresql"], indirect=True)


def _fill(engine: Engine, old: int, recent: int) -> None:
    now = utcnow()
    with transaction(engine) as session:
        for i in range(old):
            session.add(Log(request_type="chat", status_code=200, created_at=now - timedelta(days=40, minutes=i)))
        for i in range(recent):
            session.add(Log(request_type="chat", status_code=200, created_at=now - timedelta(days=1, minutes=i)))


def _counts(engine: Engine) -> tuple[int, int, list[str]]:
    with transaction(engine) as session:
        logs = session.scalar(select(func.count()).select_from(Log))
        runs = session.scalars(
            select(AuditLog.actor_label).where(AuditLog.action == retention_schedule.RETENTION_ACTION)
        ).all()
    return logs, len(runs), list(runs)


@pytest.fixture
def db(fresh_db_url: URL):
    engine = make_engine(fresh_db_url)
    upgrade(engine, "head")
    yield engine
    engine.dispose()


@both
def test_due_once_a_day_and_recorded_as_system(db: Engine) -> None:
    _fill(db, old=5, recent=3)
    assert retention_schedule.run_if_due(db, 30) == 5
    assert _counts(db) == (3, 1, ["system"])
    _fill(db, old=2, recent=0)
    assert retention_schedule.run_if_due(db, 30) is None  # ran less than a day ago
    later = utcnow() + timedelta(days=1, minutes=1)
    assert retention_schedule.run_if_due(db, 30, now=later) == 2
    assert _counts(db)[:2] == (3, 2)


_RACER = """
import sys
from sqlalchemy import make_url
from mindroute.db import make_engine
from mindroute.services import retention_schedule
engine = make_engine(make_url(sys.argv[1]))
print(retention_schedule.run_if_due(engine, 30))
"""


@both
def test_several_processes_at_once_run_it_exactly_once(db: Engine) -> None:
    _fill(db, old=3000, recent=10)
    url = db.url.render_as_string(hide_password=False)
    racers = [
        subprocess.Popen([sys.executable, "-c", _RACER, url], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    answers = [racer.communicate(timeout=120)[0].strip() for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    assert sorted(answers) == ["3000", "None", "None", "None"]
    assert _counts(db)[:2] == (10, 1)


@both
def test_a_held_lock_makes_another_process_skip(db: Engine) -> None:
    _fill(db, old=4, recent=0)
    url = db.url.render_as_string(hide_password=False)
    with retention_schedule._exclusive(db) as mine:
        assert mine
        out = subprocess.run(
            [sys.executable, "-c", _RACER, url], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
        )
        assert out.stdout.strip() == "None", out.stderr
    assert retention_schedule.run_if_due(db, 30) == 4


@both
def test_the_lifespan_loop_runs_it_and_stops(db: Engine) -> None:
    import asyncio

    _fill(db, old=6, recent=1)

    async def serve() -> None:
        async with retention_schedule.scheduled(db, 30, check_every_s=0.05):
            for _ in range(200):
                await asyncio.sleep(0.05)
                if _counts(db)[1] == 1:
                    break
        async with retention_schedule.scheduled(db, None):
            pass  # off: nothing runs

    asyncio.run(serve())
    assert _counts(db)[:2] == (1, 1)
