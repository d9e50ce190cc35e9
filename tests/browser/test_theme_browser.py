"""Dark theme in a real Chromium: both palettes follow prefers-color-scheme, and Account's choice overrides it."""

from __future__ import annotations

import pytest

from tests.browser.shell_helpers import (
    DARK_BACKGROUND,
    LIGHT_BACKGROUND,
    USER_EMAIL,
    USER_PASSWORD,
    add_people,
    background,
    chromium,
    cookie_sign_in,
    settle,
)

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(("scheme", "shade"), [("dark", DARK_BACKGROUND), ("light", LIGHT_BACKGROUND)])
def test_the_palette_follows_the_browser(server, browser_context, scheme: str, shade: str) -> None:
    add_people(server.engine)
    with chromium(browser_context, scheme) as context:
        page = context.new_page()
        page.goto(server.base_url)
        cookie_sign_in(page, USER_EMAIL, USER_PASSWORD)
        page.get_by_role("heading", name="Overview").wait_for()
        assert background(page) == shade


def _choose(page, label: str) -> None:
    page.locator("[data-testid='stRadio']").get_by_text(label, exact=True).click()
    with page.expect_navigation():  # the choice is applied by one reload
        page.get_by_role("button", name="Save time zone and theme").click()
    settle(page)


def test_an_explicit_choice_wins_over_the_browser_and_survives_reloads(server, browser_context) -> None:
    add_people(server.engine)
    with chromium(browser_context, "dark") as context:
        page = context.new_page()
        page.goto(server.base_url + "/account")
        cookie_sign_in(page, USER_EMAIL, USER_PASSWORD)
        page.get_by_role("heading", name="Account").wait_for()
        assert background(page) == DARK_BACKGROUND

        _choose(page, "Light")
        page.get_by_role("heading", name="Account").wait_for()
        assert background(page) == LIGHT_BACKGROUND
        page.reload()
        settle(page)
        assert background(page) == LIGHT_BACKGROUND
        # Another page opened by its URL, never loaded in this browser before: light too.
        page.goto(server.base_url + "/usage")
        settle(page)
        page.get_by_role("heading", name="Usage").wait_for()
        assert background(page) == LIGHT_BACKGROUND

        # A second browser where this user signs in: the choice comes with the account.
        with chromium(browser_context, "dark") as other:
            fresh = other.new_page()
            fresh.goto(server.base_url)
            cookie_sign_in(fresh, USER_EMAIL, USER_PASSWORD)
            fresh.get_by_role("heading", name="Overview").wait_for()
            fresh.wait_for_function(
                "bg => getComputedStyle(document.querySelector(\"[data-testid='stApp']\")).backgroundColor === bg",
                arg=LIGHT_BACKGROUND,
            )

        page.goto(server.base_url + "/account")
        settle(page)
        _choose(page, "Follow the browser")
        page.get_by_role("heading", name="Account").wait_for()
        assert background(page) == DARK_BACKGROUND


def test_the_favicon_and_fonts_come_from_the_app_itself(server, browser_context) -> None:
    """Offline-safe: signing in and opening Overview and Account fetches nothing from another host
    (the favicon was a Material icon from Google's font CDN)."""
    add_people(server.engine)
    page = browser_context.new_page()
    elsewhere: list[str] = []
    own = (server.base_url, "data:", "blob:")
    page.on("request", lambda r: None if r.url.startswith(own) else elsewhere.append(r.url))
    page.goto(server.base_url)
    cookie_sign_in(page, USER_EMAIL, USER_PASSWORD)
    page.get_by_role("heading", name="Overview").wait_for()
    page.goto(server.base_url + "/account")
    settle(page)
    page.get_by_role("heading", name="Account").wait_for()
    icon = page.locator("link[rel='shortcut icon'], link[rel='icon']").first.get_attribute("href")
    assert icon is not None and (not icon.startswith("http") or icon.startswith(server.base_url)), icon
    assert elsewhere == []


def test_times_follow_the_browsers_zone_until_account_chooses_one(server, browser_context) -> None:
    add_people(server.engine)
    with browser_context.browser.new_context(timezone_id="Asia/Seoul") as context:
        page = context.new_page()
        page.goto(server.base_url + "/account")
        cookie_sign_in(page, USER_EMAIL, USER_PASSWORD)
        page.get_by_text("Times are in Asia/Seoul.").wait_for()
        box = page.locator("[data-testid='stSelectbox']").filter(has_text="Time zone")
        # The chosen option shows as the input's value or as text beside it, depending on the element's state.
        assert "Follow the browser (Asia/Seoul)" in box.locator("input").input_value() + box.inner_text()
        box.locator("input").click()
        page.keyboard.type("Kolkata")
        page.get_by_role("option", name="Asia/Kolkata").click()
        page.get_by_role("button", name="Save time zone and theme").click()
        settle(page)
        page.get_by_text("Times are in Asia/Kolkata.").wait_for()
