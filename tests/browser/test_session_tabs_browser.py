"""Rotating the session in one tab does not sign out the browser's other tabs (`streamlit run app.py`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from mindroute import security
from mindroute.db import transaction
from mindroute.models import RefreshToken, utcnow
from mindroute.services import auth
from mindroute.services.users import create_user
from tests.browser.test_auth_browser import ADMIN_EMAIL, ADMIN_PASSWORD, session_cookie, settle, sign_in

pytestmark = pytest.mark.browser


def open_page(page, title: str) -> None:
    """Switch pages through the sidebar: a rerun over the tab's websocket, no HTTP request."""
    page.locator("[data-testid='stSidebarNavLink']", has_text=title).click()
    page.get_by_role("heading", name=title).wait_for()
    settle(page)


def test_a_rotation_in_one_tab_leaves_the_other_tabs_signed_in(server, browser_context) -> None:
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
    tab_a = browser_context.new_page()
    sign_in(tab_a, server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    tab_a.get_by_role("heading", name="Overview").wait_for()
    tab_b = browser_context.new_page()
    tab_b.goto(server.base_url)
    tab_b.get_by_role("heading", name="Overview").wait_for()
    settle(tab_b)
    old = session_cookie(browser_context)["value"]

    with transaction(server.engine) as session:  # the session was signed in, and its token issued, 2 days ago
        two_days = utcnow() - timedelta(days=2)
        session.execute(update(RefreshToken).values(created_at=two_days, updated_at=two_days))
    open_page(tab_b, "Account")  # tab B runs a page (it learns its session's first sign-in time)
    tab_a.reload()  # a page load rotates the day-old token: the browser gets the new cookie
    settle(tab_a)
    tab_a.get_by_role("heading", name="Overview").wait_for()
    new = session_cookie(browser_context)["value"]
    assert new != old
    with transaction(server.engine) as session:  # a minute later the old token's grace is over
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.token == security.digest(old))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        assert auth.resolve_session(session, old) is None

    open_page(tab_b, "Overview")  # tab B's connection still carries the old cookie
    assert tab_b.get_by_text("Please sign in to continue.").count() == 0
    open_page(tab_b, "Account")

    # Signing out (in tab A, with the new cookie) ends the session for tab B too.
    tab_a.locator("form[data-testid='mr-signout-form'] button").click()
    tab_a.locator("form[data-testid='mr-signin-form']").wait_for()
    with transaction(server.engine) as session:
        assert session.scalar(select(RefreshToken.is_revoked).where(RefreshToken.token == security.digest(new)))
    tab_b.locator("[data-testid='stSidebarNavLink']", has_text="Overview").click()
    tab_b.locator("form[data-testid='mr-signin-form']").wait_for()
