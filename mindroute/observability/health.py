"""Health for load balancers and orchestrators: `live` (the process answers) and `ready` (it can do its work:
the database answers, its schema is the code's, and the Logs writer keeps up)."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)

# The Logs writer "keeps up" while fewer rows than this share of its queue's room wait to be written.
LOG_QUEUE_READY_SHARE = 0.5


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str] = field(default_factory=dict)  # name → "ok" or a short reason (never a URL or secret)

    def body(self) -> dict[str, object]:
        return {"status": "ok" if self.ready else "error", **self.checks}


@functools.cache
def _head_revision(engine: Engine) -> str | None:  # the code's migrations do not change while it runs
    from mindroute.db import head_revision

    return head_revision(engine)


def check_ready(engine: Engine, log_queue: tuple[int, int] | None = None) -> Readiness:
    """`log_queue`: (rows waiting, queue room) of this process's Logs writer; None when it writes synchronously."""
    from alembic.runtime.migration import MigrationContext

    checks: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = MigrationContext.configure(conn).get_current_revision()
        checks["database"] = "ok"
        head = _head_revision(engine)
        checks["migrations"] = "ok" if current == head else f"at {current or 'none'}, code at {head}"
    except Exception as exc:  # noqa: BLE001 - any failure is "not ready"; the reason class goes to the log
        log.warning("readiness: the database does not answer: %s", exc.__class__.__name__)
        checks["database"] = "unreachable"
        checks["migrations"] = "unknown"
    if log_queue is not None:
        waiting, room = log_queue
        checks["log_writer"] = "ok" if waiting < room * LOG_QUEUE_READY_SHARE else f"behind: {waiting} rows waiting"
    return Readiness(all(v == "ok" for v in checks.values()), checks)
