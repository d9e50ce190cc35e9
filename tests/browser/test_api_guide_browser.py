"""The API guide in a real browser: the base URL is the address the browser opened the app at, and it answers."""

from __future__ import annotations

import httpx
import pytest

from mindroute.db import transaction
from mindroute.services.users import create_user
from tests.browser.test_auth_browser import ADMIN_EMAIL, ADMIN_PASSWORD, USER_EMAIL, USER_PASSWORD, settle, sign_in

pytestmark = pytest.mark.browser


def test_the_guides_base_url_is_the_apps_own_address(server, browser_context) -> None:
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
        create_user(session, None, email=USER_EMAIL, name="Plain", password=USER_PASSWORD, role="user")
    page = browser_context.new_page()
    sign_in(page, server.base_url, USER_EMAIL, USER_PASSWORD)
    page.goto(f"{server.base_url}/api_guide")
    settle(page)
    page.get_by_role("heading", name="API guide").wait_for()

    base = f"{server.base_url}/v1"
    codes = page.locator("[data-testid='stCode']")
    codes.first.wait_for()
    shown = [codes.nth(i).inner_text().strip() for i in range(codes.count())]
    assert base in shown
    assert page.get_by_text("This address is a guess").count() == 0
    assert page.get_by_text("without its API").count() == 0  # served by app.py, with the API
    assert httpx.get(f"{base}/openapi.json").json()["openapi"].startswith("3.")
    assert page.get_by_role("link", name="Open /v1/openapi.json").get_attribute("href") == f"{base}/openapi.json"
