"""The overview page's figures: a user's (or the organisation's) calls today and over 7 days, and the budgets."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mindroute.analytics.facts import facts_of
from mindroute.analytics.filter import UsageFilter, Viewer
from mindroute.analytics.plan import make_plan
from mindroute.analytics.reads import run_reads
from mindroute.analytics.shapes import requests_over_time
from mindroute.models import Log, Provider, User, utcnow
from mindroute.services.budget_alerts import AlertRow, list_alerts
from mindroute.services.budget_spend import BudgetStatus, budget_statuses, provider_statuses
from mindroute.services.tickets import open_count
from mindroute.services.unit_of_work import unit_of_work
from mindroute.timezones import start_of_viewer_day, viewer_zone


@dataclass(frozen=True)
class UsageSummary:
    requests: int
    tokens: int
    errors: int


def usage_since(session: Session, since: datetime, user_id: uuid.UUID | None) -> UsageSummary:
    """Calls since `since`; one user's when user_id is given, everyone's otherwise."""
    stmt = select(
        func.count(),
        func.coalesce(func.sum(Log.tokens_used), 0),
        func.count().filter(Log.status_code >= 400),
    ).where(Log.created_at >= since)
    if user_id is not None:
        stmt = stmt.where(Log.user_id == user_id)
    requests, tokens, errors = session.execute(stmt).one()
    return UsageSummary(requests=requests, tokens=int(tokens), errors=errors)


@dataclass(frozen=True)
class ProviderErrors:
    name: str
    errors: int
    requests: int


def providers_with_recent_errors(session: Session, since: datetime) -> list[ProviderErrors]:
    """Providers whose calls failed since `since` (admins' overview), most errors first."""
    errors = func.count().filter(Log.status_code >= 400)
    rows = session.execute(
        select(Provider.name, errors, func.count())
        .join(Log, Log.provider_id == Provider.id)
        .where(Log.created_at >= since)
        .group_by(Provider.name)
        .having(errors > 0)
        .order_by(errors.desc(), Provider.name)
    ).all()
    return [ProviderErrors(name=name, errors=err, requests=total) for name, err, total in rows]


@dataclass(frozen=True)
class OrganisationFigures:
    """What administrators see besides their own usage."""

    today: UsageSummary
    week: UsageSummary
    open_tickets: int
    failing: list[ProviderErrors]  # providers with errors in the last hour
    calls_last_hour: int


@dataclass(frozen=True)
class OverviewFigures:
    mine_today: UsageSummary
    mine_week: UsageSummary
    organisation: OrganisationFigures | None  # None for a user who is not an administrator


@unit_of_work
def overview_figures(session: Session, viewer: User, today: datetime, week: datetime) -> OverviewFigures:
    """The overview page's figures, read in one transaction: the viewer's usage since `today` and since
    `week`; for administrators the organisation's too, open tickets and the last hour's failing providers."""
    organisation = None
    if viewer.role == "admin":
        hour_ago = utcnow() - timedelta(hours=1)
        organisation = OrganisationFigures(
            today=usage_since(session, today, None),
            week=usage_since(session, week, None),
            open_tickets=open_count(session),
            failing=providers_with_recent_errors(session, hour_ago),
            calls_last_hour=usage_since(session, hour_ago, None).requests,
        )
    return OverviewFigures(
        mine_today=usage_since(session, today, viewer.id),
        mine_week=usage_since(session, week, viewer.id),
        organisation=organisation,
    )


ALERTS_SHOWN = 50  # the overview lists at most this many of the current periods' alerts, newest first


@dataclass(frozen=True)
class BudgetFigures:
    """The budgets a viewer sees this period: their own (their rule or the default, and their keys');
    for administrators also each provider's (the organisation's spend on it) and the alerts of the current
    periods (budgets past their warning threshold or spent)."""

    mine: list[BudgetStatus]
    providers: list[BudgetStatus] | None  # None for a user who is not an administrator
    alerts: list[AlertRow] | None  # newest first; None for a user who is not an administrator


@unit_of_work
def budget_figures(session: Session, viewer: User, now: datetime | None = None) -> BudgetFigures:
    """The viewer's budgets (and, for administrators, the providers' and the current alerts), in one transaction."""
    admin = viewer.role == "admin"
    return BudgetFigures(
        mine=budget_statuses(session, viewer, viewer.id, now),
        providers=provider_statuses(session, viewer, now) if admin else None,
        alerts=list_alerts(session, viewer, limit=ALERTS_SHOWN) if admin else None,
    )


CHART_DAYS = 7


@unit_of_work
def last_days(session: Session, viewer: Viewer, timezone: str, days: int = CHART_DAYS) -> pd.DataFrame:
    """The last `days` days of the viewer's zone (today included), one row each: start (local midnight),
    requests, errors, tokens; everyone's calls for an administrator, their own for a user. Read as the
    Usage page reads its charts, so both show the same numbers."""
    start, end = start_of_viewer_day(viewer_zone(timezone), days - 1), utcnow()
    plan = make_plan(viewer, UsageFilter(start, end, timezone=timezone), "day", True)
    (parts,) = run_reads(session, [plan.reads])
    facts = facts_of(session, plan, parts)
    out = requests_over_time(facts)
    tokens = np.zeros(len(out), dtype="int64")
    np.add.at(tokens, facts.series["bucket"].to_numpy(), facts.series["tokens"].to_numpy())
    return out.assign(tokens=tokens)
