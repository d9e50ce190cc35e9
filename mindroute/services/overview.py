"""The overview page's figures: a user's (or the organisation's) calls today and over 7 days."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mindroute.models import Log, Provider


@dataclass(frozen=True)
class UsageSummary:
    requests: int
    tokens: int
    errors: int


def viewer_zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def start_of_viewer_day(zone: ZoneInfo, days_back: int = 0, now: datetime | None = None) -> datetime:
    """Midnight in the viewer's zone, `days_back` days ago, as the naive UTC the database stores."""
    local = (now or datetime.now(UTC)).astimezone(zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone) - timedelta(days=days_back)
    # Rebuild from the date so a DST change between then and now does not shift midnight.
    midnight = datetime(midnight.year, midnight.month, midnight.day, tzinfo=zone)
    return midnight.astimezone(UTC).replace(tzinfo=None)


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
