"""Usage analytics: tiles, time series, distributions, tops and breakdowns over the usage rollups.

Every function takes the viewer and one `UsageFilter`; a non-admin viewer is always restricted to
their own calls here, whatever the filter says. A range is read as "facts" (see rollups.py for the
three levels): totals per fine dimensions from the daily rollups of the whole UTC days inside it and
the hourly rollups of the hours around them; the charts per display bucket and (provider, model)
from the per-model rollups (hourly ones when the filter names a dimension those lack); and raw Logs
rows for the rest (the range's partial first and last hours, and hours a bucket boundary cuts, as
local midnight does in a zone with a half-hour offset). On PostgreSQL the reads run side by side on
connections sharing one snapshot. Counts, token sums and costs are exact; percentiles come from
log-spaced latency histograms and are within 1% (labelled approximate).
"""

from __future__ import annotations

import math
import queue
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Engine,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import visitors

from mindroute.models import ApiKey, Log, Provider, UsageDailyRollup, UsageModelRollup, User, utcnow
from mindroute.services.chat import estimate_cost
from mindroute.services.overview import start_of_viewer_day, viewer_zone
from mindroute.services.providers import read_settings
from mindroute.services.rollups import (
    BY_MODEL,
    DAILY,
    ERROR_STATUS_MIN,
    HOURLY,
    SOURCE_API,
    SOURCE_PLAYGROUND,
    Level,
    day_of,
    encode_histogram,
    fact_columns,
    hour_of,
    latency_bucket,
    latency_bucket_value,
)

PERCENTILES = (50, 95, 99)
PRESETS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days"}
HOUR_BUCKETS_MAX = timedelta(hours=36)
DAY_BUCKETS_MAX = timedelta(days=45)
ONE_HOUR = timedelta(hours=1)
TOP_LIMIT = 10
AGGREGATE_WORK_MEM = "64MB"
PARALLEL_READS = 3  # connections the Usage page reads on at once (PostgreSQL)
UNKNOWN = "(unknown)"

FACT_COLUMNS = [
    "bucket",
    "user_id",
    "provider_id",
    "model",
    "source",
    "api_key_id",
    "status",
    "requests",
    "errors",
    "tokens",
    "prompt_tokens",
    "completion_tokens",
    "duration_sum",
    "duration_count",
]
SUM_COLUMNS = ["requests", "errors", "tokens", "prompt_tokens", "completion_tokens", "duration_sum", "duration_count"]


class Viewer(Protocol):
    id: uuid.UUID
    role: str


