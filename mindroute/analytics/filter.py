"""The Usage filter: its range presets in the viewer's zone, its display buckets, and its SQL conditions."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, false, or_

from mindroute.analytics.levels import ERROR_STATUS_MIN, SOURCE_API, SOURCE_PLAYGROUND, hour_of
from mindroute.models import Log, utcnow
from mindroute.timezones import start_of_viewer_day, viewer_zone

PRESETS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days"}
HOUR_BUCKETS_MAX = timedelta(hours=36)
DAY_BUCKETS_MAX = timedelta(days=45)
ONE_HOUR = timedelta(hours=1)


class Viewer(Protocol):
    id: uuid.UUID
    role: str


# --- the filter -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageFilter:
    """One filter for tiles, charts, breakdowns, the log explorer and the CSV export.

    `start`/`end` are naive UTC (end exclusive); `timezone` is the viewer's IANA zone for buckets.
    Empty tuples mean "all". `source` is 'playground' or 'api'; `outcome` 'success' or 'error';
    `request_types` Logs.requestType values ('chat', 'completion', 'embedding').
    """

    start: datetime
    end: datetime
    timezone: str = "UTC"
    provider_ids: tuple[uuid.UUID, ...] = ()
    models: tuple[str, ...] = ()
    user_ids: tuple[uuid.UUID, ...] = ()
    source: str | None = None
    api_key_ids: tuple[str, ...] = ()
    outcome: str | None = None
    request_types: tuple[str, ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return viewer_zone(self.timezone)

    def previous(self) -> UsageFilter:
        """The same filter over the period of the same length just before."""
        span = self.end - self.start
        return replace(self, start=self.start - span, end=self.start)


def scoped(flt: UsageFilter, viewer: Viewer) -> UsageFilter:
    """The filter as `viewer` may run it: a non-admin sees their own calls only."""
    if viewer.role == "admin":
        return flt
    return replace(flt, user_ids=(viewer.id,))


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def preset_range(preset: str, timezone: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """(start, end) in naive UTC for a preset: the last 24 hours, or the last N of the viewer's days
    (today included, from its local midnight)."""
    now_utc = _naive_utc(now) if now else utcnow()
    if preset == "24h":
        return now_utc - timedelta(hours=24), now_utc
    days = {"7d": 7, "30d": 30, "90d": 90}.get(preset)
    if days is None:
        raise ValueError(f"unknown range preset {preset!r}")
    start = start_of_viewer_day(viewer_zone(timezone), days - 1, now_utc.replace(tzinfo=UTC))
    return start, now_utc


def custom_range(first_day: date, last_day: date, timezone: str | None) -> tuple[datetime, datetime]:
    """(start, end) in naive UTC covering the viewer's local days first_day..last_day inclusive."""
    zone = viewer_zone(timezone)

    def midnight(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC).replace(tzinfo=None)

    return midnight(first_day), midnight(last_day + timedelta(days=1))


def needs_all_dims(flt: UsageFilter) -> bool:
    """Whether the filter names a dimension the per-model rollups do not keep."""
    return bool(flt.user_ids or flt.source or flt.api_key_ids or flt.outcome)


def _conditions(
    flt: UsageFilter, column: Callable[[str], Any], source: Callable[[str], Any]
) -> list[ColumnElement[bool]]:
    """The filter as conditions, one of every dimension the filter names: `column(name)` gives the
    column of 'user', 'provider', 'model', 'request_type', 'api_key' or 'status' (asked only when the filter
    names that dimension), `source` the condition for a source."""
    conds: list[ColumnElement[bool]] = []
    named = ((flt.user_ids, "user"), (flt.provider_ids, "provider"), (flt.models, "model"))
    for values, name in (*named, (flt.request_types, "request_type")):
        if values:
            conds.append(column(name).in_(values))
    if flt.source:
        conds.append(source(flt.source))
    if flt.api_key_ids:
        conds.append(column("api_key").in_(flt.api_key_ids))
    if flt.outcome == "error":
        conds.append(column("status") >= ERROR_STATUS_MIN)
    elif flt.outcome == "success":
        status = column("status")
        conds.append(or_(status.is_(None), status < ERROR_STATUS_MIN))
    return conds


