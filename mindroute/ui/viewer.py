"""The viewer's time zone for the pages: every time a page shows goes through `when`, `iso` or `localize`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import streamlit as st

from mindroute import i18n
from mindroute.i18n import _
from mindroute.timezones import viewer_zone

# The signed-in user's Account choice (users.timezone), set by session.resolve_current_user on every run;
# None when they follow the browser or nobody is signed in.
CHOSEN_ZONE_KEY = "mindroute_viewer_zone"


def remember_choice(name: str | None) -> None:
    """Record the signed-in user's chosen zone for this run (None: follow the browser)."""
    st.session_state[CHOSEN_ZONE_KEY] = name or None


LANGUAGE_KEY = "mindroute_language"


def use_language(choice: str | None) -> str:
    """Translate this browser session into the user's language (users.language), else the browser's
    (st.context.locale), else English; returns it. Called with the zone on every full run, before the page
    draws anything; a fragment's rerun reads the same (i18n's source is this session's state)."""
    language = i18n.resolve(choice, browser_language())
    st.session_state[LANGUAGE_KEY] = language
    return language


def _session_language() -> str | None:
    try:
        return st.session_state.get(LANGUAGE_KEY)
    except Exception:  # noqa: BLE001 - outside a script run (a service called from a test or the CLI)
        return None


i18n.set_source(_session_language)


def browser_language() -> str | None:
    """The browser's language tag ("ko-KR"), None when unknown (AppTest gives None)."""
    tag = st.context.locale
    return tag if isinstance(tag, str) else None


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


def when(value: datetime | None, *, seconds: bool = False, never: str | None = None) -> str:
    """A stored time as the viewer's language writes it, in their zone: "2026. 12. 4. 오전 10:31",
    "Dec 4, 2026, 10:31 AM" (with seconds on request); `never` (default "never", translated) for None."""
    if value is None:
        return _("never") if never is None else never
    return i18n.moment(_aware(value), seconds=seconds)


def ago(value: datetime | None, *, never: str | None = None) -> str:
    """How long ago a stored time was, in the viewer's language: "3분 전", "3 minutes ago"."""
    if value is None:
        return _("never") if never is None else never
    return i18n.relative(value)


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
    st.caption(_("Times are in {zone}.", zone=zone().key))
