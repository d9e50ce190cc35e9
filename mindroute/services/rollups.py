"""Usage rollups of Logs at three levels: kept in step as calls are written, rebuilt and pruned in batches.

- usagerollups (HOURLY): calls per UTC hour and (user, provider, model, source, API key, status code);
- usagedailyrollups (DAILY): the same dimensions per UTC day, for the totals of long ranges;
- usagemodelrollups (BY_MODEL): calls per UTC hour and (provider, model) only, for the charts.

A rollup row sums its calls: requests, errors (status >= 400), token sums, duration sum and count,
and a latency histogram stored as packed (uint16 bucket index, uint32 calls) little-endian pairs, so
that concatenated histograms are still a valid histogram (read back with numpy in one call). Buckets
are log-spaced with ratio LATENCY_BUCKET_RATIO, so a bucket's representative value is within 1% of
every duration in it (durations are whole ms).

Every level is derived from the same per-(hour, dimensions) totals of the calls (`accumulate`), and
written with two multi-row statements per level and batch (`apply_totals`): an upsert that creates
missing rows and locks and returns the existing ones, then an upsert of the new values, merged in
Python (histograms cannot be merged in SQL on both databases).
"""

from __future__ import annotations

import hashlib
import math
import struct
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, delete, func, insert, select, text, tuple_
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session
from tqdm import tqdm

from mindroute.db import transaction
from mindroute.models import Log, UsageDailyRollup, UsageModelRollup, UsageRollup, utcnow

LATENCY_BUCKET_RATIO = 1.02
_LOG_RATIO = math.log(LATENCY_BUCKET_RATIO)
ERROR_STATUS_MIN = 400
SOURCE_PLAYGROUND = "playground"
SOURCE_API = "api"
REBUILD_CHUNK = timedelta(days=1)
PRUNE_BATCH_ROWS = 5_000


# --- latency histogram ------------------------------------------------------------------------


HISTOGRAM_ENTRY = struct.Struct("<HI")


def encode_histogram(histogram: Mapping[int, int]) -> bytes:
    """Packed (index, calls) pairs, sorted by index; zero counts left out."""
    pack = HISTOGRAM_ENTRY.pack
    return b"".join(pack(index, calls) for index, calls in sorted(histogram.items()) if calls > 0)


def decode_histogram(blob: bytes | None) -> dict[int, int]:
    out: dict[int, int] = {}
    for index, calls in HISTOGRAM_ENTRY.iter_unpack(blob or b""):
        out[index] = out.get(index, 0) + calls
    return out


def latency_bucket(duration_ms: int) -> int:
    """The histogram bucket of a duration: floor(log(1 + ms) / log(ratio))."""
    return math.floor(math.log1p(max(0, duration_ms)) / _LOG_RATIO + 1e-9)


def latency_bucket_bounds(index: int) -> tuple[float, float]:
    """[low, high) in ms of a bucket."""
    return math.expm1(index * _LOG_RATIO), math.expm1((index + 1) * _LOG_RATIO)


def latency_bucket_value(index: int) -> float:
    """The value reported for a bucket: its only whole ms if it holds one, else its log-midpoint."""
    low, high = latency_bucket_bounds(index)
    first, last = math.ceil(low - 1e-9), math.ceil(high - 1e-9) - 1
    if first == last:
        return float(first)
    return math.expm1((index + 0.5) * _LOG_RATIO)


