"""The filtered calls of a range as frames and histograms (`Facts`), from the rows the plan's reads return.

A range is read as facts: totals per fine dimensions from the daily rollups of the whole UTC days
inside it and the hourly rollups of the hours around them; the charts per display bucket and
(provider, model) from the per-model rollups (hourly ones when the filter names a dimension those
lack); and raw Logs rows for the rest. Counts, token sums and costs are exact; percentiles come from
log-spaced latency histograms and are within 1% (labelled approximate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy.orm import Session

from mindroute.analytics.filter import UsageFilter, Viewer
from mindroute.analytics.frames import SUM_COLUMNS, records_frame
from mindroute.analytics.histograms import Histograms
from mindroute.analytics.plan import Plan, make_plan
from mindroute.analytics.pricing import add_cost
from mindroute.analytics.reads import Parts, work_mem

LATENCY_KEYS = ["bucket", "provider_id", "model"]  # the groups of `Facts.latency`
USER_LATENCY_KEYS = ["user_id", "request_type"]  # the groups of `Facts.user_latency`
WINDOW_COLUMNS = ["user_id", "provider_id", "model", "source", "api_key_id", "status", "request_type", *SUM_COLUMNS]
SERIES_COLUMNS = ["bucket", "provider_id", "model", *SUM_COLUMNS]


@dataclass
class Facts:
    """The filtered calls of a range (user and provider ids are text).

    `frame`: sums over the whole range per (user, provider, model, source, API key, status, request
    type), with their cost; `series`: sums per (display bucket, provider, model), column `bucket` being
    the bucket's number; `latency`: histograms per (bucket, provider, model); `user_latency`: per
    (user, request type), for the per-user and per-request-type breakdowns.
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


def facts_of(session: Session, plan: Plan, parts: Sequence[Parts]) -> Facts:
    """The facts of a plan from the rows its reads returned, with their cost."""
    merged = Parts()
    for part in parts:
        for name in ("window", "window_blobs", "series", "latency", "latency_blobs"):
            getattr(merged, name).extend(getattr(part, name))
    frame = records_frame(merged.window, WINDOW_COLUMNS)
    add_cost(session, frame)
    users = [(row[0], row[6]) for row in merged.window] if plan.detail else []
    return Facts(
        frame,
        records_frame(merged.series, SERIES_COLUMNS),
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
    plan = make_plan(viewer, flt, granularity, detail)
    work_mem(session)
    parts = []
    for read in plan.reads:
        parts.append(Parts())
        read(session, parts[-1])
    return facts_of(session, plan, parts)
