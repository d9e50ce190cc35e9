"""Usage analytics: tiles, time series, distributions, tops and breakdowns over the usage rollups.

Every function takes the viewer and one `UsageFilter`; a non-admin viewer is always restricted to
their own calls here, whatever the filter says. The data of a range is read once as "facts": the
hourly rollups of the whole UTC hours that fall inside one display bucket, plus the raw Logs rows
of the rest (the range's partial first and last hours, and hours a bucket boundary cuts, as local
midnight does in a zone with a half-hour offset). Counts, token sums and costs are exact;
percentiles come from log-spaced latency histograms and are within 1% (labelled approximate).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import (
    ColumnElement,
    Engine,
    String,
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

from mindroute.models import ApiKey, Log, Provider, UsageRollup, User, utcnow
from mindroute.services.chat import estimate_cost
from mindroute.services.overview import start_of_viewer_day, viewer_zone
from mindroute.services.providers import read_settings
from mindroute.services.rollups import (
    ERROR_STATUS_MIN,
    SOURCE_API,
    SOURCE_PLAYGROUND,
    encode_histogram,
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


def _rollup_conditions(flt: UsageFilter) -> list[ColumnElement[bool]]:
    r = UsageRollup
    conds: list[ColumnElement[bool]] = []
    if flt.user_ids:
        conds.append(r.user_id.in_(flt.user_ids))
    if flt.provider_ids:
        conds.append(r.provider_id.in_(flt.provider_ids))
    if flt.models:
        conds.append(r.model_id.in_(flt.models))
    if flt.source:
        conds.append(r.source == flt.source)
    if flt.api_key_ids:
        conds.append(r.api_key_id.in_(flt.api_key_ids))
    if flt.outcome == "error":
        conds.append(r.status_code >= ERROR_STATUS_MIN)
    elif flt.outcome == "success":
        conds.append(or_(r.status_code.is_(None), r.status_code < ERROR_STATUS_MIN))
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


@dataclass
class Histograms:
    """Latency histograms of groups: `frame` holds the groups' key columns, one row per (possibly
    repeated) group; the entries are arrays, `row` pointing into frame."""

    frame: pd.DataFrame
    row: np.ndarray
    index: np.ndarray
    calls: np.ndarray

    @classmethod
    def build(cls, keys: list[str], records: list[tuple[Any, ...]], blobs: list[bytes]) -> Histograms:
        entries = np.frombuffer(b"".join(blobs), dtype=HISTOGRAM_DTYPE)
        lengths = np.fromiter((len(b) for b in blobs), dtype="int64", count=len(blobs)) // HISTOGRAM_DTYPE.itemsize
        return cls(
            pd.DataFrame.from_records(records, columns=keys),
            np.repeat(np.arange(len(blobs), dtype="int64"), lengths),
            entries["index"].astype("int64"),
            entries["calls"].astype("int64"),
        )


@dataclass
class Facts:
    """The filtered calls of a range. `frame`: sums per (display bucket, user, provider, model, source,
    API key, status) (column `bucket` is the display bucket's number; ids are text). `latency`:
    histograms per (bucket, provider, model); `user_latency`: per user. Without `detail` (the previous
    period of the tiles), frame and latency are per (provider, model) only and user_latency is empty."""

    frame: pd.DataFrame
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


def _histogram_concat(dialect: str) -> Any:
    """An aggregate concatenating the packed histograms of a group (still a valid histogram)."""
    if dialect == "postgresql":
        return func.string_agg(UsageRollup.latency, literal_column("''::bytea"))
    return func.group_concat(func.hex(UsageRollup.latency), "")  # SQLite: as hex text


def _blob(value: Any) -> bytes:
    return bytes.fromhex(value) if isinstance(value, str) else bytes(value or b"")


@dataclass
class _Parts:
    """Rows read for Facts, before they become frames."""

    facts: list[tuple[Any, ...]] = field(default_factory=list)
    latency: list[tuple[Any, ...]] = field(default_factory=list)
    latency_blobs: list[bytes] = field(default_factory=list)
    users: list[tuple[Any, ...]] = field(default_factory=list)
    user_blobs: list[bytes] = field(default_factory=list)


def _read_rollups(
    session: Session,
    flt: UsageFilter,
    facts_range: tuple[datetime, datetime, set],
    edges: list[datetime],
    *,
    detail: bool,
    parts: _Parts,
) -> None:
    first_hour, last_hour, cut = facts_range
    dialect = session.get_bind().dialect.name
    r = UsageRollup
    conds = [r.bucket >= first_hour, r.bucket < last_hour, *_rollup_conditions(flt)]
    if cut:
        conds.append(r.bucket.not_in(sorted(cut)))
    user_id, provider_id = cast(r.user_id, String), cast(r.provider_id, String)
    sums = [
        func.sum(r.requests),
        func.sum(r.errors),
        func.sum(r.tokens),
        func.sum(r.prompt_tokens),
        func.sum(r.completion_tokens),
        func.sum(r.duration_sum),
        func.sum(r.duration_count),
    ]
    if not detail:
        # Totals and overall percentiles only: one row per (provider, model), for the costs.
        stmt = select(provider_id, r.model_id, *sums, _histogram_concat(dialect)).where(*conds)
        for row in session.execute(stmt.group_by(provider_id, r.model_id)):
            parts.facts.append((0, None, row[0], row[1], None, None, None, *row[2:9]))
            parts.latency.append((0, row[0], row[1]))
            parts.latency_blobs.append(_blob(row[9]))
        return
    # The display bucket of an hour, computed by the database so it returns one row per bucket and
    # group: the number of the last edge at or before the hour.
    inside = [number for number, edge in enumerate(edges) if first_hour < edge < last_hour]
    if inside:
        bucket: Any = case(*[(r.bucket < edges[n], n - 1) for n in inside], else_=inside[-1])
    else:
        edge_array = np.array(edges, dtype="datetime64[us]")
        bucket = literal(int(np.searchsorted(edge_array, np.datetime64(first_hour, "us"), "right")) - 1)
    bucket = bucket.label("b")
    dims = [bucket, user_id, provider_id, r.model_id, r.source, r.api_key_id, r.status_code]
    parts.facts.extend(tuple(row) for row in session.execute(select(*dims, *sums).where(*conds).group_by(*dims)))
    # Histograms at the two grains the page's percentiles need; far fewer groups than the sums.
    grain = [bucket, provider_id, r.model_id]
    for row in session.execute(select(*grain, _histogram_concat(dialect)).where(*conds).group_by(*grain)):
        parts.latency.append(tuple(row[:3]))
        parts.latency_blobs.append(_blob(row[3]))
    for row in session.execute(select(user_id, _histogram_concat(dialect)).where(*conds).group_by(user_id)):
        parts.users.append((row[0],))
        parts.user_blobs.append(_blob(row[1]))


def _read_raw(
    session: Session,
    flt: UsageFilter,
    edges: list[datetime],
    intervals: list[tuple[datetime, datetime]],
    *,
    detail: bool,
    parts: _Parts,
) -> None:
    stmt = select(
        Log.created_at,
        cast(Log.user_id, String),
        cast(Log.provider_id, String),
        Log.model_id,
        Log.request_body["source"].as_string(),
        Log.request_body["api_key_id"].as_string(),
        Log.status_code,
        Log.tokens_used,
        Log.prompt_tokens,
        Log.completion_tokens,
        Log.duration,
    ).where(
        or_(*(and_(Log.created_at >= low, Log.created_at < high) for low, high in intervals)),
        *log_conditions(flt),
    )
    edge_array = np.array(edges, dtype="datetime64[us]")
    for ts, user, provider, model, src, key, status, tokens, prompt, completion, ms in session.execute(stmt):
        number = int(np.searchsorted(edge_array, np.datetime64(ts, "us"), side="right")) - 1 if detail else 0
        source = SOURCE_PLAYGROUND if src == SOURCE_PLAYGROUND else SOURCE_API
        is_error = int(status is not None and status >= ERROR_STATUS_MIN)
        sums = (1, is_error, tokens or 0, prompt or 0, completion or 0, ms or 0, 0 if ms is None else 1)
        if detail:
            parts.facts.append((number, user, provider, model, source, str(key)[:64] if key else None, status, *sums))
        else:
            parts.facts.append((0, None, provider, model, None, None, None, *sums))
        blob = b"" if ms is None else encode_histogram({latency_bucket(ms): 1})
        parts.latency.append((number, provider, model))
        parts.latency_blobs.append(blob)
        if detail:
            parts.users.append((user,))
            parts.user_blobs.append(blob)


def load_facts(
    session: Session, viewer: Viewer, flt: UsageFilter, granularity: str | None = None, *, detail: bool = True
) -> Facts:
    """Read the filtered calls of [flt.start, flt.end), from rollups where exact, else raw rows."""
    flt = scoped(flt, viewer)
    zone = flt.zone
    granularity = granularity or pick_granularity(flt.start, flt.end)
    edges = bucket_edges(flt.start, flt.end, zone, granularity)
    first_hour, last_hour, cut, raw_intervals = _split_range(flt.start, flt.end, edges)
    if session.get_bind().dialect.name == "postgresql":
        # Enough memory for the aggregates to hash in memory rather than sort on disk (this transaction only).
        session.execute(text(f"SET LOCAL work_mem = '{AGGREGATE_WORK_MEM}'"))
    parts = _Parts()
    if first_hour < last_hour:
        _read_rollups(session, flt, (first_hour, last_hour, cut), edges, detail=detail, parts=parts)
    if raw_intervals:
        _read_raw(session, flt, edges, raw_intervals, detail=detail, parts=parts)
    frame = pd.DataFrame.from_records(parts.facts, columns=FACT_COLUMNS)
    for column in ["bucket", *SUM_COLUMNS]:
        frame[column] = frame[column].astype("int64")
    _add_cost(session, frame)
    return Facts(
        frame,
        Histograms.build(LATENCY_KEYS, parts.latency, parts.latency_blobs),
        Histograms.build(USER_LATENCY_KEYS, parts.users, parts.user_blobs),
        flt.start,
        flt.end,
        edges,
        zone,
        granularity,
    )


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
    pairs = frame[["provider_id", "model"]].fillna("")
    per_input: dict[tuple[str, str], float] = {}
    per_output: dict[tuple[str, str], float] = {}
    priced: dict[tuple[str, str], bool] = {}
    for provider, model in pairs.drop_duplicates().itertuples(index=False):
        table = prices.get(_as_uuid(provider), {}) if provider else {}
        # estimate_cost is linear in the tokens, so the cost of a sum is the sum of the costs.
        rate_in = estimate_cost(table, model, 1, 0) if model else None
        rate_out = estimate_cost(table, model, 0, 1) if model else None
        per_input[(provider, model)] = rate_in or 0.0
        per_output[(provider, model)] = rate_out or 0.0
        priced[(provider, model)] = rate_in is not None
    keys = pd.MultiIndex.from_frame(pairs)
    rate_in_col = keys.map(per_input).to_numpy(dtype="float64") if len(keys) else np.zeros(0)
    rate_out_col = keys.map(per_output).to_numpy(dtype="float64") if len(keys) else np.zeros(0)
    frame["cost"] = (
        frame["prompt_tokens"].to_numpy() * rate_in_col + frame["completion_tokens"].to_numpy() * rate_out_col
    )
    frame["priced"] = keys.map(priced).to_numpy(dtype=bool) if len(keys) else np.zeros(0, dtype=bool)


# --- percentiles from histograms ---------------------------------------------------------------


def _percentiles(hist: Histograms, by: Sequence[str]) -> pd.DataFrame:
    """p50/p95/p99 (ms, approximate) per group of `by` columns of hist.frame (nearest rank)."""
    columns = [*by, *(f"p{p}" for p in PERCENTILES)]
    if hist.frame.empty:
        return pd.DataFrame(columns=columns)
    if by:
        grouped = hist.frame.groupby(list(by), dropna=False, sort=True)
        codes = grouped.ngroup().to_numpy()
        keys = grouped.size().reset_index()[list(by)]
    else:
        codes = np.zeros(len(hist.frame), dtype="int64")
        keys = pd.DataFrame(index=[0])
    groups = len(keys)
    width = int(hist.index.max()) + 1 if len(hist.index) else 1
    counts = np.bincount(codes[hist.row] * width + hist.index, weights=hist.calls, minlength=groups * width).reshape(
        groups, width
    )
    seen = counts.cumsum(axis=1)
    total = seen[:, -1]
    values = np.array([latency_bucket_value(i) for i in range(width)])
    out = keys.reset_index(drop=True)
    for p in PERCENTILES:
        rank = np.maximum(1, np.ceil(total * p / 100))
        position = np.argmax(seen >= rank[:, None], axis=1)
        out[f"p{p}"] = np.where(total > 0, values[position], np.nan)
    return out[columns]


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
        mapping = {v: names.get(_as_uuid(v), str(v)) for v in column.dropna().unique()}
        return column.map(mapping).astype(object).fillna(UNKNOWN)

    frame["user"] = named(frame["user_id"], users)
    frame["provider"] = named(frame["provider_id"], providers)
    frame["model_name"] = frame["model"].astype(object).fillna(UNKNOWN)
    key_names = named(frame["api_key_id"], keys)
    no_key = np.where(frame["source"] == SOURCE_PLAYGROUND, "playground", "(no key)")
    frame["api_key"] = pd.Series(np.where(frame["api_key_id"].isna(), no_key, key_names), dtype=object)
    latency = facts.latency.frame
    latency["provider"] = named(latency["provider_id"], providers)
    latency["model_name"] = latency["model"].astype(object).fillna(UNKNOWN)
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
    requests = int(frame["requests"].sum())
    errors = int(frame["errors"].sum())
    out: dict[str, float | None] = {
        "requests": requests,
        "tokens": int(frame["tokens"].sum()),
        "prompt_tokens": int(frame["prompt_tokens"].sum()),
        "completion_tokens": int(frame["completion_tokens"].sum()),
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "cost": float(frame["cost"].sum()),
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
    sums = facts.frame.groupby(["bucket", column])["tokens"].sum()
    groups = sorted(facts.frame[column].unique())
    buckets = _bucket_frame(facts)
    index = pd.MultiIndex.from_product([buckets["bucket"], groups], names=["bucket", "group"])
    out = sums.rename_axis(["bucket", "group"]).reindex(index, fill_value=0).reset_index()
    out = out.merge(buckets, on="bucket")
    return out[["start", "group", "tokens"]].astype({"tokens": "int64"})


def requests_over_time(facts: Facts) -> pd.DataFrame:
    """start, requests, errors per bucket (zeros included)."""
    sums = facts.frame.groupby("bucket")[["requests", "errors"]].sum()
    buckets = _bucket_frame(facts).set_index("bucket")
    out = buckets.join(sums).fillna(0).reset_index(drop=True)
    return out.astype({"requests": "int64", "errors": "int64"})


def latency_over_time(facts: Facts) -> pd.DataFrame:
    """start, p50, p95, p99 (ms, approximate) per bucket; NaN where no call had a duration."""
    table = _percentiles(facts.latency, ["bucket"])
    buckets = _bucket_frame(facts)
    return buckets.merge(table, on="bucket", how="left").drop(columns="bucket")


def latency_by_model(facts: Facts) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(percentiles: model, calls, p50, p95, p99; histogram: model, latency_ms, calls) per model.
    Needs add_labels()."""
    percentiles = _percentiles(facts.latency, ["model_name"]).rename(columns={"model_name": "model"})
    hist = facts.latency
    codes, models = pd.factorize(hist.frame["model_name"], sort=True)
    width = int(hist.index.max()) + 1 if len(hist.index) else 1
    counts = np.bincount(codes[hist.row] * width + hist.index, weights=hist.calls, minlength=len(models) * width)
    model_number, index = np.divmod(np.flatnonzero(counts), width)
    histogram = pd.DataFrame(
        {
            "model": np.asarray(models, dtype=object)[model_number],
            "latency_ms": [latency_bucket_value(int(i)) for i in index],
            "calls": counts[counts > 0].astype("int64"),
        }
    )
    per_model = histogram.groupby("model")["calls"].sum().rename("calls").reset_index()
    return per_model.merge(percentiles, on="model", how="right"), histogram


def _tops(facts: Facts, dimensions: Sequence[str], limit: int = TOP_LIMIT) -> dict[str, pd.DataFrame]:
    out = {}
    for dimension in dimensions:
        sums = facts.frame.groupby(LABEL_COLUMNS[dimension], sort=False)[["tokens", "cost", "requests"]].sum()
        sums = sums.rename_axis("name").reset_index()
        for metric in ("tokens", "cost"):
            ranked = sums.sort_values([metric, "name"], ascending=[False, True]).head(limit)
            out[f"{dimension}_by_{metric}"] = ranked.reset_index(drop=True)
    return out


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
    sums = facts.frame.groupby(dims)[[*SUM_COLUMNS, "cost"]].sum().reset_index()
    sums["error_rate"] = sums["errors"] / sums["requests"]
    sums["avg_latency_ms"] = sums["duration_sum"] / sums["duration_count"].replace(0, np.nan)
    hist = facts.latency if by == "provider_model" else facts.user_latency
    p95 = _percentiles(hist, dims)[[*dims, "p95"]].rename(columns={"p95": "p95_ms"})
    out = sums.merge(p95, on=dims, how="left").rename(columns={"model_name": "model"})
    dims = ["provider", "model"] if by == "provider_model" else ["user"]
    columns = [*dims, "requests", "tokens", "prompt_tokens", "completion_tokens", "errors", "error_rate"]
    return out[[*columns, "avg_latency_ms", "p95_ms", "cost"]].sort_values(dims).reset_index(drop=True)


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


def _load_previous(engine: Engine, viewer: Viewer, flt: UsageFilter, granularity: str) -> Facts:
    with Session(engine) as session:
        return load_facts(session, viewer, flt.previous(), granularity, detail=False)


def usage_page(session: Session, viewer: Viewer, flt: UsageFilter, granularity: str | None = None) -> UsagePage:
    """All the Usage page's data for `flt`, as `viewer` may see it (two reads: this period and the last)."""
    flt = scoped(flt, viewer)
    granularity = granularity or pick_granularity(flt.start, flt.end)
    bind = session.get_bind()
    if isinstance(bind, Engine):
        # The previous period (tiles only) is read meanwhile on a connection of its own.
        with ThreadPoolExecutor(max_workers=1) as pool:
            later = pool.submit(_load_previous, bind, viewer, flt, granularity)
            current = load_facts(session, viewer, flt, granularity)
            previous = later.result()
    else:
        current = load_facts(session, viewer, flt, granularity)
        previous = load_facts(session, viewer, flt.previous(), granularity, detail=False)
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


def filter_options(session: Session, viewer: Viewer) -> dict[str, list[Any]]:
    """Choices for the filter widgets: providers (id, name), models, users (admins; id, label)."""
    stmt = select(UsageRollup.provider_id, UsageRollup.model_id).distinct()
    if viewer.role != "admin":
        stmt = stmt.where(UsageRollup.user_id == viewer.id)
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
