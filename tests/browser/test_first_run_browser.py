"""The first-run checklist (issue 17) in a real Chromium: a fresh app's first administrator sees it on the
Overview, a step's link opens the step's page, and a step done meanwhile shows ticked after a reload.

Written without the page's words (keys, URLs and icons only), so it holds in every language."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mindroute.db import transaction
from mindroute.models import User
from mindroute.services import first_run, providers
from tests.browser.shell_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, chromium, cookie_sign_in, settle

pytestmark = pytest.mark.browser

DONE, TO_DO = "check_circle", "radio_button_unchecked"  # the steps' Material icons, as the page draws them


def create_first_admin(page, base: str) -> None:
    """The first-run form, filled by its widgets' keys; the cookie sign-in form follows it."""
    page.goto(base)
    page.locator(".st-key-first_admin_name input").wait_for()
    page.locator(".st-key-first_admin_name input").fill("Root Admin")
    page.locator(".st-key-first_admin_email input").fill(ADMIN_EMAIL)
    page.locator(".st-key-first_admin_password input").fill(ADMIN_PASSWORD)
    page.locator(".st-key-first_admin_repeat input").fill(ADMIN_PASSWORD)
    page.locator("[data-testid='stFormSubmitButton'] button").click()
    page.locator("form[data-testid='mr-signin-form']").wait_for()


def step_icons(page, count: int) -> list[str]:
    """The steps' icons, once all `count` steps are drawn (the checklist's box shows before its links)."""
    from playwright.sync_api import expect  # here: without playwright, browser_context skips the test

    links = page.locator(".st-key-first_run [data-testid='stPageLink']")
    expect(links).to_have_count(count)
    return [link.locator("[data-testid='stIconMaterial']").first.inner_text().strip() for link in links.all()]


def test_the_checklist_leads_the_first_administrator_and_ticks_a_step_done(server, browser_context) -> None:
    base = server.base_url
    with chromium(browser_context) as context:
        page = context.new_page()
        create_first_admin(page, base)
        cookie_sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
        page.wait_for_url(f"{base}/overview*")
        checklist = page.locator(".st-key-first_run")
        checklist.wait_for()
        settle(page)
        steps = first_run.steps(server.engine)
        assert step_icons(page, len(steps)) == [TO_DO] * len(steps)

        # The first step's link opens the Providers page at its own URL.
        checklist.locator("[data-testid='stPageLink'] a").first.click()
        page.wait_for_url(f"{base}/providers*")
        settle(page)
        assert page.locator(".st-key-first_run").count() == 0  # the checklist belongs to the Overview

        # A provider added meanwhile (as another administrator would): the step shows done after a reload.
        with transaction(server.engine) as session:
            admin = session.scalar(select(User).where(User.email == ADMIN_EMAIL))
            session.expunge(admin)
        providers.create_provider(
            server.engine, admin, name="Local", protocol="openai-compatible", endpoint_url="http://127.0.0.1:11434/v1"
        )
        page.goto(f"{base}/overview")
        settle(page)
        page.locator(".st-key-first_run").wait_for()
        assert step_icons(page, len(steps)) == [DONE] + [TO_DO] * (len(steps) - 1)
        page.reload()
        settle(page)
        page.locator(".st-key-first_run").wait_for()
        assert step_icons(page, len(steps))[0] == DONE
