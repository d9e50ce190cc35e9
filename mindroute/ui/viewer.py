"""The viewer's time zone for the pages: every time a page shows goes through `when`, `iso` or `localize`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import streamlit as st

from mindroute.timezones import viewer_zone

# The signed-in user's Account choice (users.timezone), set by session.resolve_current_user on every run;
# None when they follow the browser or nobody is signed in.
CHOSEN_ZONE_KEY = "mindroute_viewer_zone"


def remember_choice(name: str | None) -> None:
    """Record the signed-in user's chosen zone for this run (None: follow the browser)."""
    st.session_state[CHOSEN_ZONE_KEY] = name or None


def browser_zone() -> ZoneInfo:
    """The browser's zone (st.context.timezone), UTC when it is unknown or not a zone (AppTest gives None)."""
    name = st.context.timezone
    return viewer_zone(name if isinstance(name, str) else None)


def zone() -> ZoneInfo:
    """The zone every time is shown in: the user's choice, else the browser's, else UTC."""
    chosen = st.session_state.get(CHOSEN_ZONE_KEY)
    if chosen:
        return viewer_zone(chosen)
    return browser_zone()


def _aware(value: datetime) -> datetime:
    # The database stores naive UTC; an aware value is trusted as it is.
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return moment.astimezone(zone())


def when(value: datetime | None, *, seconds: bool = False, never: str = "never") -> str:
    """A stored time as the viewer reads it: "2026-12-04 10:31" (":05" with seconds); `never` for None."""
    if value is None:
        return never
    return _aware(value).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def iso(value: datetime | None) -> str:
    """ISO-8601 with the offset of the viewer's zone, for CSV exports; "" for None."""
    if value is None:
        return ""
    return _aware(value).replace(microsecond=0).isoformat()


def localize(values: Iterable[datetime | None]) -> list[datetime | None]:
    """Zone-aware datetimes in the viewer's zone, for st.dataframe columns (which show them as given)."""
    return [None if v is None else _aware(v) for v in values]


def zone_note() -> None:
    """The caption naming the zone the page's times are in: a page calls it once, above its first time."""
    st.caption(f"Times are in {zone().key}.")
