"""Budgets in a real browser: a user whose budget is spent sees it on the Overview, and the playground's
refusal, naming the limit and when it resets, as a warning; nothing goes to the provider."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from mindroute import security
from mindroute.db import transaction
from mindroute.models import BudgetSpend, Log, Provider, User, UserProvider
from mindroute.services import limit_admin, limit_rules
from mindroute.services.users import create_user
from tests.browser.test_auth_browser import ADMIN_EMAIL, ADMIN_PASSWORD, USER_EMAIL, USER_PASSWORD, settle, sign_in
from tests.conftest import TEST_SECRET_KEY
from tests.providers.fakes import OPENAI_KEY, FakeOpenAI, FakeServer

pytestmark = pytest.mark.browser


@pytest.fixture
def openai_fake() -> Iterator[FakeServer]:
    running = FakeServer(FakeOpenAI()).start()
    yield running
    running.stop()


def user_with_a_spent_budget(engine, fake: FakeServer) -> None:
    """ "Plain" may use the fake OpenAI provider; their $1.00 a month (UTC) has $1.25 spent."""
    with transaction(engine) as session:
        admin = create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
        user = create_user(session, None, email=USER_EMAIL, name="Plain", password=USER_PASSWORD, role="user")
        provider = Provider(
            name="Fake OpenAI",
            protocol="openai",
            endpoint_url=fake.url + "/v1",
            api_key=security.SecretBox([TEST_SECRET_KEY]).encrypt(OPENAI_KEY),
            settings={"models": ["test-model"], "default_model": "test-model", "prices": {}},
        )
        session.add(provider)
        session.flush()
        session.add(UserProvider(user_id=user.id, provider_id=provider.id, allowed=True))
        target = limit_rules.user_target(user.id)
        settings = limit_rules.validate_settings(budget_usd=1, period="month", timezone="UTC")
        limit_admin.set_limit(session, admin, target, settings)
    with transaction(engine) as session:
        key = limit_rules.period_window("month", "UTC").key
        session.merge(BudgetSpend(target=target, period_key=key, spent_usd=1.25, tokens=4_000, unpriced_calls=0))


def test_a_user_sees_their_spent_budget_and_the_playgrounds_refusal(server, browser_context, openai_fake) -> None:
    user_with_a_spent_budget(server.engine, openai_fake)
    page = browser_context.new_page()
    sign_in(page, server.base_url, USER_EMAIL, USER_PASSWORD)
    page.get_by_role("heading", name="Your budgets").wait_for()
    settle(page)
    bar = page.locator("[data-testid='stProgress']")
    budget = page.locator("[data-testid='stVerticalBlock']", has_text="The limit on Plain", has=bar).last
    # The reset: how far off, then the moment (the first of next month) as the reader's language writes it.
    resets = r"\$1\.25 of \$1\.00 this month \(UTC\), resets in [^(]+ \([A-Z][a-z]{2} 1, \d{4}, 12:00 AM\)"
    assert re.search(resets, budget.inner_text()), budget.inner_text()
    assert "Spent" in budget.inner_text()

    page.goto(f"{server.base_url}/playground")
    settle(page)
    box = page.locator("[data-testid='stChatInputTextArea']")
    box.fill("one more question")
    box.press("Enter")
    refusal = page.locator("[data-testid='stAlertContentWarning']")
    refusal.first.wait_for()
    settle(page)
    message = refusal.first.inner_text()
    assert "Budget spent" in message and "the limit on Plain" in message and "resets on" in message
    assert page.locator("[data-testid='stAlertContentError']").count() == 0  # a warning, not an error
    assert openai_fake.fake.requests == []  # refused before any upstream call
    with transaction(server.engine) as session:
        [row] = session.scalars(select(Log)).all()
        user = session.scalar(select(User).where(User.email == USER_EMAIL))
    assert (row.status_code, row.user_id) == (429, user.id) and "Budget spent" in row.error_message

    # The Usage page draws the spend against the budget: the bar and the budget's line at 100 %.
    page.goto(f"{server.base_url}/usage")
    settle(page)
    page.get_by_role("heading", name="Spend against budget").wait_for()
    chart = page.locator(".js-plotly-plot", has_text="% of the budget")
    chart.wait_for()
    chart.locator("g.trace.bars path").first.wait_for(state="attached")
    assert chart.locator(".annotation-text").first.text_content() == "budget"
