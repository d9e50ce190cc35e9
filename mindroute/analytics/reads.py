"""The SQL the Usage page runs, with every dialect trick in one place, and its reads side by side.

A range's whole hours come from rollup rows (read_window, read_series), the rest from raw Logs rows
(read_raw). On PostgreSQL the reads run side by side on connections sharing one snapshot, in binary
format; on SQLite the raw read keeps the planner on the createdAt index.
"""

from __future__ import annotations

import queue
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import BigInteger, Column, Engine, and_, case, cast, func, literal, literal_column, or_, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql import visitors

from mindroute.analytics.filter import UsageFilter, log_conditions, needs_all_dims, rollup_conditions
from mindroute.analytics.histograms import encode_histogram, latency_bucket
from mindroute.analytics.levels import (
    BY_MODEL,
    ERROR_STATUS_MIN,
    HOURLY,
    SOURCE_API,
    SOURCE_PLAYGROUND,
    Level,
    fact_columns,
    request_type_of,
)
from mindroute.models import Log

AGGREGATE_WORK_MEM = "64MB"
PARALLEL_READS = 3  # connections the Usage page reads on at once (PostgreSQL)


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
class Parts:
    """Rows read for Facts, before they become frames."""

    window: list[tuple[Any, ...]] = field(default_factory=list)
    window_blobs: list[bytes] = field(default_factory=list)
    series: list[tuple[Any, ...]] = field(default_factory=list)
    latency: list[tuple[Any, ...]] = field(default_factory=list)
    latency_blobs: list[bytes] = field(default_factory=list)


Read = Callable[[Session, Parts], None]


def read_window(
    session: Session, flt: UsageFilter, piece: tuple[Level, datetime, datetime], *, detail: bool, parts: Parts
) -> None:
    """Sums and histograms of one piece of the range's whole hours, per fine dimensions (per
    provider and model without detail)."""
    dialect = session.get_bind().dialect.name
    level, low, high = piece
    t = level.table
    conds = [t.c.bucket >= low, t.c.bucket < high, *rollup_conditions(flt, t)]
    if detail:
        dims = [t.c.userid, t.c.providerid, t.c.modelid, t.c.source, t.c.apikeyid, t.c.statuscode, t.c.requesttype]
    else:
        dims = [t.c.providerid, t.c.modelid]
    stmt = select(*dims, *_sums(t), _histogram_concat(dialect, t)).where(*conds).group_by(*dims)
    for row in _rows(session, stmt):
        if detail:
            parts.window.append((_text(row[0]), _text(row[1]), *row[2:14]))
            parts.window_blobs.append(_blob(row[14]))
        else:
            provider = _text(row[0])
            parts.window.append((None, provider, row[1], None, None, None, None, *row[2:9]))
            parts.latency.append((0, provider, row[1]))
            parts.latency_blobs.append(_blob(row[9]))


def read_series(
    session: Session,
    flt: UsageFilter,
    facts_range: tuple[datetime, datetime, set],
    edges: list[datetime],
    *,
    parts: Parts,
) -> None:
    """Sums and histograms per (display bucket, provider, model) of the whole hours no bucket edge
    cuts, from the per-model rollups unless the filter needs every dimension."""
    first_hour, last_hour, cut = facts_range
    dialect = session.get_bind().dialect.name
    t = (HOURLY if needs_all_dims(flt) else BY_MODEL).table
    conds = [t.c.bucket >= first_hour, t.c.bucket < last_hour, *rollup_conditions(flt, t)]
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


def read_raw(
    session: Session,
    flt: UsageFilter,
    edges: list[datetime],
    intervals: list[tuple[datetime, datetime]],
    whole_hours: tuple[datetime, datetime],
    *,
    detail: bool,
    parts: Parts,
) -> None:
    """Raw Logs rows of `intervals`: each counts in the series (with detail), and in the window if
    it is outside the whole hours the rollups gave."""
    stmt = select(*fact_columns()).where(
        or_(*(and_(Log.created_at >= low, Log.created_at < high) for low, high in intervals)),
        *[_not_indexed(cond) if session.get_bind().dialect.name == "sqlite" else cond for cond in log_conditions(flt)],
    )
    first_hour, last_hour = whole_hours
    edge_array = np.array(edges, dtype="datetime64[us]")
    for ts, user_id, provider_id, model, src, key, status, tokens, prompt, completion, ms, kind in _rows(session, stmt):
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
            key = str(key)[:64] if key else None
            parts.window.append((user, provider, model, source, key, status, request_type_of(kind), *sums))
            parts.window_blobs.append(blob)
        else:
            parts.window.append((None, provider, model, None, None, None, None, *sums))


def _not_indexed(condition: Any) -> Any:
    """SQLite: the condition with `+logs.col` for the indexed user/provider/model columns, so that
    the planner reads the few hours' rows by createdAt rather than all of a provider's by its index."""

    def replace(element: Any) -> Any:
        if isinstance(element, Column) and element.table is Log.__table__ and element.name in NO_INDEX_COLUMNS:
            return literal_column(f"+logs.{element.name}", type_=element.type)
        return None

    return visitors.replacement_traverse(condition, {}, replace)


NO_INDEX_COLUMNS = ("userid", "providerid", "modelid")


def work_mem(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Enough memory for the aggregates to hash in memory rather than sort on disk (this transaction only).
        session.execute(text(f"SET LOCAL work_mem = '{AGGREGATE_WORK_MEM}'"))


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
            work_mem(session)
        yield sessions


def run_reads(session: Session, plans: Sequence[Sequence[Read]]) -> list[list[Parts]]:
    """Every read of the plans (each a list of reads), side by side on PostgreSQL (a connection each,
    one snapshot), else in turn."""
    jobs = [(number, read) for number, reads in enumerate(plans) for read in reads]
    out: list[list[Parts]] = [[] for _ in plans]
    bind = session.get_bind()
    if not isinstance(bind, Engine) or bind.dialect.name != "postgresql" or len(jobs) < 2:
        work_mem(session)
        for number, read in jobs:
            out[number].append(Parts())
            read(session, out[number][-1])
        return out
    with _snapshot_sessions(bind, min(len(jobs), PARALLEL_READS)) as sessions:
        idle: queue.SimpleQueue[Session] = queue.SimpleQueue()
        for reader in sessions:
            idle.put(reader)

        def run(read: Read) -> Parts:
            reader = idle.get()
            try:
                parts = Parts()
                read(reader, parts)
                return parts
            finally:
                idle.put(reader)

        with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
            futures = [(number, pool.submit(run, read)) for number, read in jobs]
            for number, future in futures:
                out[number].append(future.result())
    return out
