"""Links that work, in a real Chromium: a page's URL and query survive signing in (cookie route and tab
session), /overview opens the Overview, and an admin page opened by a user says who it is for."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.browser.shell_helpers import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    USER_EMAIL,
    USER_PASSWORD,
    add_people,
    cookie_sign_in,
    settle,
    tab_session_server,
)

pytestmark = pytest.mark.browser

DEEP_LINK = "/usage?range=30d&tz=UTC"


def _at(page, path: str, query: dict[str, str] | None = None) -> None:
    url = urlsplit(page.url)
    assert url.path == path, page.url
    if query is not None:
        assert dict(parse_qsl(url.query)) == query, page.url


def _no_page_not_found(page) -> None:
    assert page.get_by_text("Page not found").count() == 0


def test_a_deep_link_survives_the_cookie_sign_in(server, browser_context) -> None:
    add_people(server.engine)
    page = browser_context.new_page()
    page.goto(server.base_url + DEEP_LINK)
    settle(page)
    page.get_by_role("heading", name="Sign in to MindRoute").wait_for()
    _no_page_not_found(page)
    _at(page, "/usage", {"range": "30d", "tz": "UTC"})

    # A wrong password: back on the same link, with the one message, the link's query intact.
    cookie_sign_in(page, USER_EMAIL, "not the password")
    page.get_by_text("Email or password is incorrect").wait_for()
    _no_page_not_found(page)
    _at(page, "/usage", {"range": "30d", "tz": "UTC"})

    cookie_sign_in(page, USER_EMAIL, USER_PASSWORD)
    page.get_by_role("heading", name="Usage").wait_for()
    _no_page_not_found(page)
    _at(page, "/usage", {"range": "30d", "tz": "UTC"})


def test_overview_has_its_own_url_and_admin_pages_tell_a_user_who_they_are_for(server, browser_context) -> None:
    add_people(server.engine)
    page = browser_context.new_page()
    page.goto(server.base_url)
    cookie_sign_in(page, USER_EMAIL, USER_PASSWORD)
    page.get_by_role("heading", name="Overview").wait_for()
    _at(page, "/overview")  # the root opens the Overview at its own URL

    page.goto(server.base_url + "/overview")
    settle(page)
    page.get_by_role("heading", name="Overview").wait_for()
    _no_page_not_found(page)
    _at(page, "/overview")

    page.goto(server.base_url + "/limits")
    settle(page)
    page.get_by_text("This page is for administrators.").wait_for()
    _no_page_not_found(page)
    _at(page, "/limits")
    nav = page.locator("[data-testid='stSidebarNav']")
    assert nav.get_by_text("Limits and budgets").count() == 0  # not offered in the menu
    assert nav.get_by_text("Usage").count() == 1

    # An administrator opening the same URL gets the page itself.
    with browser_context.browser.new_context() as admin_context:
        admin = admin_context.new_page()
        admin.goto(server.base_url + "/limits")
        cookie_sign_in(admin, ADMIN_EMAIL, ADMIN_PASSWORD)
        admin.get_by_role("heading", name="Limits and budgets").wait_for()
        assert admin.get_by_text("This page is for administrators.").count() == 0
        _at(admin, "/limits")


def test_a_deep_link_survives_the_tab_session_sign_in(tmp_path, browser_context) -> None:
    with tab_session_server(tmp_path) as server:
        add_people(server.engine)
        page = browser_context.new_page()
        page.goto(server.base_url)  # Streamlit's first session on a server without app.py: see app.py
        settle(page)
        page.goto(server.base_url + DEEP_LINK)
        settle(page)
        page.get_by_role("heading", name="Sign in to MindRoute").wait_for()
        _no_page_not_found(page)
        page.get_by_label("Email").fill(USER_EMAIL)
        page.get_by_label("Password", exact=True).fill(USER_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        settle(page)
        page.get_by_role("heading", name="Usage").wait_for()
        _no_page_not_found(page)
        _at(page, "/usage", {"range": "30d", "tz": "UTC"})
