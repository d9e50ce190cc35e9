"""Copying every row from one MindRoute database to another (e.g. SQLite to PostgreSQL)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from tqdm import tqdm

from mindroute.analytics.in_step import sync_rollups
from mindroute.db import ensure_schema
from mindroute.models import Base

COPY_BATCH_ROWS = 5_000


class TransferError(Exception):
    """The copy cannot start; nothing was written."""


@dataclass
class CopyResult:
    """What a copy wrote: rows per table as read from the source, and the UTC days whose usage
    rollups did not match the logs and were rebuilt in the target."""

    rows: dict[str, int]
    rebuilt_days: list[datetime] = field(default_factory=list)


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables}


def copy_database(source: Engine, target: Engine, *, progress: bool = True) -> CopyResult:
    """Copy every table, parents before children, in one target transaction, which then rebuilds
    the usage rollups of the UTC days where they differ from the logs (a source written to by hand,
    or by a load cut short, may hold stale ones)."""
    ensure_schema(source)
    ensure_schema(target)
    if any(row_counts(target).values()):
        raise TransferError("the target database is not empty; copy into a new, empty database")
    counts = row_counts(source)
    bar = tqdm(total=sum(counts.values()), unit="row", disable=not progress, file=sys.stderr)
    with source.connect() as src, target.begin() as dst:
        for table in Base.metadata.sorted_tables:
            # Stream the source so a large logs table is never held in memory whole.
            result = src.execution_options(stream_results=True, yield_per=COPY_BATCH_ROWS).execute(select(table))
            for batch in result.mappings().partitions(COPY_BATCH_ROWS):
                dst.execute(table.insert(), [dict(row) for row in batch])
                bar.update(len(batch))
        bar.close()
        # The session joins dst's transaction: committed with the rows, or rolled back with them.
        with Session(bind=dst) as session:
            rebuilt = sync_rollups(session, progress=None if progress else False)
    return CopyResult(counts, rebuilt)