# --- the filter -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageFilter:
    """One filter for tiles, charts, breakdowns, the log explorer and the CSV export.

    `start`/`end` are naive UTC (end exclusive); `timezone` is the viewer's IANA zone for buckets.
    Empty tuples mean "all". `source` is 'playground' or 'api'; `outcome` 'success' or 'error'.
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


def _needs_all_dims(flt: UsageFilter) -> bool:
    """Whether the filter names a dimension the per-model rollups do not keep."""
    return bool(flt.user_ids or flt.source or flt.api_key_ids or flt.outcome)


def _rollup_conditions(flt: UsageFilter, table: Any) -> list[ColumnElement[bool]]:
    """The filter as conditions on a rollup table (one of every dimension the filter names)."""
    c = table.c
    conds: list[ColumnElement[bool]] = []
    if flt.user_ids:
        conds.append(c.userid.in_(flt.user_ids))
    if flt.provider_ids:
        conds.append(c.providerid.in_(flt.provider_ids))
    if flt.models:
        conds.append(c.modelid.in_(flt.models))
    if flt.source:
        conds.append(c.source == flt.source)
    if flt.api_key_ids:
        conds.append(c.apikeyid.in_(flt.api_key_ids))
    if flt.outcome == "error":
        conds.append(c.statuscode >= ERROR_STATUS_MIN)
    elif flt.outcome == "success":
        conds.append(or_(c.statuscode.is_(None), c.statuscode < ERROR_STATUS_MIN))
    return conds


def log_conditions(flt: UsageFilter) -> list[ColumnElement[bool]]:
    """The filter as conditions on Logs (time range excluded): shared with the log explorer."""
    conds: list[ColumnElement[bool]] = []
    if flt.user_ids:
        conds.append(Log.user_id.in_(flt.user_ids))
    if flt.provider_ids:
        conds.append(Log.provider_id.in_(flt.provider_ids))
    if flt.models:
        conds.append(Log.model_id.in_(flt.models))
    source = Log.request_body["source"].as_string()
    if flt.source == SOURCE_PLAYGROUND:
        conds.append(source == SOURCE_PLAYGROUND)
    elif flt.source == SOURCE_API:
        conds.append(or_(source.is_(None), source != SOURCE_PLAYGROUND))
    elif flt.source:
        conds.append(false())
    if flt.api_key_ids:
        conds.append(Log.request_body["api_key_id"].as_string().in_(flt.api_key_ids))
    if flt.outcome == "error":
        conds.append(Log.status_code >= ERROR_STATUS_MIN)
    elif flt.outcome == "success":
        conds.append(or_(Log.status_code.is_(None), Log.status_code < ERROR_STATUS_MIN))
    return conds


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


def _split_range(start: datetime, end: datetime, edges: Sequence[datetime]) -> tuple[datetime, datetime, set, list]:
    """(first whole hour, end of last whole hour, hours a bucket edge cuts, raw intervals)."""
    first_hour = hour_of(start) + (ONE_HOUR if start != hour_of(start) else timedelta(0))
    last_hour = hour_of(end)
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


# --- facts ------------------------------------------------------------------------------------

HISTOGRAM_DTYPE = np.dtype([("index", "<u2"), ("calls", "<u4")])
LATENCY_KEYS = ["bucket", "provider_id", "model"]  # the groups of `Facts.latency`
USER_LATENCY_KEYS = ["user_id"]  # the groups of `Facts.user_latency`
WINDOW_COLUMNS = ["user_id", "provider_id", "model", "source", "api_key_id", "status", *SUM_COLUMNS]
SERIES_COLUMNS = ["bucket", "provider_id", "model", *SUM_COLUMNS]


@dataclass
class Histograms:
    """Latency histograms of groups: `frame` holds the groups' key columns, one row per group (sorted);
    `counts` the calls of each group per latency bucket, dense (groups x buckets)."""

    frame: pd.DataFrame
    counts: np.ndarray

    @classmethod
    def build(cls, keys: list[str], records: list[tuple[Any, ...]], blobs: list[bytes]) -> Histograms:
        """From packed histograms (`blobs`), one per record of key values; records may repeat."""
        frame = _frame(records, keys)
        if frame.empty:
            return cls(frame, np.zeros((0, 1), dtype="int64"))
        entries = np.frombuffer(b"".join(blobs), dtype=HISTOGRAM_DTYPE)
        lengths = np.fromiter((len(b) for b in blobs), dtype="int64", count=len(blobs)) // HISTOGRAM_DTYPE.itemsize
        codes, groups = _group_codes(frame, keys)
        width = int(entries["index"].max()) + 1 if len(entries) else 1
        rows = np.repeat(codes, lengths)
        # bincount adds in float64: exact, as no count of calls comes near 2**53.
        flat = np.bincount(rows * width + entries["index"].astype("int64"), entries["calls"], len(groups) * width)
        return cls(groups, flat.astype("int64").reshape(len(groups), width))


@dataclass
class Facts:
    """The filtered calls of a range (user and provider ids are text).

    `frame`: sums over the whole range per (user, provider, model, source, API key, status), with
    their cost; `series`: sums per (display bucket, provider, model), column `bucket` being the
    bucket's number; `latency`: histograms per (bucket, provider, model); `user_latency`: per user.
    Without `detail` (the previous period of the tiles), frame and latency are per (provider, model)
    only, and series and user_latency are empty."""

    frame: pd.DataFrame
    series: pd.DataFrame
    latency: Histograms
    user_latency: Histograms
    start: datetime
    end: datetime
    edges: list[datetime]
    zone: ZoneInfo
    granularity: str

    @property
    def empty(self) -> bool:
        return self.frame.empty

    def bucket_labels(self) -> list[datetime]:
        """Each bucket's start, naive, in the viewer's zone."""
        return [e.replace(tzinfo=UTC).astimezone(self.zone).replace(tzinfo=None) for e in self.edges[:-1]]


def _histogram_concat(dialect: str, table: Any) -> Any:
    """An aggregate concatenating the packed histograms of a group (still a valid histogram)."""
    if dialect == "postgresql":
        return func.string_agg(table.c.latency, literal_column("''::bytea"))
    return func.group_concat(func.hex(table.c.latency), "")  # SQLite: as hex text


def _rows(session: Session, stmt: Any) -> Any:
    """The rows of a read. On PostgreSQL in binary format: the histograms arrive as bytes rather
    than as hex text twice their size (the biggest part of what the page reads)."""
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        return session.execute(stmt)
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    driver = session.connection().connection.driver_connection
    with driver.cursor(binary=True) as cursor:
        cursor.execute(compiled.string, compiled.params)
        return cursor.fetchall()


def _text(value: uuid.UUID | None) -> str | None:
    """Ids travel as uuid.UUID from the database; the frames hold them as text."""
    return None if value is None else str(value)


def _blob(value: Any) -> bytes:
    return bytes.fromhex(value) if isinstance(value, str) else bytes(value or b"")


def _sums(table: Any) -> list[Any]:
    c = table.c
    columns = (c.requests, c.errors, c.tokens, c.prompttokens, c.completiontokens, c.durationsum, c.durationcount)
    # As BIGINT: PostgreSQL's sum of a bigint is a numeric, which would arrive as Decimal.
    return [cast(func.sum(column), BigInteger) for column in columns]


@dataclass
class _Parts:
    """Rows read for Facts, before they become frames."""

    window: list[tuple[Any, ...]] = field(default_factory=list)
    window_blobs: list[bytes] = field(default_factory=list)
    series: list[tuple[Any, ...]] = field(default_factory=list)
    latency: list[tuple[Any, ...]] = field(default_factory=list)
    latency_blobs: list[bytes] = field(default_factory=list)


def window_pieces(first_hour: datetime, last_hour: datetime) -> list[tuple[Level, datetime, datetime]]:
    """The whole hours [first_hour, last_hour) as rollup reads: the whole UTC days inside from the
    daily level, the hours before and after them from the hourly level."""
    first_day = day_of(first_hour) + (timedelta(days=1) if first_hour != day_of(first_hour) else timedelta(0))
    last_day = day_of(last_hour)
    if first_day >= last_day:
        return [(HOURLY, first_hour, last_hour)] if first_hour < last_hour else []
    pieces = [(HOURLY, first_hour, first_day), (DAILY, first_day, last_day), (HOURLY, last_day, last_hour)]
    return [(level, low, high) for level, low, high in pieces if low < high]


def _window_pieces(flt: UsageFilter, first_hour: datetime, last_hour: datetime, detail: bool) -> list[Any]:
    """The rollup reads of the whole hours of a range, from as few rollup rows as the filter allows."""
    if not detail and not _needs_all_dims(flt):
        return [(BY_MODEL, first_hour, last_hour)]
    return window_pieces(first_hour, last_hour)


def _read_window(
    session: Session, flt: UsageFilter, piece: tuple[Level, datetime, datetime], *, detail: bool, parts: _Parts
) -> None:
    """Sums and histograms of one piece of the range's whole hours, per fine dimensions (per
    provider and model without detail)."""
    dialect = session.get_bind().dialect.name
    level, low, high = piece
    t = level.table
    conds = [t.c.bucket >= low, t.c.bucket < high, *_rollup_conditions(flt, t)]
    if detail:
        dims = [t.c.userid, t.c.providerid, t.c.modelid, t.c.source, t.c.apikeyid, t.c.statuscode]
    else:
        dims = [t.c.providerid, t.c.modelid]
    stmt = select(*dims, *_sums(t), _histogram_concat(dialect, t)).where(*conds).group_by(*dims)
    for row in _rows(session, stmt):
        if detail:
            parts.window.append((_text(row[0]), _text(row[1]), *row[2:13]))
            parts.window_blobs.append(_blob(row[13]))
        else:
            provider = _text(row[0])
            parts.window.append((None, provider, row[1], None, None, None, *row[2:9]))
            parts.latency.append((0, provider, row[1]))
            parts.latency_blobs.append(_blob(row[9]))


def _read_series(
    session: Session,
    flt: UsageFilter,
    facts_range: tuple[datetime, datetime, set],
    edges: list[datetime],
    *,
    parts: _Parts,
) -> None:
    """Sums and histograms per (display bucket, provider, model) of the whole hours no bucket edge
    cuts, from the per-model rollups unless the filter needs every dimension."""
    first_hour, last_hour, cut = facts_range
    dialect = session.get_bind().dialect.name
    t = (HOURLY if _needs_all_dims(flt) else BY_MODEL).table
    conds = [t.c.bucket >= first_hour, t.c.bucket < last_hour, *_rollup_conditions(flt, t)]
    if cut:
        conds.append(t.c.bucket.not_in(sorted(cut)))
    # The display bucket of an hour, computed by the database so it returns one row per bucket and
    # group: the number of the last edge at or before the hour.
    inside = [number for number, edge in enumerate(edges) if first_hour < edge < last_hour]
    if inside:
        bucket: Any = case(*[(t.c.bucket < edges[n], n - 1) for n in inside], else_=inside[-1])
    else:
        edge_array = np.array(edges, dtype="datetime64[us]")
        bucket = literal(int(np.searchsorted(edge_array, np.datetime64(first_hour, "us"), "right")) - 1)
    dims = [bucket.label("b"), t.c.providerid, t.c.modelid]
    stmt = select(*dims, *_sums(t), _histogram_concat(dialect, t)).where(*conds).group_by(*dims)
    for row in _rows(session, stmt):
        provider = _text(row[1])
        parts.series.append((row[0], provider, *row[2:10]))
        parts.latency.append((row[0], provider, row[2]))
        parts.latency_blobs.append(_blob(row[10]))


def _read_raw(
    session: Session,
    flt: UsageFilter,
    edges: list[datetime],
    intervals: list[tuple[datetime, datetime]],
    whole_hours: tuple[datetime, datetime],
    *,
    detail: bool,
    parts: _Parts,
) -> None:
    """Raw Logs rows of `intervals`: each counts in the series (with detail), and in the window if
    it is outside the whole hours the rollups gave."""
    stmt = select(*fact_columns()).where(
        or_(*(and_(Log.created_at >= low, Log.created_at < high) for low, high in intervals)),
        *[_not_indexed(cond) if session.get_bind().dialect.name == "sqlite" else cond for cond in log_conditions(flt)],
    )
    first_hour, last_hour = whole_hours
    edge_array = np.array(edges, dtype="datetime64[us]")
    for ts, user_id, provider_id, model, src, key, status, tokens, prompt, completion, ms in _rows(session, stmt):
        user, provider = _text(user_id), _text(provider_id)
        in_window = ts < first_hour or ts >= last_hour
        if not detail and not in_window:
            continue
        number = int(np.searchsorted(edge_array, np.datetime64(ts, "us"), side="right")) - 1 if detail else 0
        is_error = int(status is not None and status >= ERROR_STATUS_MIN)
        sums = (1, is_error, tokens or 0, prompt or 0, completion or 0, ms or 0, 0 if ms is None else 1)
        blob = b"" if ms is None else encode_histogram({latency_bucket(ms): 1})
        if detail:
            parts.series.append((number, provider, model, *sums))
        parts.latency.append((number, provider, model))
        parts.latency_blobs.append(blob)
        if not in_window:
            continue
        if detail:
            source = SOURCE_PLAYGROUND if src == SOURCE_PLAYGROUND else SOURCE_API
            parts.window.append((user, provider, model, source, str(key)[:64] if key else None, status, *sums))
            parts.window_blobs.append(blob)
        else:
            parts.window.append((None, provider, model, None, None, None, *sums))


def _not_indexed(condition: Any) -> Any:
    """SQLite: the condition with `+logs.col` for the indexed user/provider/model columns, so that
    the planner reads the few hours' rows by createdAt rather than all of a provider's by its index."""

    def replace(element: Any) -> Any:
        if isinstance(element, Column) and element.table is Log.__table__ and element.name in NO_INDEX_COLUMNS:
            return literal_column(f"+logs.{element.name}", type_=element.type)
        return None

    return visitors.replacement_traverse(condition, {}, replace)


NO_INDEX_COLUMNS = ("userid", "providerid", "modelid")


def _frame(records: list[tuple[Any, ...]], columns: list[str]) -> pd.DataFrame:
    """Records as a frame: sums and bucket numbers int64, the rest object (built column by column,
    several times faster than from_records)."""
    values = list(zip(*records, strict=True)) if records else [()] * len(columns)
    numbers = {*SUM_COLUMNS, "bucket"}
    return pd.DataFrame(
        {
            column: np.array(values[n], dtype="int64") if column in numbers else pd.Series(values[n], dtype=object)
            for n, column in enumerate(columns)
        }
    )


Read = Callable[[Session, _Parts], None]


@dataclass
class _Plan:
    """What load_facts reads for one filter: independent reads, each filling its own _Parts."""

    flt: UsageFilter
    edges: list[datetime]
    granularity: str
    detail: bool
    reads: list[Read]


def _plan(viewer: Viewer, flt: UsageFilter, granularity: str | None, detail: bool) -> _Plan:
    flt = scoped(flt, viewer)
    granularity = granularity or pick_granularity(flt.start, flt.end)
    edges = bucket_edges(flt.start, flt.end, flt.zone, granularity)
    first_hour, last_hour, cut, raw_intervals = _split_range(flt.start, flt.end, edges)
    if not detail:
        cut = set()
        raw_intervals = [(low, high) for low, high in raw_intervals if low < first_hour or high > last_hour]
    reads: list[Read] = []
    if first_hour < last_hour:
        # The biggest read first: reads are started in this order, side by side.
        for piece in sorted(_window_pieces(flt, first_hour, last_hour, detail), key=lambda p: p[1] - p[2]):
            reads.append(lambda s, parts, piece=piece: _read_window(s, flt, piece, detail=detail, parts=parts))
        if detail:
            reads.append(lambda s, parts: _read_series(s, flt, (first_hour, last_hour, cut), edges, parts=parts))
    if raw_intervals:
        whole = (first_hour, last_hour)
        reads.append(lambda s, parts: _read_raw(s, flt, edges, raw_intervals, whole, detail=detail, parts=parts))
    return _Plan(flt, edges, granularity, detail, reads)


def _work_mem(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Enough memory for the aggregates to hash in memory rather than sort on disk (this transaction only).
        session.execute(text(f"SET LOCAL work_mem = '{AGGREGATE_WORK_MEM}'"))


def _facts(session: Session, plan: _Plan, parts: Sequence[_Parts]) -> Facts:
    merged = _Parts()
    for part in parts:
        for name in ("window", "window_blobs", "series", "latency", "latency_blobs"):
            getattr(merged, name).extend(getattr(part, name))
    frame = _frame(merged.window, WINDOW_COLUMNS)
    _add_cost(session, frame)
    users = [(row[0],) for row in merged.window] if plan.detail else []
    return Facts(
        frame,
        _frame(merged.series, SERIES_COLUMNS),
        Histograms.build(LATENCY_KEYS, merged.latency, merged.latency_blobs),
        Histograms.build(USER_LATENCY_KEYS, users, merged.window_blobs if plan.detail else []),
        plan.flt.start,
        plan.flt.end,
        plan.edges,
        plan.flt.zone,
        plan.granularity,
    )


def load_facts(
    session: Session, viewer: Viewer, flt: UsageFilter, granularity: str | None = None, *, detail: bool = True
) -> Facts:
    """Read the filtered calls of [flt.start, flt.end), from rollups where exact, else raw rows."""
    plan = _plan(viewer, flt, granularity, detail)
    _work_mem(session)
    parts = []
    for read in plan.reads:
        parts.append(_Parts())
        read(session, parts[-1])
    return _facts(session, plan, parts)


@contextmanager
def _snapshot_sessions(engine: Engine, count: int) -> Iterator[list[Session]]:
    """`count` sessions on connections of their own that all see one snapshot of the database
    (PostgreSQL: REPEATABLE READ, the first one's snapshot exported to the others), so reads run
    side by side still add up to each other exactly."""
    with ExitStack() as stack:
        sessions = [stack.enter_context(Session(engine)) for _ in range(count)]
        snapshot = None
        for session in sessions:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            if snapshot is None:
                snapshot = session.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            else:
                if not re.fullmatch(r"[0-9A-F-]+", snapshot):  # it cannot be a bound parameter
                    raise ValueError(f"unexpected snapshot id {snapshot!r}")
                session.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            _work_mem(session)
        yield sessions


def _run_reads(session: Session, plans: Sequence[_Plan]) -> list[list[_Parts]]:
    """Every read of the plans, side by side on PostgreSQL (a connection each, one snapshot), else in turn."""
    jobs = [(number, read) for number, plan in enumerate(plans) for read in plan.reads]
    out: list[list[_Parts]] = [[] for _ in plans]
    bind = session.get_bind()
    if not isinstance(bind, Engine) or bind.dialect.name != "postgresql" or len(jobs) < 2:
        _work_mem(session)
        for number, read in jobs:
            out[number].append(_Parts())
            read(session, out[number][-1])
        return out
    with _snapshot_sessions(bind, min(len(jobs), PARALLEL_READS)) as sessions:
        idle: queue.SimpleQueue[Session] = queue.SimpleQueue()
        for reader in sessions:
            idle.put(reader)

        def run(read: Read) -> _Parts:
            reader = idle.get()
            try:
                parts = _Parts()
                read(reader, parts)
                return parts
            finally:
                idle.put(reader)

        with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
            futures = [(number, pool.submit(run, read)) for number, read in jobs]
            for number, future in futures:
                out[number].append(future.result())
    return out


def _as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _price_table(session: Session) -> dict[uuid.UUID, dict[str, dict[str, float]]]:
    rows = session.execute(select(Provider.id, Provider.settings))
    return {provider_id: read_settings(settings)["prices"] for provider_id, settings in rows}


def _add_cost(session: Session, frame: pd.DataFrame) -> None:
    """cost (USD) per fact from the provider's per-model prices; `priced` False where there is none."""
    prices = _price_table(session) if not frame.empty else {}
    keys = [
        (provider if isinstance(provider, str) else "", model if isinstance(model, str) else "")
        for provider, model in zip(frame["provider_id"].tolist(), frame["model"].tolist(), strict=True)
    ]
    per_input: dict[tuple[str, str], float] = {}
    per_output: dict[tuple[str, str], float] = {}
    priced: dict[tuple[str, str], bool] = {}
    for provider, model in dict.fromkeys(keys):
        table = prices.get(_as_uuid(provider), {}) if provider else {}
        # estimate_cost is linear in the tokens, so the cost of a sum is the sum of the costs.
        rate_in = estimate_cost(table, model, 1, 0) if model else None
        rate_out = estimate_cost(table, model, 0, 1) if model else None
        per_input[(provider, model)] = rate_in or 0.0
        per_output[(provider, model)] = rate_out or 0.0
        priced[(provider, model)] = rate_in is not None
    rate_in_col = np.fromiter((per_input[k] for k in keys), dtype="float64", count=len(keys))
    rate_out_col = np.fromiter((per_output[k] for k in keys), dtype="float64", count=len(keys))
    frame["cost"] = (
        frame["prompt_tokens"].to_numpy() * rate_in_col + frame["completion_tokens"].to_numpy() * rate_out_col
    )
    frame["priced"] = np.fromiter((priced[k] for k in keys), dtype=bool, count=len(keys))


# --- percentiles from histograms ---------------------------------------------------------------


_BUCKET_VALUES = np.zeros(0)


def bucket_values(width: int) -> np.ndarray:
    """latency_bucket_value of buckets 0..width-1, as an array (computed once)."""
    global _BUCKET_VALUES
    if len(_BUCKET_VALUES) < width:
        _BUCKET_VALUES = np.array([latency_bucket_value(i) for i in range(max(width, 1024))])
    return _BUCKET_VALUES[:width]


def _group_codes(frame: pd.DataFrame, by: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """(group number of each row, the groups' keys sorted) for the `by` columns of frame."""
    if not by:
        return np.zeros(len(frame), dtype="int64"), pd.DataFrame(index=[0])
    if len(by) == 1:  # every factorized value is present: the codes are the group numbers already
        codes, uniques = pd.factorize(frame[by[0]], sort=True, use_na_sentinel=False)
        return codes.astype("int64"), pd.DataFrame({by[0]: pd.Series(np.asarray(uniques, dtype=object), dtype=object)})
    factorized = [pd.factorize(frame[column], sort=True, use_na_sentinel=False) for column in by]
    # One integer per row (mixed radix over the columns' codes), numbered in sorted order.
    combined = np.zeros(len(frame), dtype="int64")
    for codes, uniques in factorized:
        combined = combined * len(uniques) + codes
    combos, inverse = np.unique(combined, return_inverse=True)
    columns = {}
    for column, (_codes, uniques) in reversed(list(zip(by, factorized, strict=True))):
        combos, digit = np.divmod(combos, len(uniques))
        columns[column] = pd.Series(np.asarray(uniques, dtype=object)[digit], dtype=object)
    keys = pd.DataFrame({column: columns[column] for column in by})
    return inverse.reshape(-1), keys


def _grouped_counts(hist: Histograms, by: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """(keys, calls per latency bucket) per group of `by` columns of hist.frame."""
    codes, keys = _group_codes(hist.frame, by)
    if not by:
        return keys, hist.counts.sum(axis=0, keepdims=True)
    return keys, _sum_rows(codes, len(keys), hist.counts)


def _sum_rows(codes: np.ndarray, groups: int, values: np.ndarray) -> np.ndarray:
    """Sums of the rows of `values` (1-D or 2-D) per group number in `codes` (one per row), where every
    group 0..groups-1 has rows (as _group_codes numbers them)."""
    if len(codes) == groups and np.array_equal(codes, np.arange(groups)):
        return values
    if not len(codes):
        return np.zeros((groups, *values.shape[1:]), dtype=values.dtype)
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return np.add.reduceat(values[order], starts, axis=0)


def _percentiles(hist: Histograms, by: Sequence[str]) -> pd.DataFrame:
    """p50/p95/p99 (ms, approximate) per group of `by` columns of hist.frame (nearest rank)."""
    columns = [*by, *(f"p{p}" for p in PERCENTILES)]
    if hist.frame.empty:
        return pd.DataFrame(columns=columns)
    keys, counts = _grouped_counts(hist, by)
    out: dict[str, Any] = {column: keys[column] for column in by}
    out.update(_percentile_arrays(counts))
    return pd.DataFrame({column: out[column] for column in columns})


def _percentile_arrays(counts: np.ndarray) -> dict[str, np.ndarray]:
    """{'p50': ..., 'p95': ..., 'p99': ...} (ms, nearest rank, NaN without calls) per row of counts."""
    seen = counts.cumsum(axis=1)
    total = seen[:, -1]
    values = bucket_values(counts.shape[1])
    out = {}
    for p in PERCENTILES:
        rank = np.maximum(1, np.ceil(total * p / 100))
        position = np.argmax(seen >= rank[:, None], axis=1)
        out[f"p{p}"] = np.where(total > 0, values[position], np.nan)
    return out


def latency_percentiles(facts: Facts) -> dict[str, float | None]:
    """{'p50': ms, 'p95': ms, 'p99': ms} over all the facts; None without durations."""
    table = _percentiles(facts.latency, [])
    if table.empty:
        return {f"p{p}": None for p in PERCENTILES}
    row = table.iloc[0]
    return {f"p{p}": None if math.isnan(row[f"p{p}"]) else float(row[f"p{p}"]) for p in PERCENTILES}


# --- names ------------------------------------------------------------------------------------


def add_labels(session: Session, facts: Facts) -> None:
    """Add display-name columns to the facts and their histograms: user, provider, model_name,
    api_key (or 'playground')."""
    frame = facts.frame
    user_ids = {v: _as_uuid(v) for v in frame["user_id"].dropna().unique()}
    users: dict[Any, str] = {}
    wanted = [u for u in user_ids.values() if u]
    if wanted:
        stmt = select(User.id, User.name, User.email).where(User.id.in_(wanted))
        users = {uid: f"{name} <{email}>" for uid, name, email in session.execute(stmt)}
    providers = {pid: name for pid, name in session.execute(select(Provider.id, Provider.name))}
    key_ids = {v: _as_uuid(v) for v in frame["api_key_id"].dropna().unique()}
    keys: dict[Any, str] = {}
    if any(key_ids.values()):
        stmt = select(ApiKey.id, ApiKey.name, ApiKey.prefix).where(ApiKey.id.in_([k for k in key_ids.values() if k]))
        keys = {kid: f"{name} ({prefix}…)" if prefix else name for kid, name, prefix in session.execute(stmt)}

    def named(column: pd.Series, names: dict[Any, str]) -> pd.Series:
        codes, uniques = pd.factorize(column.to_numpy(dtype=object))
        lookup = np.array([*(names.get(_as_uuid(v), str(v)) for v in uniques), UNKNOWN], dtype=object)
        return pd.Series(lookup[codes], index=column.index, dtype=object)  # code -1 (missing): UNKNOWN

    frame["user"] = named(frame["user_id"], users)
    frame["provider"] = named(frame["provider_id"], providers)
    frame["model_name"] = frame["model"].astype(object).fillna(UNKNOWN)
    key_names = named(frame["api_key_id"], keys)
    no_key = np.where(frame["source"] == SOURCE_PLAYGROUND, "playground", "(no key)")
    frame["api_key"] = pd.Series(np.where(frame["api_key_id"].isna(), no_key, key_names), dtype=object)
    for by_model in (facts.series, facts.latency.frame):
        by_model["provider"] = named(by_model["provider_id"], providers)
        by_model["model_name"] = by_model["model"].astype(object).fillna(UNKNOWN)
    facts.user_latency.frame["user"] = named(facts.user_latency.frame["user_id"], users)


LABEL_COLUMNS = {"user": "user", "provider": "provider", "model": "model_name", "api_key": "api_key"}


# --- the page's data --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    key: str
    label: str
    value: float | None
    previous: float | None
    approximate: bool = False

    @property
    def change(self) -> float | None:
        """Relative change against the previous period (0.1 = +10%); None when it had nothing."""
        if self.value is None or not self.previous:
            return None
        return (self.value - self.previous) / self.previous


def _totals(facts: Facts) -> dict[str, float | None]:
    frame = facts.frame

    def total(column: str) -> Any:
        return frame[column].to_numpy().sum()

    requests = int(total("requests"))
    errors = int(total("errors"))
    out: dict[str, float | None] = {
        "requests": requests,
        "tokens": int(total("tokens")),
        "prompt_tokens": int(total("prompt_tokens")),
        "completion_tokens": int(total("completion_tokens")),
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "cost": float(total("cost")),
    }
    out.update(latency_percentiles(facts))
    return out


TILE_LABELS = (
    ("requests", "Requests", False),
    ("tokens", "Total tokens", False),
    ("prompt_tokens", "Input tokens", False),
    ("completion_tokens", "Output tokens", False),
    ("error_rate", "Error rate", False),
    ("p50", "p50 latency (ms, approx.)", True),
    ("p95", "p95 latency (ms, approx.)", True),
    ("p99", "p99 latency (ms, approx.)", True),
    ("cost", "Estimated cost (USD)", False),
)


def tiles_from(current: Facts, previous: Facts) -> list[Tile]:
    now, before = _totals(current), _totals(previous)
    return [Tile(key, label, now[key], before[key], approx) for key, label, approx in TILE_LABELS]


def _bucket_frame(facts: Facts) -> pd.DataFrame:
    return pd.DataFrame({"bucket": range(len(facts.edges) - 1), "start": facts.bucket_labels()})


def tokens_over_time(facts: Facts, by: str = "provider") -> pd.DataFrame:
    """Long format: start (local bucket start), group (provider or model name), tokens; every bucket
    of every group present, zeros included. Needs add_labels()."""
    column = LABEL_COLUMNS[by]
    series = facts.series
    codes, groups = pd.factorize(series[column], sort=True)
    buckets = len(facts.edges) - 1
    sums = np.zeros(buckets * len(groups), dtype="int64")
    np.add.at(sums, series["bucket"].to_numpy() * len(groups) + codes, series["tokens"].to_numpy())
    starts = np.array(facts.bucket_labels(), dtype="datetime64[us]")
    return pd.DataFrame(
        {
            "start": np.repeat(starts, len(groups)),
            "group": np.tile(np.asarray(groups, dtype=object), buckets),
            "tokens": sums,
        }
    )


def requests_over_time(facts: Facts) -> pd.DataFrame:
    """start, requests, errors per bucket (zeros included)."""
    buckets = len(facts.edges) - 1
    out = {"start": np.array(facts.bucket_labels(), dtype="datetime64[us]")}
    for column in ("requests", "errors"):
        sums = np.zeros(buckets, dtype="int64")
        np.add.at(sums, facts.series["bucket"].to_numpy(), facts.series[column].to_numpy())
        out[column] = sums
    return pd.DataFrame(out)


def latency_over_time(facts: Facts) -> pd.DataFrame:
    """start, p50, p95, p99 (ms, approximate) per bucket; NaN where no call had a duration."""
    if facts.latency.frame.empty:
        table = _percentiles(facts.latency, ["bucket"])
        return _bucket_frame(facts).merge(table, on="bucket", how="left").drop(columns="bucket")
    keys, counts = _grouped_counts(facts.latency, ["bucket"])
    number = keys["bucket"].to_numpy().astype("int64")
    buckets = len(facts.edges) - 1
    inside = (number >= 0) & (number < buckets)
    out: dict[str, Any] = {"start": facts.bucket_labels()}
    for name, values in _percentile_arrays(counts).items():
        column = np.full(buckets, np.nan)
        column[number[inside]] = values[inside]
        out[name] = column
    return pd.DataFrame(out)


def latency_by_model(facts: Facts) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(percentiles: model, calls, p50, p95, p99; histogram: model, latency_ms, calls) per model.
    Needs add_labels()."""
    if facts.latency.frame.empty:
        percentiles = _percentiles(facts.latency, ["model_name"]).rename(columns={"model_name": "model"})
        models, counts = pd.DataFrame({"model_name": []}), np.zeros((0, 1), dtype="int64")
    else:
        models, counts = _grouped_counts(facts.latency, ["model_name"])
        calls = counts.sum(axis=1)
        per_model = {
            "model": models["model_name"],
            "calls": calls if calls.all() else np.where(calls > 0, calls, np.nan),
        }
        by_model = pd.DataFrame({**per_model, **_percentile_arrays(counts)})
    width = counts.shape[1]
    counts = counts.reshape(-1)
    models = models["model_name"]
    model_number, index = np.divmod(np.flatnonzero(counts), width)
    histogram = pd.DataFrame(
        {
            "model": np.asarray(models, dtype=object)[model_number],
            "latency_ms": bucket_values(width)[index],
            "calls": counts[counts > 0].astype("int64"),
        }
    )
    if facts.latency.frame.empty:
        per_model = histogram.groupby("model")["calls"].sum().rename("calls").reset_index()
        return per_model.merge(percentiles, on="model", how="right"), histogram
    return by_model, histogram


def _tops(facts: Facts, dimensions: Sequence[str], limit: int = TOP_LIMIT) -> dict[str, pd.DataFrame]:
    out = {}
    if facts.frame.empty:
        for dimension in dimensions:
            for metric in ("tokens", "cost"):
                out[f"{dimension}_by_{metric}"] = top(facts, dimension, metric, limit)
        return out
    for dimension in dimensions:
        codes, uniques = pd.factorize(facts.frame[LABEL_COLUMNS[dimension]], sort=True, use_na_sentinel=False)
        names = np.asarray(uniques, dtype=object)  # sorted: a group's number is its name's rank
        sums = _sum_by(facts.frame, codes.astype("int64"), len(names), ["tokens", "cost", "requests"])
        for metric in ("tokens", "cost"):
            ranked = np.lexsort((np.arange(len(names)), -sums[metric]))[:limit]
            table = {"name": pd.Series(names[ranked])}  # inferred, as a grouped index is
            table.update({column: values[ranked] for column, values in sums.items()})
            out[f"{dimension}_by_{metric}"] = pd.DataFrame(table)
    return out


def _sum_by(frame: pd.DataFrame, codes: np.ndarray, groups: int, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Sums of `columns` per group number (`codes`, one per row of frame); integers stay exact."""
    integers = [column for column in columns if column in SUM_COLUMNS]
    others = [column for column in columns if column not in SUM_COLUMNS]
    out = {}
    if integers:
        stacked = np.column_stack([frame[column].to_numpy(dtype="int64") for column in integers])
        sums = _sum_rows(codes, groups, stacked)
        out.update({column: sums[:, n] for n, column in enumerate(integers)})
    for column in others:
        out[column] = _sum_rows(codes, groups, frame[column].to_numpy())
    return {column: out[column] for column in columns}


def top(facts: Facts, dimension: str, metric: str = "tokens", limit: int = TOP_LIMIT) -> pd.DataFrame:
    """The top `limit` users / models / providers / api_keys by 'tokens' or 'cost': name, tokens, cost,
    requests. Needs add_labels()."""
    sums = facts.frame.groupby(LABEL_COLUMNS[dimension])[["tokens", "cost", "requests"]].sum()
    sums = sums.rename_axis("name").reset_index()
    return sums.sort_values([metric, "name"], ascending=[False, True]).head(limit).reset_index(drop=True)


def status_codes(facts: Facts) -> pd.DataFrame:
    """status (None for unknown), requests; by status code."""
    frame = facts.frame.assign(status=facts.frame["status"].astype("Int64"))
    out = frame.groupby("status", dropna=False)["requests"].sum().reset_index()
    return out.sort_values("status").reset_index(drop=True)


def breakdown(facts: Facts, by: str = "provider_model") -> pd.DataFrame:
    """One row per provider × model (by='provider_model') or per user (by='user'): requests, tokens,
    input/output tokens, errors, error_rate, avg_latency_ms, p95_ms (approx.), cost. Needs add_labels()."""
    dims = ["provider", "model_name"] if by == "provider_model" else ["user"]
    if not facts.frame.empty:
        return _breakdown(facts, by, dims)
    sums = facts.frame.groupby(dims)[[*SUM_COLUMNS, "cost"]].sum().reset_index()
    sums["error_rate"] = sums["errors"] / sums["requests"]
    sums["avg_latency_ms"] = sums["duration_sum"] / sums["duration_count"].replace(0, np.nan)
    hist = facts.latency if by == "provider_model" else facts.user_latency
    p95 = _percentiles(hist, dims)[[*dims, "p95"]].rename(columns={"p95": "p95_ms"})
    out = sums.merge(p95, on=dims, how="left").rename(columns={"model_name": "model"})
    dims = ["provider", "model"] if by == "provider_model" else ["user"]
    columns = [*dims, "requests", "tokens", "prompt_tokens", "completion_tokens", "errors", "error_rate"]
    return out[[*columns, "avg_latency_ms", "p95_ms", "cost"]].sort_values(dims).reset_index(drop=True)


def _breakdown(facts: Facts, by: str, dims: list[str]) -> pd.DataFrame:
    """breakdown() of non-empty facts, on arrays: the groups come sorted, p95 looked up per group."""
    codes, keys = _group_codes(facts.frame, dims)
    sums = _sum_by(facts.frame, codes, len(keys), [*SUM_COLUMNS, "cost"])
    hist = facts.latency if by == "provider_model" else facts.user_latency
    p95_table = _percentiles(hist, dims)
    found = dict(zip(zip(*(p95_table[d].tolist() for d in dims), strict=True), p95_table["p95"].tolist(), strict=True))
    group_keys = zip(*(keys[d].tolist() for d in dims), strict=True)
    p95 = np.fromiter((found.get(k, np.nan) for k in group_keys), dtype="float64", count=len(keys))
    with np.errstate(divide="ignore", invalid="ignore"):
        error_rate = sums["errors"] / sums["requests"]
        count = sums["duration_count"]
        avg = sums["duration_sum"] / np.where(count == 0, np.nan, count)
    out: dict[str, Any] = {("model" if d == "model_name" else d): keys[d] for d in dims}
    out.update({c: sums[c] for c in ("requests", "tokens", "prompt_tokens", "completion_tokens", "errors")})
    out.update({"error_rate": error_rate, "avg_latency_ms": avg, "p95_ms": p95, "cost": sums["cost"]})
    return pd.DataFrame(out)


@dataclass
class UsagePage:
    """Everything the Usage page draws for one filter."""

    filter: UsageFilter
    granularity: str
    tiles: list[Tile]
    tokens_by_provider: pd.DataFrame
    tokens_by_model: pd.DataFrame
    requests: pd.DataFrame
    latency: pd.DataFrame
    latency_by_model: pd.DataFrame
    latency_histogram: pd.DataFrame
    top: dict[str, pd.DataFrame]
    status_codes: pd.DataFrame
    breakdown_provider_model: pd.DataFrame
    breakdown_user: pd.DataFrame

    @property
    def empty(self) -> bool:
        return not self.tiles[0].value


def usage_page(session: Session, viewer: Viewer, flt: UsageFilter, granularity: str | None = None) -> UsagePage:
    """All the Usage page's data for `flt`, as `viewer` may see it: this period's and the last's
    reads, side by side on PostgreSQL."""
    flt = scoped(flt, viewer)
    granularity = granularity or pick_granularity(flt.start, flt.end)
    plans = [_plan(viewer, flt, granularity, True), _plan(viewer, flt.previous(), granularity, False)]
    now_parts, before_parts = _run_reads(session, plans)
    current = _facts(session, plans[0], now_parts)
    previous = _facts(session, plans[1], before_parts)
    add_labels(session, current)
    by_model, histogram = latency_by_model(current)
    tops = _tops(current, (["user"] if viewer.role == "admin" else []) + ["model", "provider", "api_key"])
    return UsagePage(
        filter=flt,
        granularity=current.granularity,
        tiles=tiles_from(current, previous),
        tokens_by_provider=tokens_over_time(current, "provider"),
        tokens_by_model=tokens_over_time(current, "model"),
        requests=requests_over_time(current),
        latency=latency_over_time(current),
        latency_by_model=by_model,
        latency_histogram=histogram,
        top=tops,
        status_codes=status_codes(current),
        breakdown_provider_model=breakdown(current, "provider_model"),
        breakdown_user=breakdown(current, "user"),
    )


def has_calls(session: Session, viewer: Viewer) -> bool:
    """Whether the viewer can see any call at all (for the empty state)."""
    stmt = select(Log.id).limit(1)
    if viewer.role != "admin":
        stmt = stmt.where(Log.user_id == viewer.id)
    return session.execute(stmt).first() is not None


@dataclass(frozen=True)
class RollupCheck:
    """Calls in the whole UTC hours of a range (the part the Usage page reads from rollups), as
    Logs counts them and as the rollups do: `totals` is what the tiles and breakdowns read (daily
    and hourly levels), `charts` what the charts read (per-model level; hourly for a non-admin)."""

    start: datetime
    end: datetime
    logs: int
    totals: int
    charts: int

    @property
    def in_step(self) -> bool:
        return self.logs == self.totals == self.charts

    @property
    def rolled(self) -> int:
        """The rollups' count that differs from the logs' (the totals' when both do)."""
        return self.totals if self.totals != self.logs else self.charts


def whole_hours(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The whole UTC hours [first, last) of a range: the part read from rollups."""
    return hour_of(start) + (ONE_HOUR if start != hour_of(start) else timedelta(0)), hour_of(end)


def rollup_check(session: Session, viewer: Viewer, start: datetime, end: datetime) -> RollupCheck:
    """Whether the rollups the Usage page reads for [start, end) count the calls Logs holds there:
    one statement (one snapshot, so calls written meanwhile count on both sides or neither), an
    index-only count of Logs over the range's whole hours and sums of the rollup rows the page reads
    anyway. Catches rows loaded or deleted behind the rollups' back (SQL by hand, an old bulk load);
    a non-admin's check covers their own calls only."""
    first_hour, last_hour = whole_hours(start, end)
    if first_hour >= last_hour:
        return RollupCheck(first_hour, first_hour, 0, 0, 0)
    user = None if viewer.role == "admin" else viewer.id
    logs = select(func.count()).select_from(Log).where(Log.created_at >= first_hour, Log.created_at < last_hour)
    if user is not None:
        logs = logs.where(Log.user_id == user)

    def requests(level: Level, low: datetime, high: datetime) -> Any:
        t = level.table
        stmt = select(func.coalesce(func.sum(t.c.requests), 0)).where(t.c.bucket >= low, t.c.bucket < high)
        return (stmt.where(t.c.userid == user) if user is not None else stmt).scalar_subquery()

    totals = [requests(*piece) for piece in window_pieces(first_hour, last_hour)]
    charts = requests(HOURLY if user is not None else BY_MODEL, first_hour, last_hour)
    row = session.execute(select(logs.scalar_subquery(), charts, *totals)).one()
    return RollupCheck(first_hour, last_hour, int(row[0]), sum(int(v) for v in row[2:]), int(row[1]))


def filter_options(session: Session, viewer: Viewer) -> dict[str, list[Any]]:
    """Choices for the filter widgets: providers (id, name), models, users (admins; id, label)."""
    if viewer.role == "admin":
        stmt = select(UsageModelRollup.provider_id, UsageModelRollup.model_id).distinct()
    else:
        daily = UsageDailyRollup
        stmt = select(daily.provider_id, daily.model_id).where(daily.user_id == viewer.id).distinct()
    pairs = session.execute(stmt).all()
    providers = dict(session.execute(select(Provider.id, Provider.name)).all())
    options: dict[str, list[Any]] = {
        "providers": sorted({(p, providers.get(p, UNKNOWN)) for p, _ in pairs if p}, key=lambda x: x[1]),
        "models": sorted({m for _, m in pairs if m}),
        "users": [],
    }
    if viewer.role == "admin":
        options["users"] = [
            (uid, f"{name} <{email}>")
            for uid, name, email in session.execute(select(User.id, User.name, User.email).order_by(User.email))
        ]
    return options


def exact_percentile(values: Iterable[float], percentile: float) -> float | None:
    """Nearest-rank percentile of raw values (the reference the approximate ones are tested against)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return float(ordered[max(1, math.ceil(percentile / 100 * len(ordered))) - 1])