def histogram_percentile(histogram: Mapping[int, int], percentile: float) -> float | None:
    """Nearest-rank percentile (the ceil(p/100 * n)-th smallest call) of a histogram; approximate (1%)."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(percentile / 100 * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return latency_bucket_value(index)
    return latency_bucket_value(max(histogram))


# --- dimensions of a call ---------------------------------------------------------------------


def source_of(request_body: Any) -> str:
    """'playground' for playground calls, 'api' for everything else (API calls, imported rows)."""
    if isinstance(request_body, Mapping) and request_body.get("source") == SOURCE_PLAYGROUND:
        return SOURCE_PLAYGROUND
    return SOURCE_API


def api_key_of(request_body: Any) -> str | None:
    value = request_body.get("api_key_id") if isinstance(request_body, Mapping) else None
    return str(value)[:64] if value else None


@dataclass(frozen=True)
class Dims:
    user_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    model: str | None
    source: str
    api_key_id: str | None
    status_code: int | None

    def key(self) -> str:
        cached = self.__dict__.get("_key")
        if cached is None:
            parts = (self.user_id, self.provider_id, self.model, self.source, self.api_key_id, self.status_code)
            cached = _digest(parts)
            object.__setattr__(self, "_key", cached)  # frozen, but the digest is worth keeping
        return cached


def _digest(parts: Sequence[Any]) -> str:
    raw = "\x1f".join("\x00" if p is None else str(p) for p in parts)
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_sum: int = 0
    duration_count: int = 0
    latency: dict[int, int] = field(default_factory=dict)

    def add(
        self, status: int | None, tokens: int | None, prompt: int | None, completion: int | None, ms: int | None
    ) -> None:
        self.requests += 1
        self.errors += 1 if status is not None and status >= ERROR_STATUS_MIN else 0
        self.tokens += tokens or 0
        self.prompt_tokens += prompt or 0
        self.completion_tokens += completion or 0
        if ms is not None:
            self.duration_sum += ms
            self.duration_count += 1
            index = latency_bucket(ms)
            self.latency[index] = self.latency.get(index, 0) + 1

    def merge(self, other: Totals, sign: int = 1) -> None:
        for name in SUM_FIELDS:
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))
        for index, calls in other.latency.items():
            self.latency[index] = self.latency.get(index, 0) + sign * calls


# The counters of Totals, named as the rollup models' attributes.
SUM_FIELDS = ("requests", "errors", "tokens", "prompt_tokens", "completion_tokens", "duration_sum", "duration_count")


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> datetime:
    """The UTC midnight a moment's day starts at."""
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


# --- levels -----------------------------------------------------------------------------------

ALL_DIMS = ("user_id", "provider_id", "model", "source", "api_key_id", "status_code")
DIM_ATTRIBUTES = {
    "user_id": "user_id",
    "provider_id": "provider_id",
    "model": "model_id",
    "source": "source",
    "api_key_id": "api_key_id",
    "status_code": "status_code",
}


@dataclass(frozen=True)
class Level:
    """One rollup table: its period (an hour or a UTC day) and the dimensions of a call it keeps."""

    name: str
    model: type
    daily: bool
    dims: tuple[str, ...]

    @property
    def table(self) -> Any:
        return self.model.__table__

    def bucket(self, hour: datetime) -> datetime:
        return day_of(hour) if self.daily else hour

    def key(self, dims: Dims) -> str:
        return dims.key() if self.dims == ALL_DIMS else _digest([getattr(dims, d) for d in self.dims])

    @cached_property
    def dim_columns(self) -> tuple[tuple[str, str], ...]:
        """(Dims field, column name) of the dimensions kept."""
        return tuple((dim, self.model.__mapper__.attrs[DIM_ATTRIBUTES[dim]].columns[0].key) for dim in self.dims)

    def row(self, bucket: datetime, dims: Dims, totals: Totals | None) -> dict[str, Any]:
        """The row's values as column names."""
        t = totals or Totals()
        row: dict[str, Any] = {"bucket": bucket, "dimkey": self.key(dims)}
        for dim, column in self.dim_columns:
            row[column] = getattr(dims, dim)
        for name, column in zip(SUM_FIELDS, SUM_COLUMNS, strict=True):
            row[column] = getattr(t, name)
        row["latency"] = encode_histogram(t.latency)
        return row


def _column_name(attribute: str) -> str:
    return UsageRollup.__mapper__.attrs[attribute].columns[0].key


SUM_COLUMNS = tuple(_column_name(name) for name in SUM_FIELDS)


HOURLY = Level("hourly", UsageRollup, False, ALL_DIMS)
DAILY = Level("daily", UsageDailyRollup, True, ALL_DIMS)
BY_MODEL = Level("by_model", UsageModelRollup, False, ("provider_id", "model"))
LEVELS = (HOURLY, DAILY, BY_MODEL)  # also the order writers lock their rows in


# Columns read from Logs to roll a row up; source and API key come out of requestBody in SQL.
def fact_columns() -> list[Any]:
    return [
        Log.created_at,
        Log.user_id,
        Log.provider_id,
        Log.model_id,
        Log.request_body["source"].as_string(),
        Log.request_body["api_key_id"].as_string(),
        Log.status_code,
        Log.tokens_used,
        Log.prompt_tokens,
        Log.completion_tokens,
        Log.duration,
    ]


