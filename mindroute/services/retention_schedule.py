"""Scheduled log retention (`MINDROUTE_LOG_RETENTION_DAYS`): once a day, by exactly one of however many processes
share the database, the same deletion as the Log retention page and `prune-logs`, recorded in the audit trail as
done by "system".

Exactly one: the run holds an advisory lock for its whole length, PostgreSQL's `pg_try_advisory_lock` (every
process on one server) or, on SQLite, `flock` on a file beside the database (every process on its host, the only
ones that can open the file). Under the lock the last run is read from the audit trail, so a process that gets the
lock after another's run finds it done and does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select, text

from mindroute.analytics import rollups
from mindroute.models import AuditLog, utcnow
from mindroute.services import audit
from mindroute.services.log_explorer import record_retention_run, retention_days

log = logging.getLogger(__name__)

RETENTION_LOCK_ID = 0x4D52_5245  # "MRRE": names scheduled retention among the server's advisory locks
RUN_EVERY = timedelta(days=1)
CHECK_EVERY_S = 3600.0  # how often a process asks whether a run is due
RETENTION_ACTION = "logs.retention_run"


@contextlib.contextmanager
def _exclusive(engine: Engine) -> Iterator[bool]:
    """True while this process holds the retention lock; False at once when another one does."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": RETENTION_LOCK_ID}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": RETENTION_LOCK_ID})
                    conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield True  # one process by construction
        return
    lock_path = Path(database).with_name(Path(database).name + ".retention.lock")
    with lock_path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def last_run_at(engine: Engine) -> datetime | None:
    """When retention last ran, by anyone (the page, the CLI, the schedule)."""
    with engine.connect() as conn:
        return conn.execute(select(func.max(AuditLog.created_at)).where(AuditLog.action == RETENTION_ACTION)).scalar()


def run_if_due(engine: Engine, days: int, *, now: datetime | None = None) -> int | None:
    """Delete logs older than `days` days if no retention ran in the last day and no other process is running it.
    Returns the rows deleted, or None when nothing was due or another process holds the lock."""
    days = retention_days(days)
    with _exclusive(engine) as mine:
        if not mine:
            return None
        now = now or utcnow()
        last = last_run_at(engine)
        if last is not None and now - last < RUN_EVERY:
            return None
        deleted = rollups.prune_logs(engine, days, now=now, progress=False)
        record_retention_run(engine, audit.SYSTEM, days, now - timedelta(days=days), deleted)
        log.info("scheduled log retention: deleted %d log rows older than %d days", deleted, days)
        return deleted


@contextlib.asynccontextmanager
async def scheduled(engine: Engine, days: int | None, check_every_s: float = CHECK_EVERY_S) -> AsyncIterator[None]:
    """For a server's lifespan: while it runs, ask every `check_every_s` whether retention is due (in a thread:
    the deletion is blocking database work). Nothing when `days` is None (the setting is off)."""
    if days is None:
        yield
        return

    async def loop() -> None:
        while True:
            try:
                await asyncio.to_thread(run_if_due, engine, days)
            except Exception:  # a failed run is retried at the next check; the server goes on
                log.exception("scheduled log retention failed; it is tried again in %.0f s", check_every_s)
            await asyncio.sleep(check_every_s)

    task = asyncio.get_running_loop().create_task(loop(), name="mindroute-log-retention")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
