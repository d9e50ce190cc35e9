"""Browser helpers for the shell's tests: a Chromium context with a colour scheme, users, a tab-session server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mindroute.db import ensure_schema
from mindroute.services.users import create_user
from tests.browser.conftest import Server, running_app
from tests.browser.test_auth_browser import ADMIN_EMAIL, ADMIN_PASSWORD, USER_EMAIL, USER_PASSWORD, settle
from tests.browser.test_auth_browser import fill_sign_in as cookie_sign_in

# The two palettes' backgrounds in .streamlit/config.toml, as the browser computes them.
LIGHT_BACKGROUND, DARK_BACKGROUND = "rgb(255, 255, 255)", "rgb(15, 17, 23)"


def add_people(engine) -> None:
    create_user(engine, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
    create_user(engine, None, email=USER_EMAIL, name="Plain", password=USER_PASSWORD, role="user")


@contextmanager
def chromium(browser_context, color_scheme: str = "light") -> Iterator[object]:
    """Another fresh profile in the browser_context fixture's Chromium, whose prefers-color-scheme is
    `color_scheme` (the fixture's own context cannot take one)."""
    context = browser_context.browser.new_context(color_scheme=color_scheme, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


def background(page) -> str:
    return page.locator("[data-testid='stApp']").evaluate("e => getComputedStyle(e).backgroundColor")


@contextmanager
def tab_session_server(tmp_path) -> Iterator[Server]:
    """`streamlit run Home.py`: no cookie routes, so a sign-in lives in the browser tab (as conftest's
    `server`, which runs app.py)."""
    (tmp_path / "tab").mkdir(exist_ok=True)  # its own database, beside any app.py server of the same test
    with running_app(tmp_path / "tab", entry="Home.py") as running:
        ensure_schema(running.engine)  # Home.py alone has no lifespan that migrates
        yield running


__all__ = [
    "ADMIN_EMAIL",
    "ADMIN_PASSWORD",
    "DARK_BACKGROUND",
    "LIGHT_BACKGROUND",
    "USER_EMAIL",
    "USER_PASSWORD",
    "add_people",
    "background",
    "chromium",
    "cookie_sign_in",
    "settle",
    "tab_session_server",
]
