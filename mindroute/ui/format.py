"""One way to format the numbers the pages show, in the reader's language (mindroute.i18n)."""

from __future__ import annotations

from datetime import datetime

from mindroute import i18n
from mindroute.ui import viewer


def tokens(count: int | None) -> str:
    """A token count: written out below 10,000 ("9,876"), short above ("1.2M", "123.5만")."""
    if count is None:
        return "—"
    return i18n.compact(count)


def timestamp(value: datetime | None) -> str:
    """A stored time in the viewer's zone (see viewer.when); the page names the zone once (viewer.zone_note)."""
    return viewer.when(value)
