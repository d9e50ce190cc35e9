"""The admin's everyday flow in a real Chromium at 1400 px: a provider's and a user's link through sign-in and a
reload, and the tab kept after a model refresh."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import select

from mindroute.db import transaction
from mindroute.models import User
from mindroute.services import providers
from tests.browser.shell_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, add_people, chromium, cookie_sign_in, settle

pytestmark = pytest.mark.browser


def _query(page) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(page.url).query))


def _chosen(page, label: str) -> str:
    """The option a select box shows as chosen."""
    return page.get_by_role("combobox", name=label, exact=True).input_value()


def test_a_providers_link_survives_sign_in_and_a_reload(server, browser_context) -> None:
    add_people(server.engine)
    with transaction(server.engine) as session:
        admin = session.scalar(select(User).where(User.email == ADMIN_EMAIL))
        for name in ("Alpha", "Beta", "Gamma"):
            providers.create_provider(
                session, admin, name=name, protocol="openai-compatible", endpoint_url="http://127.0.0.1:9/v1"
            )
        beta = next(v.id for v in providers.list_providers(session, admin) if v.name == "Beta")
    with chromium(browser_context) as context:
        page = context.new_page()
        page.goto(f"{server.base_url}/providers?provider={beta}")
        settle(page)
        cookie_sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
        page.get_by_role("heading", name="Providers").wait_for()
        settle(page)
        assert _chosen(page, "Manage provider") == "Beta"
        assert _query(page) == {"provider": str(beta)}

        page.reload()
        settle(page)
        page.get_by_role("heading", name="Providers").wait_for()
        settle(page)
        assert _chosen(page, "Manage provider") == "Beta"
        assert _query(page) == {"provider": str(beta)}

        # The Models tab stays open after a save there (a rerun of the page).
        page.get_by_role("tab", name="Models and prices").click()
        settle(page)
        page.get_by_role("button", name="Save models and prices").click()
        settle(page)
        page.get_by_text("Models and prices saved.").wait_for()
        assert page.get_by_role("tab", name="Models and prices").get_attribute("aria-selected") == "true"
        page.screenshot(path=str(server.log_path.parent / "providers.png"), full_page=True)


def test_a_users_link_opens_that_user_and_the_matrix_fits(server, browser_context) -> None:
    add_people(server.engine)
    with transaction(server.engine) as session:
        admin = session.scalar(select(User).where(User.email == ADMIN_EMAIL))
        plain = session.scalar(select(User.id).where(User.role == "user"))
        for i in range(10):
            providers.create_provider(
                session,
                admin,
                name=f"Provider number {i:02d}",
                protocol="openai-compatible",
                endpoint_url="http://127.0.0.1:9/v1",
            )
    with chromium(browser_context) as context:
        page = context.new_page()
        page.goto(server.base_url)
        cookie_sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
        page.goto(f"{server.base_url}/users?user={plain}")
        settle(page)
        page.get_by_role("heading", name="Users and permissions").wait_for()
        settle(page)
        assert _chosen(page, "User").startswith("plain@example.com")
        assert _query(page).get("user") == str(plain)
        matrix = page.locator("[data-testid='stDataFrame']").last  # the matrix is the page's last table
        matrix.scroll_into_view_if_needed()
        box = matrix.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1400  # within the window: nothing cut off
        page.screenshot(path=str(server.log_path.parent / "users.png"), full_page=True)
