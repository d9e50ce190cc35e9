"""Whether the rollups count what Logs holds, day by day, and rebuilding only the days that differ."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session
from tqdm import tqdm

from mindroute.analytics.levels import ERROR_STATUS_MIN, LEVELS, SUM_COLUMNS, SUM_FIELDS, Level, day_of, request_type_of
from mindroute.analytics.rollups import rebuild_days
from mindroute.db import transaction
from mindroute.models import Log

# Per period: requests, errors, tokens, prompt tokens, completion tokens, duration sum and count.
Sums = tuple[int, ...]
_NO_SUMS: Sums = (0,) * len(SUM_FIELDS)


def _hour_of_log(dialect: str) -> Any:
    if dialect == "postgresql":
        return func.date_trunc("hour", Log.created_at)
    return func.strftime("%Y-%m-%d %H:00:00", Log.created_at)  # SQLite keeps timestamps as ISO text


def _as_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


Period = tuple[datetime, str]  # (UTC hour or day, request type)


def _log_sums_by_hour(session: Session) -> dict[Period, Sums]:
    """The rollups' counters of every UTC hour and request type, computed by the database from Logs."""
    hour = _hour_of_log(session.get_bind().dialect.name).label("hour")
    errors = func.sum(case((Log.status_code >= ERROR_STATUS_MIN, 1), else_=0))
    tokens = [func.sum(func.coalesce(c, 0)) for c in (Log.tokens_used, Log.prompt_tokens, Log.completion_tokens)]
    kind = Log.request_type
    stmt = select(hour, kind, func.count(), errors, *tokens, func.sum(Log.duration), func.count(Log.duration))
    out: dict[Period, Sums] = {}
    for row in session.execute(stmt.group_by(hour, kind)):
        if row[0] is None:
            continue
        key = (_as_datetime(row[0]), request_type_of(row[1]))
        sums = tuple(int(v or 0) for v in row[2:])
        out[key] = tuple(a + b for a, b in zip(out[key], sums, strict=True)) if key in out else sums
    return out


def _level_sums(session: Session, level: Level) -> dict[Period, Sums]:
    t = level.table
    stmt = select(t.c.bucket, t.c.requesttype, *(func.sum(t.c[c]) for c in SUM_COLUMNS))
    stmt = stmt.group_by(t.c.bucket, t.c.requesttype)
    return {(row[0], row[1]): tuple(int(v or 0) for v in row[2:]) for row in session.execute(stmt)}


def days_out_of_step(session: Session) -> list[datetime]:
    """The UTC days (midnights) where some rollup level's counters (requests, errors, token sums,
    duration sum and count) of a request type differ from Logs for an hour (hourly, per-model) or the
    day (daily).

    One grouped read of Logs and of each level: the check restore and copy-to run after loading
    rows in bulk, so that only the days that need it are rebuilt."""
    by_hour = _log_sums_by_hour(session)
    by_day: dict[Period, list[int]] = {}
    for (hour, kind), sums in by_hour.items():
        day = by_day.setdefault((day_of(hour), kind), [0] * len(SUM_FIELDS))
        for number, value in enumerate(sums):
            day[number] += value
    wanted = {True: {day: tuple(sums) for day, sums in by_day.items()}, False: by_hour}
    days: set[datetime] = set()
    for level in LEVELS:
        want, got = wanted[level.daily], _level_sums(session, level)
        days.update(day_of(b[0]) for b in want.keys() | got.keys() if want.get(b, _NO_SUMS) != got.get(b, _NO_SUMS))
    return sorted(days)


def _bar_off(progress: bool | None, days: Sequence[datetime]) -> bool | None:
    # tqdm: None draws the bar on a terminal only; nothing to rebuild, no bar at all.
    if not days:
        return True
    return None if progress is None else not progress


def sync_rollups(session: Session, *, progress: bool | None = None) -> list[datetime]:
    """Rebuild, in `session`'s transaction, the UTC days whose rollups differ from Logs (see
    days_out_of_step); returns those days."""
    days = days_out_of_step(session)
    with tqdm(total=len(days), unit="day", file=sys.stderr, disable=_bar_off(progress, days), desc="rollups") as bar:
        for day in days:
            rebuild_days(session, day, day + timedelta(days=1))
            bar.update(1)
    return days


def bring_rollups_in_step(engine: Engine, *, progress: bool | None = None) -> list[datetime]:
    """Rebuild the UTC days whose rollups differ from Logs, a day per transaction (after a restore,
    or any load that bypassed the call logger); returns those days."""
    with transaction(engine) as session:
        days = days_out_of_step(session)
    with tqdm(total=len(days), unit="day", file=sys.stderr, disable=_bar_off(progress, days), desc="rollups") as bar:
        for day in days:
            with transaction(engine) as session:
                rebuild_days(session, day, day + timedelta(days=1))
            bar.update(1)
    return days
