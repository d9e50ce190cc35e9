"""One way to format the numbers the pages show."""

from __future__ import annotations

from datetime import datetime


def tokens(count: int | None) -> str:
    if count is None:
        return "—"
    if count >= 1_000_000:
        return f"{count / 1_000_000:.2f} M"
    if count >= 10_000:
        return f"{count / 1_000:.1f} k"
    return f"{count:,}"


def timestamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"
