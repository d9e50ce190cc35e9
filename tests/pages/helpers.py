"""Helpers for AppTest page tests: a real database, users, and signing in through the form."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from mindroute import config, security
from mindroute import db as mr_db
from mindroute.db import transaction
from mindroute.models import User

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
# One bcrypt hash for every test user: hashing at cost 12 per user would dominate test time.
_PASSWORD_HASH = security.hash_password(PASSWORD)


def app_for(engine: Engine, monkeypatch: pytest.MonkeyPatch, page: str = "Home.py") -> AppTest:
    """Home.py (or a page) against this test's database, with no state left from other tests."""
    monkeypatch.setenv("MINDROUTE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    config.get_settings.cache_clear()
    monkeypatch.setattr(mr_db, "_engine", None)
    st.cache_resource.clear()
    st.cache_data.clear()
    return AppTest.from_file(str(ROOT / page), default_timeout=30)


def add_user(engine: Engine, email: str, role: str = "user", name: str | None = None, active: bool = True) -> User:
    with transaction(engine) as session:
        user = User(email=email, name=name or email.split("@")[0], role=role, password=_PASSWORD_HASH, is_active=active)
        session.add(user)
    return user


def sign_in(at: AppTest, email: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="signin_email").input(email)
    at.text_input(key="signin_password").input(password)
    at.button[0].click()  # the form's submit button
    return at.run()


def texts(at: AppTest) -> str:
    """Everything readable on the page, for assertions about messages."""
    parts = [e.value for e in at.error] + [e.value for e in at.warning] + [e.value for e in at.info]
    parts += [e.value for e in at.success] + [e.value for e in at.title] + [e.value for e in at.markdown]
    parts += [str(e.value) for e in at.text]
    # Messages are Markdown with user text escaped: compare with what the reader sees.
    return re.sub(r"\\(.)", r"\1", "\n".join(str(p) for p in parts))


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def error_under(at: AppTest, key: str) -> str | None:
    """The error shown right under the widget with this key (where a page puts that field's message), as read."""
    nodes = list(_walk(at.main))
    for i, node in enumerate(nodes):
        if getattr(node, "key", None) == key:
            following = nodes[i + 1] if i + 1 < len(nodes) else None
            if getattr(following, "type", None) != "error":
                return None
            return re.sub(r"\\(.)", r"\1", following.value)  # messages are Markdown with user text escaped
    raise AssertionError(f"no widget with key {key!r}")


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click()
    return at.run()


def markdown_texts(at: AppTest) -> list[str]:
    """Every element whose text Streamlit renders as Markdown: untrusted text must never be among them raw."""
    kinds = (at.markdown, at.caption, at.title, at.header, at.subheader, at.success, at.info, at.warning, at.error)
    return [str(e.value) for kind in kinds for e in kind]
