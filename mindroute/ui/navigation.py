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

PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/workspace/overview.py", "Overview", ":material/dashboard:", WORKSPACE, EVERYONE, default=True),
    PageSpec("pages/workspace/playground.py", "Playground", ":material/chat:", WORKSPACE, EVERYONE),
    PageSpec("pages/workspace/account.py", "Account", ":material/person:", WORKSPACE, EVERYONE),
    PageSpec("pages/admin/providers.py", "Providers", ":material/hub:", ADMIN, ADMINS),
    PageSpec("pages/admin/users.py", "Users and permissions", ":material/group:", ADMIN, ADMINS),
)


def pages_for(role: str) -> list[PageSpec]:
    return [p for p in PAGES if role in p.roles]


def build_navigation(user: User) -> st.navigation:  # type: ignore[valid-type]
    """Only the pages this role may open exist for the session: others fall back to the default."""
    sections: dict[str, list[st.Page]] = {}
    for spec in pages_for(user.role):
        page = st.Page(spec.path, title=spec.title, icon=spec.icon, default=spec.default)
        sections.setdefault(spec.section, []).append(page)
    return st.navigation(sections, position="sidebar")
