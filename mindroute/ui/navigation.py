"""Every page of the app, its section, and which roles may open it: the router's one list."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import streamlit as st

from mindroute import i18n
from mindroute.i18n import _, _l
from mindroute.models import User


@dataclass(frozen=True)
class PageSpec:
    path: str
    title: str  # a Message: English as a str (tests, logs), translated where drawn (i18n.text)
    icon: str
    section: str  # a Message too
    roles: tuple[str, ...]
    default: bool = False

    @property
    def url_path(self) -> str:
        """The page's URL, /<this>: Streamlit's, from the file name (the default page is at / as well)."""
        return self.path.rsplit("/", 1)[-1].removesuffix(".py")


WORKSPACE = _l("Workspace")
ADMIN = _l("Administration")
EVERYONE = ("admin", "user")
ADMINS = ("admin",)
TICKET_QUEUE = _l("Ticket queue")

PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/workspace/overview.py", _l("Overview"), ":material/dashboard:", WORKSPACE, EVERYONE, default=True),
    PageSpec("pages/workspace/playground.py", _l("Playground"), ":material/chat:", WORKSPACE, EVERYONE),
    PageSpec("pages/workspace/usage.py", _l("Usage"), ":material/monitoring:", WORKSPACE, EVERYONE),
    # Administrators read every call on the Logs page; a user reads their own here, through the same view.
    PageSpec("pages/workspace/calls.py", _l("Calls"), ":material/list_alt:", WORKSPACE, ("user",)),
    PageSpec("pages/workspace/api_keys.py", _l("API keys"), ":material/key:", WORKSPACE, EVERYONE),
    PageSpec("pages/workspace/api_guide.py", _l("API guide"), ":material/code:", WORKSPACE, EVERYONE),
    PageSpec("pages/workspace/support.py", _l("Support"), ":material/support:", WORKSPACE, EVERYONE),
    PageSpec("pages/workspace/account.py", _l("Account"), ":material/person:", WORKSPACE, EVERYONE),
    PageSpec("pages/admin/providers.py", _l("Providers"), ":material/hub:", ADMIN, ADMINS),
    PageSpec("pages/admin/users.py", _l("Users and permissions"), ":material/group:", ADMIN, ADMINS),
    PageSpec("pages/admin/limits.py", _l("Limits and budgets"), ":material/speed:", ADMIN, ADMINS),
    PageSpec("pages/admin/tickets.py", TICKET_QUEUE, ":material/support_agent:", ADMIN, ADMINS),
    PageSpec("pages/admin/logs.py", _l("Logs"), ":material/receipt_long:", ADMIN, ADMINS),
    PageSpec("pages/admin/retention.py", _l("Log retention"), ":material/delete_sweep:", ADMIN, ADMINS),
    PageSpec("pages/admin/audit.py", _l("Audit"), ":material/policy:", ADMIN, ADMINS),
)


def pages_for(role: str) -> list[PageSpec]:
    return [p for p in PAGES if role in p.roles]


def spec_for_url_path(url_path: str) -> PageSpec | None:
    return next((p for p in PAGES if p.url_path == url_path), None)


def requested_url_path() -> str | None:
    """The page the browser asked for (/usage -> "usage"), from st.context.url; None at / or in AppTest."""
    url = st.context.url
    if not isinstance(url, str):
        return None
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or None


def signed_out_navigation(view: Callable[[], None]) -> st.navigation:  # type: ignore[valid-type]
    """Signed out: every page's URL runs the sign-in `view` (never the page), so /usage?range=30d shows the
    sign-in form at that URL, and signing in there lands on Usage with its query."""
    title = _("Sign in")
    pages = [st.Page(view, title=title, url_path="signin", default=True)]
    for spec in PAGES:
        pages.append(st.Page(view, title=title, url_path=spec.url_path))  # a page's identity is its URL
    return st.navigation(pages, position="hidden")


def _for_administrators() -> None:
    st.error(_("This page is for administrators."))


def _open(page: st.Page) -> None:  # type: ignore[valid-type]
    # The app's root opens the default page at its own URL (/overview), keeping the query.
    st.switch_page(page, query_params=st.query_params.to_dict())


def page_title(spec: PageSpec, open_tickets: int | None = None) -> str:
    """The title in the navigation, in the reader's language: the ticket queue carries the count of open
    tickets, when there are any."""
    if spec.title == TICKET_QUEUE and open_tickets:
        return _("Ticket queue ({n})", n=open_tickets)
    return i18n.text(spec.title)


def build_navigation(user: User, open_tickets: int | None = None, requested: str | None = None) -> st.navigation:  # type: ignore[valid-type]
    """Only the pages this role may open exist for the session: others fall back to the default.

    `open_tickets` (admins) is shown in the ticket queue's title; the page's identity is its path,
    so a changing title does not change its URL. `requested` is the URL path the browser asked for
    (requested_url_path): when it is a page this role may not open, its URL runs a notice that says so
    instead of the page (and instead of "Page not found").
    """
    sections: dict[str, list[st.Page]] = {}
    home: st.Page | None = None  # type: ignore[valid-type]
    for spec in pages_for(user.role):
        title = page_title(spec, open_tickets)
        page = st.Page(spec.path, title=title, icon=spec.icon)
        home = page if spec.default or home is None else home
        sections.setdefault(i18n.text(spec.section), []).append(page)
    # Streamlit serves its default page at / only (/overview would be "Page not found"): the default is a
    # hidden page at / that opens Overview at its own URL, so /overview works and the menu shows where one is.
    root = st.Page(functools.partial(_open, home), title=home.title, url_path="home", default=True, visibility="hidden")
    sections[next(iter(sections))].insert(0, root)
    refused = spec_for_url_path(requested) if requested else None
    if refused is not None and user.role not in refused.roles:
        notice = st.Page(
            _for_administrators,
            title=i18n.text(refused.title),
            icon=refused.icon,
            url_path=refused.url_path,
            visibility="hidden",
        )
        sections.setdefault(i18n.text(refused.section), []).append(notice)
    # Every page listed: a collapsed menu ends in Streamlit's own "View N more", which no catalog translates.
    return st.navigation(sections, position="sidebar", expanded=True)