ROLLUP_COLUMNS = {"user": "userid", "provider": "providerid", "model": "modelid", "api_key": "apikeyid"}
ROLLUP_COLUMNS |= {"status": "statuscode", "request_type": "requesttype"}


def rollup_conditions(flt: UsageFilter, table: Any) -> list[ColumnElement[bool]]:
    """The filter as conditions on a rollup table (the per-model level has no user, source, key or status)."""
    c = table.c
    return _conditions(flt, lambda name: c[ROLLUP_COLUMNS[name]], lambda value: c.source == value)


def _log_source(value: str) -> ColumnElement[bool]:
    """Logs rows of a source: 'playground' as requestBody says, 'api' for every other row."""
    source = Log.request_body["source"].as_string()
    if value == SOURCE_PLAYGROUND:
        return source == SOURCE_PLAYGROUND
    if value == SOURCE_API:
        return or_(source.is_(None), source != SOURCE_PLAYGROUND)
    return false()


def _log_column(name: str) -> Any:
    if name == "api_key":
        return Log.request_body["api_key_id"].as_string()
    columns = {"user": Log.user_id, "provider": Log.provider_id, "model": Log.model_id, "status": Log.status_code}
    return Log.request_type if name == "request_type" else columns[name]


def log_conditions(flt: UsageFilter) -> list[ColumnElement[bool]]:
    """The filter as conditions on Logs (time range excluded): shared with the log explorer."""
    return _conditions(flt, _log_column, _log_source)


# --- buckets in the viewer's zone -------------------------------------------------------------


def pick_granularity(start: datetime, end: datetime) -> str:
    span = end - start
    if span <= HOUR_BUCKETS_MAX:
        return "hour"
    if span <= DAY_BUCKETS_MAX:
        return "day"
    return "week"


def bucket_edges(start: datetime, end: datetime, zone: ZoneInfo, granularity: str) -> list[datetime]:
    """Naive-UTC starts of the display buckets covering [start, end), plus the end of the last."""
    local = start.replace(tzinfo=UTC).astimezone(zone)
    if granularity == "hour":
        first = local.replace(minute=0, second=0, microsecond=0)
        edges = [first.astimezone(UTC).replace(tzinfo=None)]
        while edges[-1] < end:
            edges.append(edges[-1] + ONE_HOUR)
        return edges
    day = local.date()
    if granularity == "week":
        day -= timedelta(days=day.weekday())  # weeks start on Monday
    step = timedelta(days=7 if granularity == "week" else 1)
    edges = []
    while True:
        edge = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC).replace(tzinfo=None)
        edges.append(edge)
        if edge >= end:
            return edges
        day += step


def split_range(start: datetime, end: datetime, edges: Sequence[datetime]) -> tuple[datetime, datetime, set, list]:
    """(first whole hour, end of last whole hour, hours a bucket edge cuts, raw intervals)."""
    first_hour, last_hour = whole_hours(start, end)
    if first_hour >= last_hour:
        return first_hour, first_hour, set(), [(start, end)]
    cut = {hour_of(e) for e in edges if e != hour_of(e) and first_hour <= hour_of(e) < last_hour}
    intervals = [(start, first_hour)] if start < first_hour else []
    intervals += [(h, h + ONE_HOUR) for h in sorted(cut)]
    if last_hour < end:
        intervals.append((last_hour, end))
    merged: list[tuple[datetime, datetime]] = []
    for low, high in intervals:
        if merged and merged[-1][1] >= low:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return first_hour, last_hour, cut, merged


def whole_hours(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The whole UTC hours [first, last) of a range: the part read from rollups."""
    return hour_of(start) + (ONE_HOUR if start != hour_of(start) else timedelta(0)), hour_of(end)
