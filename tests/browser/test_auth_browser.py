"""Sign-in that survives a reload, in a real headless Chromium against `streamlit run app.py`."""

from __future__ import annotations

import httpx
import pytest

from mindroute.db import transaction
from mindroute.http.cookies import SESSION_COOKIE
from mindroute.services.users import create_user
from mindroute.ui import navigation

pytestmark = pytest.mark.browser

ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "admin password 1"
USER_EMAIL, USER_PASSWORD = "plain@example.com", "user password 1"


def settle(page) -> None:
    """Wait until Streamlit has finished running the script for the current view."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", state="attached")


def sign_in(page, base: str, email: str, password: str) -> None:
    page.goto(base)
    fill_sign_in(page, email, password)


def fill_sign_in(page, email: str, password: str) -> None:
    """Fill the cookie sign-in form already on the page (any page's URL shows it when signed out) and submit."""
    form = page.locator("form[data-testid='mr-signin-form']")
    form.wait_for()
    form.locator("input[name='email']").fill(email)
    form.locator("input[name='password']").fill(password)
    with page.expect_navigation():
        form.locator("button[type='submit']").click()
    settle(page)


def session_cookie(context) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == SESSION_COOKIE), None)


def test_sign_in_survives_reload_and_sign_out_ends_it(server, browser_context) -> None:
    page = browser_context.new_page()
    base = server.base_url
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok", "database": "ok"}

    # First run: only the form that creates the first administrator.
    page.goto(base)
    page.get_by_text("No administrator exists yet").wait_for()
    assert page.locator("form[data-testid='mr-signin-form']").count() == 0
    page.get_by_label("Name").fill("Root Admin")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
    page.get_by_label("Repeat password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Create administrator").click()
    page.locator("form[data-testid='mr-signin-form']").wait_for()

    # A wrong password: the one message, no cookie.
    sign_in(page, base, ADMIN_EMAIL, "not the password")
    page.get_by_text("Email or password is incorrect").wait_for()
    assert session_cookie(browser_context) is None

    sign_in(page, base, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.get_by_role("heading", name="Overview").wait_for()
    cookie = session_cookie(browser_context)
    assert cookie is not None and cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert SESSION_COOKIE not in page.evaluate("document.cookie")

    page.reload()
    settle(page)
    page.get_by_role("heading", name="Overview").wait_for()  # still signed in after a reload

    # Sign out: the token is revoked and the cookie cleared.
    page.locator("form[data-testid='mr-signout-form'] button").click()
    page.locator("form[data-testid='mr-signin-form']").wait_for()
    assert session_cookie(browser_context) is None
    page.reload()
    page.locator("form[data-testid='mr-signin-form']").wait_for()

    # Replaying the old cookie value does not sign anyone in.
    browser_context.add_cookies([{k: cookie[k] for k in ("name", "value", "domain", "path", "httpOnly", "sameSite")}])
    page.goto(base)
    page.locator("form[data-testid='mr-signin-form']").wait_for()
    settle(page)
    assert page.get_by_role("heading", name="Overview").count() == 0


def test_plain_user_cannot_open_admin_pages_by_url(server, browser_context) -> None:
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
        create_user(session, None, email=USER_EMAIL, name="Plain", password=USER_PASSWORD, role="user")
    page = browser_context.new_page()
    sign_in(page, server.base_url, USER_EMAIL, USER_PASSWORD)
    page.get_by_role("heading", name="Overview").wait_for()
    admin_pages = [p for p in navigation.PAGES if "user" not in p.roles]
    if not admin_pages:
        pytest.skip("no admin-only pages are registered")
    for spec in admin_pages:
        page.goto(f"{server.base_url}/{spec.path.rsplit('/', 1)[-1].removesuffix('.py')}")
        settle(page)
        # The page itself never runs: its URL says who it is for (not "Page not found", not the page).
        page.get_by_text("This page is for administrators.").wait_for()
        assert page.get_by_text("Page not found").count() == 0
        assert page.get_by_role("heading", name=spec.title, exact=True).count() == 0


def test_cross_site_sign_in_post_is_refused(server) -> None:
    response = httpx.post(
        f"{server.base_url}/auth/signin",
        data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
