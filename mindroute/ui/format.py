"""One way to format the numbers the pages show."""

from __future__ import annotations

from datetime import datetime

from mindroute.ui import viewer


def tokens(count: int | None) -> str:
    if count is None:
        return "—"
    if count >= 1_000_000:
        return f"{count / 1_000_000:.2f} M"
    if count >= 10_000:
        return f"{count / 1_000:.1f} k"
    return f"{count:,}"


def timestamp(value: datetime | None) -> str:
    """A stored time in the viewer's zone (see viewer.when); the page names the zone once (viewer.zone_note)."""
    return viewer.when(value)
