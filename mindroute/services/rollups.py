"""Hourly usage rollups of Logs: kept in step as calls are written, rebuilt and pruned in batches.

A rollup row sums the calls of one UTC hour with the same (user, provider, model, source, API key,
status code): requests, errors (status >= 400), token sums, duration sum and count, and a latency
histogram stored as packed (uint16 bucket index, uint32 calls) little-endian pairs, so that
concatenated histograms are still a valid histogram (read back with numpy in one call). Buckets are
log-spaced with ratio LATENCY_BUCKET_RATIO, so a bucket's representative value is within 1% of every
duration in it (durations are whole ms).
"""

from __future__ import annotations

import hashlib
import math
import struct
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from tqdm import tqdm

from mindroute.db import transaction
from mindroute.models import Log, UsageRollup, utcnow

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
        parts = (self.user_id, self.provider_id, self.model, self.source, self.api_key_id, self.status_code)
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


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


# Columns read from Logs to roll a row up; source and API key come out of requestBody in SQL.
def _fact_columns() -> list[Any]:
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
    """Sum rows of _fact_columns() per (hour, dims)."""
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


def _empty_row(bucket: datetime, dims: Dims) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "dim_key": dims.key(),
        "user_id": dims.user_id,
        "provider_id": dims.provider_id,
        "model_id": dims.model,
        "source": dims.source,
        "api_key_id": dims.api_key_id,
        "status_code": dims.status_code,
        "requests": 0,
        "errors": 0,
        "tokens": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "duration_sum": 0,
        "duration_count": 0,
        "latency": b"",
    }


def _row_values(bucket: datetime, dims: Dims, totals: Totals) -> dict[str, Any]:
    row = _empty_row(bucket, dims)
    row.update(
        requests=totals.requests,
        errors=totals.errors,
        tokens=totals.tokens,
        prompt_tokens=totals.prompt_tokens,
        completion_tokens=totals.completion_tokens,
        duration_sum=totals.duration_sum,
        duration_count=totals.duration_count,
        latency=encode_histogram(totals.latency),
    )
    return row