def accumulate(rows: Iterable[Any]) -> dict[tuple[datetime, Dims], Totals]:
    """Sum rows of fact_columns() per (hour, dims)."""
    out: dict[tuple[datetime, Dims], Totals] = {}
    for created, user, provider, model, source, api_key, status, tokens, prompt, completion, ms in rows:
        dims = Dims(
            user,
            provider,
            model,
            SOURCE_PLAYGROUND if source == SOURCE_PLAYGROUND else SOURCE_API,
            str(api_key)[:64] if api_key else None,
            status,
        )
        key = (hour_of(created), dims)
        totals = out.get(key)
        if totals is None:
            totals = out[key] = Totals()
        totals.add(status, tokens, prompt, completion, ms)
    return out


Rolled = dict[tuple[datetime, str], tuple[Dims, Totals]]


def roll_up(level: Level, totals_by_key: Mapping[tuple[datetime, Dims], Totals]) -> Rolled:
    """Per-(hour, dims) totals summed to a level's rows: {(bucket, dimkey): (dims, totals)}."""
    if level is HOURLY:
        return {(hour, dims.key()): (dims, totals) for (hour, dims), totals in totals_by_key.items()}
    out: Rolled = {}
    for (hour, dims), totals in totals_by_key.items():
        key = (level.bucket(hour), level.key(dims))
        entry = out.get(key)
        if entry is None:
            entry = out[key] = (dims, Totals())
        entry[1].merge(totals)
    return out


def _merged_latency(blob: bytes | None, change: Mapping[int, int], sign: int) -> bytes:
    histogram = {index: calls for index, calls in HISTOGRAM_ENTRY.iter_unpack(blob or b"")}
    for index, calls in change.items():
        histogram[index] = histogram.get(index, 0) + sign * calls
    return encode_histogram(histogram)


PG_TYPES = {"bucket": "timestamp", "dimkey": "varchar", "userid": "uuid", "providerid": "uuid", "modelid": "varchar"}
PG_TYPES |= {"source": "varchar", "apikeyid": "varchar", "statuscode": "integer", "latency": "bytea"}
PG_TYPES |= dict.fromkeys(SUM_COLUMNS, "bigint")


def _pg_upsert(level: Level, set_clause: str, returning: str = "") -> Any:
    """PostgreSQL: a multi-row upsert whose rows come as one array per column (unnest), so the
    statement text stays short and is prepared once, whatever the batch size."""
    columns = ["bucket", "dimkey", *(column for _dim, column in level.dim_columns), *SUM_COLUMNS, "latency"]
    arrays = ", ".join(f"CAST(:{c} AS {PG_TYPES[c]}[])" for c in columns)
    name = level.table.name
    sql = f"INSERT INTO {name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "  # noqa: S608 - model names
    return text(sql + f"ON CONFLICT (bucket, dimkey) DO UPDATE SET {set_clause}{returning}")


def _upsert(session: Session, level: Level, rows: list[dict[str, Any]], *, lock: bool) -> Any:
    """Upsert rows: with `lock`, create the missing ones as given and lock and return all of them
    (bucket, dimkey, sums, latency; existing rows unchanged); else set the rows' sums and latency."""
    table = level.table
    if session.get_bind().dialect.name == "postgresql":
        if lock:
            returning = ", ".join(["bucket", "dimkey", *SUM_COLUMNS, "latency"])
            stmt = _pg_upsert(level, f"requests = {table.name}.requests", f" RETURNING {returning}")
        else:
            stmt = _pg_upsert(level, ", ".join(f"{c} = excluded.{c}" for c in [*SUM_COLUMNS, "latency"]))
        return session.execute(stmt, {column: [row[column] for row in rows] for column in rows[0]})
    # SQLite: "insert many values", one compiled statement sent as multi-row INSERTs.
    upsert = sqlite.insert(table)
    if lock:
        upsert = upsert.on_conflict_do_update(
            index_elements=["bucket", "dimkey"], set_={"requests": table.c.requests}
        ).returning(table.c.bucket, table.c.dimkey, *(table.c[c] for c in SUM_COLUMNS), table.c.latency)
    else:
        upsert = upsert.on_conflict_do_update(
            index_elements=["bucket", "dimkey"], set_={c: upsert.excluded[c] for c in [*SUM_COLUMNS, "latency"]}
        )
    return session.execute(upsert, rows)


