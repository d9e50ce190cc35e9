"""Browser helpers for the shell's tests: a Chromium context with a colour scheme, users, and signing in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mindroute.services.users import create_user

ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "admin password 1"
USER_EMAIL, USER_PASSWORD = "plain@example.com", "user password 1"
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


def settle(page) -> None:
    """Wait until Streamlit has finished running the script for the current view."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", state="attached")


def cookie_sign_in(page, email: str, password: str) -> None:
    """Fill the cookie sign-in form already on the page and submit it."""
    form = page.locator("form[data-testid='mr-signin-form']")
    form.wait_for()
    form.locator("input[name='email']").fill(email)
    form.locator("input[name='password']").fill(password)
    with page.expect_navigation():
        form.locator("button[type='submit']").click()
    settle(page)


def background(page) -> str:
    return page.locator("[data-testid='stApp']").evaluate("e => getComputedStyle(e).backgroundColor")
