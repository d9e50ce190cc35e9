"""A user's Calls page in a real browser: a call's "open a support ticket" link opens Support with it chosen."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mindroute.analytics.rollups import rebuild_rollups
from mindroute.db import transaction
from mindroute.models import Ticket, utcnow
from mindroute.services import tickets
from mindroute.services.users import create_user
from tests.browser.test_auth_browser import ADMIN_EMAIL, ADMIN_PASSWORD, USER_EMAIL, USER_PASSWORD, settle, sign_in
from tests.test_analytics import insert_rows, log_row

pytestmark = pytest.mark.browser


def test_a_calls_ticket_link_opens_support_with_that_call(server, browser_context) -> None:
    from playwright.sync_api import expect  # here: without playwright, browser_context skips the test

    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
        user = create_user(session, None, email=USER_EMAIL, name="Plain", password=USER_PASSWORD, role="user")
    now = utcnow()
    failing = log_row(now - timedelta(minutes=3), user, None, "m-big", status=502, error="upstream broke")
    insert_rows(server.engine, [failing, log_row(now - timedelta(minutes=30), user, None, "m-small")])
    rebuild_rollups(server.engine, progress=False)
    with transaction(server.engine) as session:
        label = tickets.my_call(session, user, failing["id"]).label

    page = browser_context.new_page()
    sign_in(page, server.base_url, USER_EMAIL, USER_PASSWORD)
    page.goto(f"{server.base_url}/calls")
    settle(page)
    page.get_by_role("heading", name="Call detail").wait_for()
    page.get_by_text(str(failing["id"]), exact=False).first.wait_for()  # the newest call is shown

    page.get_by_role("link", name="Open a support ticket about this call").click()
    page.get_by_role("heading", name="Support").wait_for()
    settle(page)
    # The call is chosen in the new ticket's form (a select box shows its choice as its input's value).
    expect(page.locator(".st-key-support_call input")).to_have_value(label)
    assert "call=" not in page.url  # used once, then dropped from the address

    page.get_by_role("textbox", name="Subject").fill("This call failed")
    page.get_by_role("textbox", name="Message").fill("It answered 502.")
    page.get_by_role("button", name="Open ticket").click()
    page.get_by_text("Ticket opened.").wait_for()
    settle(page)
    with transaction(server.engine) as session:
        ticket = session.scalar(select(Ticket))
    assert (ticket.subject, ticket.log_id) == ("This call failed", failing["id"])
