"""The usage rollups kept in step with Logs: counting written calls, rebuilding days, pruning old calls.

Every level (see levels.py) is written with two multi-row statements per level and batch
(`apply_totals`): an upsert that creates missing rows and locks and returns the existing ones, then
an upsert of the new values, merged in Python (histograms cannot be merged in SQL on both databases).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Connection, Engine, MetaData, Table, delete, func, insert, inspect, select, text, tuple_
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session
from tqdm import tqdm

from mindroute.analytics.histograms import HISTOGRAM_ENTRY, decode_histogram, encode_histogram
from mindroute.analytics.levels import (
    BY_MODEL,
    DAILY,
    HOURLY,
    LEVELS,
    SUM_COLUMNS,
    SUM_FIELDS,
    Dims,
    Level,
    Rolled,
    Totals,
    accumulate,
    add_to,
    day_of,
    fact_columns,
    hour_of,
    roll_up,
)
from mindroute.db import transaction
from mindroute.models import Log, utcnow

REBUILD_CHUNK = timedelta(days=1)
PRUNE_BATCH_ROWS = 5_000


def _merged_latency(blob: bytes | None, change: Mapping[int, int], sign: int) -> bytes:
    histogram = {index: calls for index, calls in HISTOGRAM_ENTRY.iter_unpack(blob or b"")}
    for index, calls in change.items():
        histogram[index] = histogram.get(index, 0) + sign * calls
    return encode_histogram(histogram)


PG_TYPES = {"bucket": "timestamp", "dimkey": "varchar", "userid": "uuid", "providerid": "uuid", "modelid": "varchar"}
PG_TYPES |= {"source": "varchar", "apikeyid": "varchar", "statuscode": "integer", "requesttype": "varchar"}
PG_TYPES |= {"latency": "bytea"}
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
    "request_type",
)


def _facts(logs: Iterable[Log | Mapping[str, Any]]) -> Iterable[tuple[Any, ...]]:
    for log in logs:
        created, user, provider, model, body, *counts, kind = _fact_of(log)
        body = body if isinstance(body, Mapping) else {}
        source, key = body.get("source"), body.get("api_key_id")
        yield (created or utcnow(), user, provider, model, source, key, *counts, kind)


def add_logs_to_rollups(session: Session, logs: Iterable[Log | Mapping[str, Any]]) -> None:
    """Count just-written Logs rows in the rollups of every level (same transaction as the rows); the
    rows are summed first, so a batch costs two statements per level whatever its size. A row is a
    Log, or its values keyed by Log attribute (call_log.log_values)."""
    apply_totals(session, accumulate(_facts(logs)))


def add_fact_rows_to_rollups(session: Session, rows: Iterable[Sequence[Any]]) -> None:
    """Count just-written Logs rows given as fact_columns() tuples (created, user, provider, model,
    source, API key, status, tokens, prompt, completion, duration, request type) in the rollups, in the same
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


def derive_levels_from_hourly(connection: Connection) -> None:
    """Fill the daily and per-model levels from usagerollups (migration 0005, on existing data).

    Works on the schema of 0005 too, before usagerollups had the request type (migration 0006):
    every row was then a chat call's, and is written without that column."""
    hourly = HOURLY.table
    has_type = "requesttype" in {column["name"] for column in inspect(connection).get_columns(hourly.name)}
    derived: dict[Level, Rolled] = {DAILY: {}, BY_MODEL: {}}
    dims_columns = [hourly.c[column] for dim, column in HOURLY.dim_columns if has_type or dim != "request_type"]
    stmt = select(hourly.c.bucket, *dims_columns, *(hourly.c[c] for c in SUM_COLUMNS), hourly.c.latency)
    width = len(dims_columns)
    for row in connection.execute(stmt).yield_per(10_000):
        dims = Dims(*row[1 : 1 + width])
        totals = Totals(*row[1 + width : 8 + width], latency=decode_histogram(row[8 + width]))
        for level, rolled in derived.items():
            add_to(rolled, level, row[0], dims, totals)
    for level, rolled in derived.items():
        values = [level.row(bucket, dims, totals) for (bucket, _key), (dims, totals) in rolled.items()]
        if not has_type:
            for value in values:
                del value["requesttype"]
        table = level.table if has_type else _without_request_type(level.table)
        for offset in range(0, len(values), 10_000):
            connection.execute(insert(table), values[offset : offset + 10_000])


def _without_request_type(table: Any) -> Any:
    """A rollup table as migration 0005 creates it (no requesttype column), for inserts."""
    columns = [Column(c.name, c.type, primary_key=c.primary_key) for c in table.columns if c.name != "requesttype"]
    return Table(table.name, MetaData(), *columns)
