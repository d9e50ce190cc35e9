"""What the Usage page asks for, as the viewer may see it: its data, whether there are calls, the
filter's choices and whether the rollups it reads are in step with Logs.

A non-admin viewer is always restricted to their own calls here, whatever the filter says (the
numbers themselves come from mindroute.analytics).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mindroute.analytics.facts import facts_of
from mindroute.analytics.filter import UsageFilter, Viewer, pick_granularity, scoped, whole_hours
from mindroute.analytics.labels import UNKNOWN, add_labels
from mindroute.analytics.levels import BY_MODEL, HOURLY, REQUEST_TYPES, Level
from mindroute.analytics.plan import make_plan, window_pieces
from mindroute.analytics.pricing import unpriced_models
from mindroute.analytics.reads import run_reads
from mindroute.analytics.shapes import (
    UsagePage,
    breakdown,
    latency_by_model,
    latency_over_time,
    requests_over_time,
    status_codes,
    tiles_from,
    tokens_over_time,
    top_tables,
)
from mindroute.models import Log, Provider, UsageDailyRollup, UsageModelRollup, User
from mindroute.services.unit_of_work import unit_of_work

__all__ = [
    "RollupCheck",
    "UsagePage",
    "filter_choices",
    "filter_options",
    "has_calls",
    "rollup_check",
    "usage_page",
    "whole_hours",
]


@unit_of_work
def usage_page(session: Session, viewer: Viewer, flt: UsageFilter, granularity: str | None = None) -> UsagePage:
    """All the Usage page's data for `flt`, as `viewer` may see it: this period's and the last's
    reads, side by side on PostgreSQL."""
    flt = scoped(flt, viewer)
    granularity = granularity or pick_granularity(flt.start, flt.end)
    plans = [make_plan(viewer, flt, granularity, True), make_plan(viewer, flt.previous(), granularity, False)]
    now_parts, before_parts = run_reads(session, [plan.reads for plan in plans])
    current = facts_of(session, plans[0], now_parts)
    previous = facts_of(session, plans[1], before_parts)
    add_labels(session, current)
    by_model, histogram = latency_by_model(current)
    tops = top_tables(current, (["user"] if viewer.role == "admin" else []) + ["model", "provider", "api_key"])
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
        breakdown_request_type=breakdown(current, "request_type"),
        unpriced_models=unpriced_models(current.frame),
    )


@unit_of_work
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


@unit_of_work
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


@unit_of_work
def filter_options(session: Session, viewer: Viewer) -> dict[str, list[Any]]:
    """Choices for the filter widgets: providers (id, name), models, request types (the known ones and
    any other seen), users (admins; id, label)."""
    if viewer.role == "admin":
        by_model = UsageModelRollup
        stmt = select(by_model.provider_id, by_model.model_id, by_model.request_type).distinct()
    else:
        daily = UsageDailyRollup
        stmt = select(daily.provider_id, daily.model_id, daily.request_type).where(daily.user_id == viewer.id)
        stmt = stmt.distinct()
    seen = session.execute(stmt).all()
    providers = dict(session.execute(select(Provider.id, Provider.name)).all())
    options: dict[str, list[Any]] = {
        "providers": sorted({(p, providers.get(p, UNKNOWN)) for p, _, _ in seen if p}, key=lambda x: x[1]),
        "models": sorted({m for _, m, _ in seen if m}),
        "request_types": [*REQUEST_TYPES, *sorted({t for _, _, t in seen if t and t not in REQUEST_TYPES})],
        "users": [],
    }
    if viewer.role == "admin":
        options["users"] = [
            (uid, f"{name} <{email}>")
            for uid, name, email in session.execute(select(User.id, User.name, User.email).order_by(User.email))
        ]
    return options


@unit_of_work
def filter_choices(session: Session, viewer: Viewer) -> dict[str, list[Any]] | None:
    """The filter widgets' choices (filter_options), or None when the viewer can see no call at all
    (the page's empty state): one transaction for both."""
    return filter_options(session, viewer) if has_calls(session, viewer) else None
