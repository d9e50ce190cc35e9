"""Every page of the app, its section, and which roles may open it: the router's one list."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from mindroute.models import User


@dataclass(frozen=True)
class PageSpec:
    path: str
    title: str
    icon: str
    section: str
    roles: tuple[str, ...]
    default: bool = False


WORKSPACE = "Workspace"
ADMIN = "Administration"
EVERYONE = ("admin", "user")
ADMINS = ("admin",)
TICKET_QUEUE = "Ticket queue"

PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/workspace/overview.py", "Overview", ":material/dashboard:", WORKSPACE, EVERYONE, default=True),
    PageSpec("pages/workspace/playground.py", "Playground", ":material/chat:", WORKSPACE, EVERYONE),
    PageSpec("pages/workspace/usage.py", "Usage", ":material/monitoring:", WORKSPACE, EVERYONE),
    # Administrators read every call on the Logs page; a user reads their own here, through the same view.
    PageSpec("pages/workspace/calls.py", "Calls", ":material/list_alt:", WORKSPACE, ("user",)),
    PageSpec("pages/workspace/api_keys.py", "API keys", ":material/key:", WORKSPACE, EVERYONE),
    PageSpec("pages/workspace/api_guide.py", "API guide", ":material/code:", WORKSPACE, EVERYONE),
    PageSpec("pages/workspace/support.py", "Support", ":material/support:", WORKSPACE, EVERYONE),
    PageSpec("pages/workspace/account.py", "Account", ":material/person:", WORKSPACE, EVERYONE),
    PageSpec("pages/admin/providers.py", "Providers", ":material/hub:", ADMIN, ADMINS),
    PageSpec("pages/admin/users.py", "Users and permissions", ":material/group:", ADMIN, ADMINS),
    PageSpec("pages/admin/limits.py", "Limits and budgets", ":material/speed:", ADMIN, ADMINS),
    PageSpec("pages/admin/tickets.py", TICKET_QUEUE, ":material/support_agent:", ADMIN, ADMINS),
    PageSpec("pages/admin/logs.py", "Logs", ":material/receipt_long:", ADMIN, ADMINS),
    PageSpec("pages/admin/retention.py", "Log retention", ":material/delete_sweep:", ADMIN, ADMINS),
    PageSpec("pages/admin/audit.py", "Audit", ":material/policy:", ADMIN, ADMINS),
)


def pages_for(role: str) -> list[PageSpec]:
    return [p for p in PAGES if role in p.roles]


def page_title(spec: PageSpec, open_tickets: int | None = None) -> str:
    """The title in the navigation: the ticket queue carries the count of open tickets, when there are any."""
    if spec.title == TICKET_QUEUE and open_tickets:
        return f"{spec.title} ({open_tickets:,})"
    return spec.title


def build_navigation(user: User, open_tickets: int | None = None) -> st.navigation:  # type: ignore[valid-type]
    """Only the pages this role may open exist for the session: others fall back to the default.

    `open_tickets` (admins) is shown in the ticket queue's title; the page's identity is its path,
    so a changing title does not change its URL.
    """
    sections: dict[str, list[st.Page]] = {}
    for spec in pages_for(user.role):
        title = page_title(spec, open_tickets)
        page = st.Page(spec.path, title=title, icon=spec.icon, default=spec.default)
        sections.setdefault(spec.section, []).append(page)
    return st.navigation(sections, position="sidebar")