def _apply_level(session: Session, level: Level, rolled: Rolled, sign: int) -> None:
    table = level.table
    keys = sorted(rolled)  # one lock order for every writer
    # 1. Create the missing rows empty; lock (a no-op update) and return the existing ones.
    empties = [level.row(bucket, rolled[(bucket, k)][0], None) for bucket, k in keys]
    current = {(row[0], row[1]): row for row in _upsert(session, level, empties, lock=True)}
    # 2. Write the sums (all rows exist and are locked by now), and drop the rows left empty.
    values, emptied = [], []
    for new in empties:
        row = current[(new["bucket"], new["dimkey"])]
        totals = rolled[(new["bucket"], new["dimkey"])][1]
        for number, (name, column) in enumerate(zip(SUM_FIELDS, SUM_COLUMNS, strict=True)):
            new[column] = row[2 + number] + sign * getattr(totals, name)
        new["latency"] = _merged_latency(row[-1], totals.latency, sign)
        (values if new["requests"] > 0 else emptied).append(new)
    if values:
        _upsert(session, level, values, lock=False)
    if emptied:
        gone = [(v["bucket"], v["dimkey"]) for v in emptied]
        session.execute(delete(table).where(tuple_(table.c.bucket, table.c.dimkey).in_(gone)))


def apply_totals(
    session: Session,
    totals_by_key: Mapping[tuple[datetime, Dims], Totals],
    sign: int = 1,
    levels: Sequence[Level] = LEVELS,
) -> None:
    """Add (sign 1) or subtract (sign -1) per-(hour, dims) totals to the rollups of `levels`: two
    multi-row statements per level, under a row lock per rollup row."""
    if not totals_by_key:
        return
    for level in LEVELS:
        if level in levels:
            _apply_level(session, level, roll_up(level, totals_by_key), sign)


def _fact_of(log: Log | Mapping[str, Any]) -> tuple[Any, ...]:
    if isinstance(log, Mapping):
        return tuple(log.get(a) for a in _FACT_ATTRIBUTES)
    return tuple(getattr(log, a) for a in _FACT_ATTRIBUTES)


_FACT_ATTRIBUTES = (
    "created_at",
    "user_id",
    "provider_id",
    "model_id",
    "request_body",
    "status_code",
    "tokens_used",
    "prompt_tokens",
    "completion_tokens",
    "duration",
)


def _facts(logs: Iterable[Log | Mapping[str, Any]]) -> Iterable[tuple[Any, ...]]:
    for log in logs:
        created, user, provider, model, body, *counts = _fact_of(log)
        body = body if isinstance(body, Mapping) else {}
        yield (created or utcnow(), user, provider, model, body.get("source"), body.get("api_key_id"), *counts)


def add_logs_to_rollups(session: Session, logs: Iterable[Log | Mapping[str, Any]]) -> None:
    """Count just-written Logs rows in the rollups of every level (same transaction as the rows); the
    rows are summed first, so a batch costs two statements per level whatever its size. A row is a
    Log, or its values keyed by Log attribute (call_log.log_values)."""
    apply_totals(session, accumulate(_facts(logs)))


def add_log_to_rollups(session: Session, log: Log) -> None:
    """Count one just-written Logs row in the rollups (same transaction as the row)."""
    add_logs_to_rollups(session, [log])


def add_fact_rows_to_rollups(session: Session, rows: Iterable[Sequence[Any]]) -> None:
    """Count just-written Logs rows given as fact_columns() tuples (created, user, provider, model,
    source, API key, status, tokens, prompt, completion, duration) in the rollups, in the same
    transaction as the rows: for bulk writers that never build Log objects (seed-demo)."""
    apply_totals(session, accumulate(rows))


# --- rebuild ----------------------------------------------------------------------------------

ROLLUP_TABLES = ", ".join(level.table.name for level in LEVELS)


def _lock_rollups(session: Session) -> None:
    # Writers update the rollups in the transaction of their Logs rows; while a day is rebuilt they
    # wait, and then add their calls to the rebuilt rows (or, already committed, are read by it).
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"LOCK TABLE {ROLLUP_TABLES} IN SHARE ROW EXCLUSIVE MODE"))