def apply_totals(session: Session, totals_by_key: Mapping[tuple[datetime, Dims], Totals], sign: int = 1) -> None:
    """Add (sign 1) or subtract (sign -1) totals to the rollups, under a row lock per rollup row."""
    dialect = session.get_bind().dialect.name
    insert_fn = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for (bucket, dims), totals in totals_by_key.items():
        empty = _empty_row(bucket, dims)
        session.execute(
            insert_fn(UsageRollup).values(**empty).on_conflict_do_nothing(index_elements=["bucket", "dimkey"])
        )
        row = session.execute(
            select(UsageRollup)
            .where(UsageRollup.bucket == bucket, UsageRollup.dim_key == empty["dim_key"])
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()
        row.requests += sign * totals.requests
        row.errors += sign * totals.errors
        row.tokens += sign * totals.tokens
        row.prompt_tokens += sign * totals.prompt_tokens
        row.completion_tokens += sign * totals.completion_tokens
        row.duration_sum += sign * totals.duration_sum
        row.duration_count += sign * totals.duration_count
        latency = decode_histogram(row.latency)
        for index, calls in totals.latency.items():
            latency[index] = latency.get(index, 0) + sign * calls
        row.latency = encode_histogram(latency)
        if row.requests <= 0:
            session.delete(row)
    session.flush()


def add_log_to_rollups(session: Session, log: Log) -> None:
    """Count one just-written Logs row in its hour's rollup (same transaction as the row)."""
    source = log.request_body.get("source") if isinstance(log.request_body, Mapping) else None
    api_key = log.request_body.get("api_key_id") if isinstance(log.request_body, Mapping) else None
    created = log.created_at or utcnow()
    fact = (
        created,
        log.user_id,
        log.provider_id,
        log.model_id,
        source,
        api_key,
        log.status_code,
        log.tokens_used,
        log.prompt_tokens,
        log.completion_tokens,
        log.duration,
    )
    apply_totals(session, accumulate([fact]))


# --- rebuild ----------------------------------------------------------------------------------


def _lock_rollups(session: Session) -> None:
    # Writers update a rollup in the transaction of their Logs row; while an hour is rebuilt they
    # wait, and then add their call to the rebuilt row (or, already committed, are read by it).
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE usagerollups IN SHARE ROW EXCLUSIVE MODE"))


def _chunks(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    cursor = start
    while cursor < end:
        nxt = min(cursor + REBUILD_CHUNK, end)
        yield cursor, nxt
        cursor = nxt


def rebuild_hours(session: Session, start: datetime, end: datetime) -> int:
    """Recompute the rollups of the whole UTC hours in [start, end) from Logs; returns rollup rows written."""
    _lock_rollups(session)
    session.execute(delete(UsageRollup).where(UsageRollup.bucket >= start, UsageRollup.bucket < end))
    rows = session.execute(select(*_fact_columns()).where(Log.created_at >= start, Log.created_at < end))
    totals = accumulate(rows)
    values = [_row_values(bucket, dims, t) for (bucket, dims), t in totals.items()]
    if values:
        session.execute(insert(UsageRollup), values)
    return len(values)


def rebuild_rollups(engine: Engine, since: datetime | None = None, *, progress: bool | None = None) -> tuple[int, int]:
    """Rebuild the rollups from Logs (all of them, or the hours from `since`), a day per transaction.

    Returns (log rows read, rollup rows written). Needed after bulk loads that bypass
    write_call_log (seed-demo, restore, copy-to, SQL by hand).
    """
    with transaction(engine) as session:
        first, last = session.execute(select(func.min(Log.created_at), func.max(Log.created_at))).one()
        logs = session.scalar(select(func.count()).select_from(Log)) or 0
        if since is None:
            session.execute(delete(UsageRollup))  # also drops rollups of logs deleted by hand
    if first is None:
        return 0, 0
    start = hour_of(max(first, since) if since else first)
    end = hour_of(last) + timedelta(hours=1)
    if since is not None:
        with transaction(engine) as session:
            session.execute(delete(UsageRollup).where(UsageRollup.bucket >= start))
    written = 0
    chunks = list(_chunks(start, end))
    disable = None if progress is None else not progress
    with tqdm(total=len(chunks), unit="day", file=sys.stderr, disable=disable, desc="rollups") as bar:
        for low, high in chunks:
            with transaction(engine) as session:
                written += rebuild_hours(session, low, high)
            bar.update(1)
    return logs, written


# --- retention --------------------------------------------------------------------------------


def prune_logs(
    engine: Engine,
    older_than_days: int,
    *,
    batch_rows: int = PRUNE_BATCH_ROWS,
    progress: bool | None = None,
    now: datetime | None = None,
) -> int:
    """Delete Logs older than N days, oldest first, a short transaction per batch; returns rows deleted.

    Rollups stay consistent: those of whole hours before the cutoff are dropped first (their calls are
    all about to go), and each batch subtracts its calls from the cutoff's own, partial hour.
    """
    if older_than_days < 0:
        raise ValueError("older_than_days must be 0 or more")
    cutoff = (now or utcnow()) - timedelta(days=older_than_days)
    cutoff_hour = hour_of(cutoff)
    with transaction(engine) as session:
        total = session.scalar(select(func.count()).select_from(Log).where(Log.created_at < cutoff)) or 0
        session.execute(delete(UsageRollup).where(UsageRollup.bucket < cutoff_hour))
    deleted = 0
    disable = None if progress is None else not progress
    with tqdm(total=total, unit="row", unit_scale=True, file=sys.stderr, disable=disable, desc="prune") as bar:
        while True:
            with transaction(engine) as session:
                ids_and_facts = session.execute(
                    select(Log.id, *_fact_columns())
                    .where(Log.created_at < cutoff)
                    .order_by(Log.created_at)
                    .limit(batch_rows)
                ).all()
                if not ids_and_facts:
                    break
                session.execute(delete(Log).where(Log.id.in_([r[0] for r in ids_and_facts])))
                partial = [tuple(r[1:]) for r in ids_and_facts if r[1] >= cutoff_hour]
                if partial:
                    _lock_rollups(session)
                    apply_totals(session, accumulate(partial), sign=-1)
            deleted += len(ids_and_facts)
            bar.update(len(ids_and_facts))
    return deleted


def rollup_hours_between(start: datetime, end: datetime) -> Any:
    """A condition: rollup rows of the hours in [start, end)."""
    return and_(UsageRollup.bucket >= start, UsageRollup.bucket < end)
