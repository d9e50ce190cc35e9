"""Times the Usage page's data on N demo logs and prints one JSON object.

    python -m bench.analytics --rows N [--database-url URL]

Seeds (or reuses) N demo logs over 90 days in the database (MINDROUTE_DATABASE_URL by default),
rebuilds the usage rollups when they do not match the logs, then reports medians over repeated
runs: `page_ms`, all the Usage page's data for the last 30 days (tiles, every chart, breakdowns;
no cache); `filter_change_ms`, the same after changing one filter (a provider); `floor_ms`, one
plain `SELECT count(*), sum(tokensUsed) FROM logs WHERE createdAt >= …` over the same window;
and `peak_rss_mb`, the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from mindroute.analytics.filter import UsageFilter, preset_range
from mindroute.analytics.levels import LEVELS
from mindroute.analytics.rollups import rebuild_rollups
from mindroute.cli.demo_data import DEMO_PROVIDERS
from mindroute.cli.seed import seed_demo
from mindroute.config import get_settings
from mindroute.db import ensure_schema, make_engine
from mindroute.models import Log, Provider
from mindroute.services.usage import usage_page

RUNS = 7
DAYS = 90
TIMEZONE = "Asia/Seoul"


@dataclass(frozen=True)
class BenchViewer:
    id: uuid.UUID
    role: str = "admin"


def _median_ms(run: Callable[[], Any], runs: int) -> float:
    run()  # warm-up: connection, caches of the database itself
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def prepare(engine: Engine, rows: int) -> None:
    """Seed up to `rows` logs and bring the rollups in step with them."""
    ensure_schema(engine)
    with Session(engine) as session:
        existing = session.scalar(select(func.count()).select_from(Log)) or 0
    if existing < rows:
        seed_demo(engine, rows=rows - existing, days=DAYS, seed=1, progress=False)
    with Session(engine) as session:
        logs = session.scalar(select(func.count()).select_from(Log)) or 0
        rolled = [session.scalar(select(func.coalesce(func.sum(level.table.c.requests), 0))) for level in LEVELS]
    if any(count != logs for count in rolled):
        rebuild_rollups(engine, progress=False)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for table in ("logs", *(level.table.name for level in LEVELS)):
                conn.execute(text(f"ANALYZE {table}"))


def run_bench(engine: Engine, rows: int, runs: int = RUNS) -> dict[str, Any]:
    prepare(engine, rows)
    viewer = BenchViewer(uuid.uuid4())
    start, end = preset_range("30d", TIMEZONE)
    window = UsageFilter(start, end, timezone=TIMEZONE)
    with Session(engine) as session:
        provider_id = session.scalar(select(Provider.id).where(Provider.name == DEMO_PROVIDERS[0].name))
        total = session.scalar(select(func.count()).select_from(Log)) or 0
    changed = UsageFilter(start, end, timezone=TIMEZONE, provider_ids=(provider_id,) if provider_id else ())

    def page(flt: UsageFilter) -> Callable[[], Any]:
        def run() -> Any:
            with Session(engine) as session:
                return usage_page(session, viewer, flt)

        return run

    def floor() -> Any:
        with Session(engine) as session:
            return session.execute(select(func.count(), func.sum(Log.tokens_used)).where(Log.created_at >= start)).one()

    return {
        "rows": total,
        "page_ms": _median_ms(page(window), runs),
        "filter_change_ms": _median_ms(page(changed), runs),
        "floor_ms": _median_ms(floor, runs),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__)
    parser.add_argument("--rows", type=int, required=True, help="logs to have in the database (seeded if fewer)")
    parser.add_argument("--database-url", help="default: MINDROUTE_DATABASE_URL")
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args(argv)
    engine = make_engine(args.database_url or get_settings().database_url)
    try:
        result = run_bench(engine, args.rows, args.runs)
    finally:
        engine.dispose()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