def _chunks(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    cursor = start
    while cursor < end:
        nxt = min(cursor + REBUILD_CHUNK, end)
        yield cursor, nxt
        cursor = nxt


def _insert_rows(session: Session, level: Level, rolled: Rolled) -> int:
    values = [level.row(bucket, dims, totals) for (bucket, _key), (dims, totals) in rolled.items()]
    if values:
        session.execute(insert(level.table), values)
    return len(values)


def rebuild_days(session: Session, start: datetime, end: datetime) -> int:
    """Recompute every level's rollups of the whole UTC days in [start, end) from Logs (start and end
    are midnights); returns hourly rollup rows written."""
    _lock_rollups(session)
    for level in LEVELS:
        session.execute(delete(level.table).where(level.table.c.bucket >= start, level.table.c.bucket < end))
    rows = session.execute(select(*fact_columns()).where(Log.created_at >= start, Log.created_at < end))
    totals = accumulate(rows)
    written = 0
    for level in LEVELS:
        count = _insert_rows(session, level, roll_up(level, totals))
        written += count if level is HOURLY else 0
    return written


def rebuild_rollups(engine: Engine, since: datetime | None = None, *, progress: bool | None = None) -> tuple[int, int]:
    """Rebuild the rollups from Logs (all of them, or the UTC days from `since`'s), a day per transaction.

    Returns (log rows read, hourly rollup rows written). Needed after rows written behind the
    rollups' back (SQL by hand); seed-demo, restore and copy-to keep the rollups in step themselves,
    and bring_rollups_in_step rebuilds only the days that differ.
    """
    with transaction(engine) as session:
        first, last = session.execute(select(func.min(Log.created_at), func.max(Log.created_at))).one()
        logs = session.scalar(select(func.count()).select_from(Log)) or 0
        if since is None:
            _lock_rollups(session)
            for level in LEVELS:  # also drops rollups of logs deleted by hand
                session.execute(delete(level.table))
    if first is None:
        return 0, 0
    start = day_of(max(first, since) if since else first)
    end = day_of(last) + timedelta(days=1)
    if since is not None:
        with transaction(engine) as session:
            _lock_rollups(session)
            for level in LEVELS:
                session.execute(delete(level.table).where(level.table.c.bucket >= start))
    written = 0
    chunks = list(_chunks(start, end))
    disable = None if progress is None else not progress
    with tqdm(total=len(chunks), unit="day", file=sys.stderr, disable=disable, desc="rollups") as bar:
        for low, high in chunks:
            with transaction(engine) as session:
                written += rebuild_days(session, low, high)
            bar.update(1)
    return logs, written


# --- in step with Logs -------------------------------------------------------------------------

# Per period: requests, errors, tokens, prompt tokens, completion tokens, duration sum and count.
Sums = tuple[int, ...]
_NO_SUMS: Sums = (0,) * len(SUM_FIELDS)


def _hour_of_log(dialect: str) -> Any:
    if dialect == "postgresql":
        return func.date_trunc("hour", Log.created_at)
    return func.strftime("%Y-%m-%d %H:00:00", Log.created_at)  # SQLite keeps timestamps as ISO text


def _as_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _log_sums_by_hour(session: Session) -> dict[datetime, Sums]:
    """The rollups' counters of every UTC hour, computed by the database from Logs."""
    hour = _hour_of_log(session.get_bind().dialect.name).label("hour")
    errors = func.sum(case((Log.status_code >= ERROR_STATUS_MIN, 1), else_=0))
    tokens = [func.sum(func.coalesce(c, 0)) for c in (Log.tokens_used, Log.prompt_tokens, Log.completion_tokens)]
    stmt = select(hour, func.count(), errors, *tokens, func.sum(Log.duration), func.count(Log.duration))
    return {
        _as_datetime(row[0]): tuple(int(v or 0) for v in row[1:])
        for row in session.execute(stmt.group_by(hour))
        if row[0] is not None
    }


def _level_sums(session: Session, level: Level) -> dict[datetime, Sums]:
    t = level.table
    stmt = select(t.c.bucket, *(func.sum(t.c[c]) for c in SUM_COLUMNS)).group_by(t.c.bucket)
    return {row[0]: tuple(int(v or 0) for v in row[1:]) for row in session.execute(stmt)}


def days_out_of_step(session: Session) -> list[datetime]:
    """The UTC days (midnights) where some rollup level's counters (requests, errors, token sums,
    duration sum and count) differ from Logs for an hour (hourly, per-model) or the day (daily).

    One grouped read of Logs and of each level: the check restore and copy-to run after loading
    rows in bulk, so that only the days that need it are rebuilt."""
    by_hour = _log_sums_by_hour(session)
    by_day: dict[datetime, list[int]] = {}
    for hour, sums in by_hour.items():
        day = by_day.setdefault(day_of(hour), [0] * len(SUM_FIELDS))
        for number, value in enumerate(sums):
            day[number] += value
    wanted = {True: {day: tuple(sums) for day, sums in by_day.items()}, False: by_hour}
    days: set[datetime] = set()
    for level in LEVELS:
        want, got = wanted[level.daily], _level_sums(session, level)
        days.update(day_of(b) for b in want.keys() | got.keys() if want.get(b, _NO_SUMS) != got.get(b, _NO_SUMS))
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


def derive_levels_from_hourly(connection: Connection) -> None:
    """Fill the daily and per-model levels from usagerollups (migration 0005, on existing data)."""
    hourly = HOURLY.table
    daily: dict[tuple[datetime, str], tuple[Dims, Totals]] = {}
    by_model: dict[tuple[datetime, str], tuple[Dims, Totals]] = {}
    counters = [hourly.c[_column_name(name)] for name in SUM_FIELDS]
    dims_columns = [hourly.c[HOURLY.model.__mapper__.attrs[DIM_ATTRIBUTES[d]].columns[0].key] for d in ALL_DIMS]
    stmt = select(hourly.c.bucket, *dims_columns, *counters, hourly.c.latency)
    for row in connection.execute(stmt).yield_per(10_000):
        dims = Dims(*row[1:7])
        totals = Totals(*row[7:14], latency=decode_histogram(row[14]))
        for level, out in ((DAILY, daily), (BY_MODEL, by_model)):
            key = (level.bucket(row[0]), level.key(dims))
            entry = out.get(key)
            if entry is None:
                entry = out[key] = (dims, Totals())
            entry[1].merge(totals)
    for level, out in ((DAILY, daily), (BY_MODEL, by_model)):
        values = [level.row(bucket, dims, totals) for (bucket, _key), (dims, totals) in out.items()]
        for offset in range(0, len(values), 10_000):
            connection.execute(insert(level.table), values[offset : offset + 10_000])


# --- retention --------------------------------------------------------------------------------


def prune_logs(
    engine: Engine,
    older_than_days: int,
    *,
    batch_rows: int = PRUNE_BATCH_ROWS,
    progress: bool | None = None,
    now: datetime | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Delete Logs older than N days, oldest first, a short transaction per batch; returns rows deleted.

    `on_progress(deleted so far, total)` is called after each batch (the app's progress bar).

    Rollups stay consistent: those of whole periods (hours; days for the daily level) before the
    cutoff are dropped first (their calls are all about to go), and each batch subtracts its calls
    from the period the cutoff falls in (its hour, and its UTC day).
    """
    if older_than_days < 0:
        raise ValueError("older_than_days must be 0 or more")
    cutoff = (now or utcnow()) - timedelta(days=older_than_days)
    cutoff_hour, cutoff_day = hour_of(cutoff), day_of(cutoff)
    with transaction(engine) as session:
        total = session.scalar(select(func.count()).select_from(Log).where(Log.created_at < cutoff)) or 0
        _lock_rollups(session)
        for level in LEVELS:
            table = level.table
            session.execute(delete(table).where(table.c.bucket < (cutoff_day if level.daily else cutoff_hour)))
    deleted = 0
    disable = None if progress is None else not progress
    with tqdm(total=total, unit="row", unit_scale=True, file=sys.stderr, disable=disable, desc="prune") as bar:
        while True:
            with transaction(engine) as session:
                ids_and_facts = session.execute(
                    select(Log.id, *fact_columns())
                    .where(Log.created_at < cutoff)
                    .order_by(Log.created_at)
                    .limit(batch_rows)
                ).all()
                if not ids_and_facts:
                    break
                session.execute(delete(Log).where(Log.id.in_([r[0] for r in ids_and_facts])))
                in_day = accumulate(tuple(r[1:]) for r in ids_and_facts if r[1] >= cutoff_day)
                if in_day:
                    _lock_rollups(session)
                    in_hour = {key: t for key, t in in_day.items() if key[0] >= cutoff_hour}
                    apply_totals(session, in_hour, sign=-1, levels=(HOURLY, BY_MODEL))
                    apply_totals(session, in_day, sign=-1, levels=(DAILY,))
            deleted += len(ids_and_facts)
            bar.update(len(ids_and_facts))
            if on_progress is not None:
                on_progress(deleted, total)
    return deleted


def rollup_hours_between(start: datetime, end: datetime) -> Any:
    """A condition: hourly rollup rows of the hours in [start, end)."""
    return and_(UsageRollup.bucket >= start, UsageRollup.bucket < end)
