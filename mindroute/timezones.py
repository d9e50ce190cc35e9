"""The viewer's time zone, and the start of their day as the naive UTC the database stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


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


def iso_time(value: datetime, zone: tzinfo = UTC) -> str:
    """A naive-UTC time from the database as ISO-8601 with its offset in `zone`: 2026-12-04T10:31:05+09:00."""
    return value.replace(tzinfo=UTC).astimezone(zone).isoformat(timespec="seconds")
