"""Logs and Calls in a real browser: clicking a row opens its detail with ?call= in the address (and a reload
keeps it); a call's "open a support ticket" link opens Support with it chosen."""

from __future__ import annotations

from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from mindroute import i18n
from mindroute.analytics.rollups import rebuild_rollups
from mindroute.db import transaction
from mindroute.models import Ticket, utcnow
from mindroute.services.users import create_user
from tests.browser.test_auth_browser import ADMIN_EMAIL, ADMIN_PASSWORD, USER_EMAIL, USER_PASSWORD, settle, sign_in
from tests.test_analytics import insert_rows, log_row

pytestmark = pytest.mark.browser

ROW_PX = 35  # the data grid's header and row height


def click_table_row(page, index: int) -> None:
    """Click the row's selection marker, at the grid's left edge (the grid is a canvas: no row elements)."""
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.wait_for()
    box = grid.bounding_box()
    page.mouse.move(box["x"] + 15, box["y"] + ROW_PX * (index + 1) + ROW_PX / 2)
    page.mouse.click(box["x"] + 15, box["y"] + ROW_PX * (index + 1) + ROW_PX / 2)


def two_calls(server) -> tuple[dict, dict]:
    """An admin and a user; the user's two calls, the newest failing."""
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
        user = create_user(session, None, email=USER_EMAIL, name="Plain", password=USER_PASSWORD, role="user")
    now = utcnow()
    newest = log_row(now - timedelta(minutes=3), user, None, "m-big", status=502, error="upstream broke")
    second = log_row(now - timedelta(minutes=30), user, None, "m-small")
    insert_rows(server.engine, [newest, second])
    rebuild_rollups(server.engine, progress=False)
    return newest, second


def signed_in_at(server, browser_context, email: str, password: str, path: str):
    page = browser_context.new_page()
    sign_in(page, server.base_url, email, password)
    page.goto(f"{server.base_url}{path}")
    settle(page)
    return page


def test_clicking_a_row_in_logs_opens_its_detail_and_the_url_carries_it(server, browser_context) -> None:
    newest, second = two_calls(server)

    page = signed_in_at(server, browser_context, ADMIN_EMAIL, ADMIN_PASSWORD, "/logs")
    page.get_by_text("2 calls match").wait_for()
    page.get_by_text("Click a row to see the call's detail.").wait_for()
    assert "call=" not in page.url

    click_table_row(page, 1)
    page.get_by_text(f"Call {second['id']}", exact=False).first.wait_for()
    settle(page)
    page.wait_for_url(f"**call={second['id']}**")
    assert not any("upstream broke" in t for t in page.locator("[data-testid='stCode']").all_inner_texts())

    page.reload()  # the address keeps the call open
    settle(page)
    page.get_by_text(f"Call {second['id']}", exact=False).first.wait_for()

    click_table_row(page, 0)
    page.get_by_text(f"Call {newest['id']}", exact=False).first.wait_for()
    page.wait_for_url(f"**call={newest['id']}**")
    page.locator("[data-testid='stCode']").filter(has_text="upstream broke").first.wait_for()  # its error


def test_a_calls_ticket_link_opens_support_with_that_call(server, browser_context) -> None:
    from playwright.sync_api import expect  # here: without playwright, browser_context skips the test

    failing, _ = two_calls(server)

    page = signed_in_at(server, browser_context, USER_EMAIL, USER_PASSWORD, f"/calls?call={failing['id']}")
    page.get_by_role("heading", name="Call detail").wait_for()
    page.get_by_text(str(failing["id"]), exact=False).first.wait_for()  # the call in the address is shown

    page.get_by_role("link", name="Open a support ticket about this call").click()
    page.get_by_role("heading", name="Support").wait_for()
    settle(page)
    # The call is chosen in the new ticket's form (a select box shows its choice as its input's value),
    # its time in the browser's zone.
    zone = ZoneInfo(page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone"))
    shown = failing["created_at"].replace(tzinfo=UTC).astimezone(zone)
    expected = f"{i18n.moment(shown)} · m-big · HTTP 502"  # the time as the page writes it (English here)
    expect(page.locator(".st-key-support_call input")).to_have_value(expected)
    assert "call=" not in page.url  # used once, then dropped from the address

    page.get_by_role("textbox", name="Subject").fill("This call failed")
    page.get_by_role("textbox", name="Message").fill("It answered 502.")
    page.get_by_role("button", name="Open ticket").click()
    page.get_by_text("Ticket opened.").wait_for()
    settle(page)
    with transaction(server.engine) as session:
        ticket = session.scalar(select(Ticket))
    assert (ticket.subject, ticket.log_id) == ("This call failed", failing["id"])
