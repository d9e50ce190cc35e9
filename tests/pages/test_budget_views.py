"""What users see of their budgets, in AppTest on both databases: Overview (their budgets with the forecast;
admins also the alerts and the providers' budgets), the Usage page's spend against budget, and the
playground's refusal shown as a warning naming the limit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from mindroute.analytics.rollups import rebuild_rollups
from mindroute.db import transaction
from mindroute.models import BudgetAlert, BudgetSpend, Log, Provider, User, utcnow
from mindroute.services import budget_spend, limit_admin, limit_rules
from mindroute.services.limit_rules import LimitRule
from mindroute.ui import budget_view, usage_view
from mindroute.ui.format import tokens as tokens_text
from tests.pages.helpers import add_user, app_for, markdown_texts, sign_in, texts
from tests.pages.test_playground import grant_provider, send, user_on_playground
from tests.providers.fakes import FakeOpenAI, FakeServer
from tests.test_analytics import insert_rows, log_row

OVERVIEW = "pages/workspace/overview.py"
USAGE = "pages/workspace/usage.py"


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeServer]:
    server = FakeServer(FakeOpenAI()).start()
    yield server
    server.stop()


# --- the playground ---------------------------------------------------------------------------------


def test_a_providers_rate_limit_is_a_warning_not_an_error(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake, models=["error-429"])
    at = send(at.run(), "hello")
    assert not at.exception and not at.error
    [warning] = at.warning
    assert warning.value and warning.icon == ":material/hourglass_top:"
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Log).where(Log.status_code == 429)) == 1
    assert "hello" in texts(at)


def test_a_spent_budget_refuses_the_playgrounds_call_with_a_warning_naming_it(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    with transaction(engine) as session:
        user = session.scalar(select(User).where(User.email == "user@example.com"))
    target = limit_rules.user_target(user.id)
    set_budget(engine, target, budget_usd=1, period="day", timezone="Asia/Kolkata")
    spend(engine, target, "day", "Asia/Kolkata", 1.5)
    requests_before = len(openai_fake.fake.requests)
    at = send(at.run(), "one more")
    assert not at.exception and not at.error
    [warning] = at.warning
    shown = re.sub(r"\\(.)", r"\1", warning.value)
    assert shown.startswith("Budget spent: $1.50 of $1.00 today") and "(the limit on user)" in shown
    assert "it resets on " in shown
    assert len(openai_fake.fake.requests) == requests_before  # nothing went upstream


# --- the shared component ------------------------------------------------------------------------

SEOUL_DEC_10 = datetime(2026, 12, 10, 3)  # naive UTC: noon on 10 December in Seoul


def rule_of(budget_usd: float | None = 10.0, budget_tokens: int | None = None, **changes) -> LimitRule:
    values = dict(
        target="user:x",
        scope="user",
        set_by="admin",
        counter_key="user:x",
        label="the limit on Alice",
        rpm=None,
        tpm=None,
        budget_usd=budget_usd,
        budget_tokens=budget_tokens,
        period="month",
        timezone="Asia/Seoul",
        warn_percent=80,
    )
    return LimitRule(**(values | changes))


def status_at(rule: LimitRule, spent_usd: float, tokens: int = 0, unpriced: int = 0, now=SEOUL_DEC_10):
    row = BudgetSpend(
        target=rule.counter_key, period_key="", spent_usd=spent_usd, tokens=tokens, unpriced_calls=unpriced
    )
    return budget_spend.status_of(rule, rule.window(now), row, now)


def test_a_meter_says_what_is_used_when_it_resets_and_the_forecast() -> None:
    status = status_at(rule_of(budget_tokens=100_000), 3.2, tokens=12_345, unpriced=3)
    usd, tokens = budget_view.meters(status, now=SEOUL_DEC_10)
    # Midnight on 1 January in Seoul is 21.5 days after noon on 10 December there.
    assert usd.used == "$3.20 of $10.00 this month (Asia/Seoul), resets in 3 weeks (Jan 1, 2027, 12:00 AM)"
    # 9.5 of December's 31 days in Seoul have gone by: $3.20 / (9.5 / 31) = $10.44, over the budget.
    assert usd.forecast == "at this rate: $10.44 by the end of the month" and usd.forecast_over
    assert usd.fraction == pytest.approx(0.32)
    assert tokens.used == (
        f"{tokens_text(12_345)} of {tokens_text(100_000)} tokens this month (Asia/Seoul), "
        "resets in 3 weeks (Jan 1, 2027, 12:00 AM)"
    )
    # 12,345 / (9.5 / 31) = 40,284 tokens by the end of the month.
    assert tokens.forecast == f"at this rate: {tokens_text(40_284)} tokens by the end of the month"
    assert not tokens.forecast_over
    assert budget_view.unpriced_text(status) == "3 calls to unpriced models not counted in USD"


def test_a_total_budget_never_resets_and_has_no_forecast() -> None:
    [meter] = budget_view.meters(status_at(rule_of(period="total"), 12.5))
    assert meter.used == "$12.50 of $10.00 in total" and meter.forecast is None and meter.fraction == 1.0


def test_a_day_in_a_half_hour_zone_resets_at_its_local_midnight() -> None:
    status = status_at(rule_of(period="day", timezone="Asia/Kolkata"), 0.004)
    [meter] = budget_view.meters(status, now=SEOUL_DEC_10)
    # 12:00 in Seoul is 08:30 in Kolkata: its midnight is 15.5 hours away.
    assert meter.used == "$0.004 of $10.00 today (Asia/Kolkata), resets in 16 hours (Dec 11, 2026, 12:00 AM)"


def test_the_component_escapes_names_and_marks_an_over_forecast() -> None:
    def script() -> None:
        from datetime import datetime

        from mindroute.models import BudgetSpend
        from mindroute.services import budget_spend
        from mindroute.services.limit_rules import LimitRule
        from mindroute.ui.budget_view import render_statuses

        now = datetime(2026, 12, 10, 3)
        rule = LimitRule(
            "key:k", "key", "owner", "key:k", "the limit on API key '*ci* <b>$x$ ![i](http://e.test/i.png)'",
            None, None, 10.0, None, "month", "Asia/Seoul", 80,
        )  # fmt: skip
        row = BudgetSpend(target="key:k", period_key="", spent_usd=8.5, tokens=0, unpriced_calls=0)
        render_statuses([budget_spend.status_of(rule, rule.window(now), row, now)])

    at = AppTest.from_function(script).run()
    assert not at.exception
    shown = "\n".join(markdown_texts(at))
    assert "<b>" not in shown and "![" not in shown and "](http" not in shown
    assert "**The limit on API key '\\*ci\\* \\<b\\>\\$x\\$" in shown
    assert ":orange-badge[:material/warning: Warning]" in shown  # 85 % of the budget, warning at 80 %
    assert any(c.value.startswith(":orange[at this rate") and "over the budget" in c.value for c in at.caption)


# --- Overview and Usage ----------------------------------------------------------------------------


def set_budget(engine, target: str, **settings) -> None:
    with transaction(engine) as session:
        admin = session.scalar(select(User).where(User.role == "admin"))
        limit_admin.set_limit(session, admin, target, limit_rules.validate_settings(**settings))


def spend(engine, target: str, period: str, timezone: str, usd: float, tokens: int = 0, unpriced: int = 0) -> None:
    key = limit_rules.period_window(period, timezone).key
    with transaction(engine) as session:
        session.merge(BudgetSpend(target=target, period_key=key, spent_usd=usd, tokens=tokens, unpriced_calls=unpriced))


@pytest.fixture
def alice_with_a_budget(engine):
    """Alice: $10.00 a month in Seoul, $3.20 of it spent, and 3 calls to unpriced models."""
    add_user(engine, "admin@example.com", role="admin")
    alice = add_user(engine, "alice@example.com", name="Alice")
    target = limit_rules.user_target(alice.id)
    set_budget(engine, target, budget_usd=10, period="month", timezone="Asia/Seoul")
    spend(engine, target, "month", "Asia/Seoul", 3.2, tokens=50_000, unpriced=3)
    return alice


def overview_for(engine, monkeypatch, email: str):
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    at.switch_page(OVERVIEW).run()
    assert not at.exception, at.exception
    return at


def shown_text(at) -> str:
    """Everything readable, including captions and the progress bars' sentences, as the reader sees it."""
    parts = [texts(at), *(c.value for c in at.caption)]
    parts += [el.proto.text for el in _walk(at.main) if getattr(el, "type", None) == "progress"]
    return re.sub(r"\\(.)", r"\1", "\n".join(parts))


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def test_a_user_sees_their_budget_on_the_overview_with_the_forecast(engine, monkeypatch, alice_with_a_budget) -> None:
    at = overview_for(engine, monkeypatch, "alice@example.com")
    shown = shown_text(at)
    assert "Your budgets" in [s.value for s in at.subheader]
    assert "The limit on Alice" in shown
    assert "$3.20 of $10.00 this month (Asia/Seoul), resets in " in shown and "(Jan 1, 20" in shown
    with transaction(engine) as session:
        viewer = session.get(User, alice_with_a_budget.id)
        [status] = budget_spend.budget_statuses(session, viewer, viewer.id)
    forecast = float(re.search(r"at this rate: \$([\d,.]+) by the end of the month", shown)[1].replace(",", ""))
    assert forecast == pytest.approx(status.forecast_usd, abs=0.01)
    assert ("over the budget" in shown) == (status.forecast_usd > 10)
    assert "3 calls to unpriced models not counted in USD" in shown
    assert "Provider budgets" not in [s.value for s in at.subheader]  # a user sees only their own


def test_a_user_without_a_budget_sees_no_budget_section(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "bob@example.com")
    at = overview_for(engine, monkeypatch, "bob@example.com")
    assert "Your budgets" not in [s.value for s in at.subheader]


def test_a_spent_budget_has_its_badge(engine, monkeypatch, alice_with_a_budget) -> None:
    spend(engine, limit_rules.user_target(alice_with_a_budget.id), "month", "Asia/Seoul", 10.5)
    at = overview_for(engine, monkeypatch, "alice@example.com")
    assert ":red-badge[:material/block: Spent]" in markdown_texts(at)


def test_an_admin_sees_the_providers_budgets(engine, monkeypatch, alice_with_a_budget) -> None:
    with transaction(engine) as session:
        provider = Provider(name="Fake *OpenAI*", settings={"models": ["m"], "default_model": None, "prices": {}})
        session.add(provider)
    target = limit_rules.provider_target(provider.id)
    set_budget(engine, target, budget_tokens=1_000_000, period="week", timezone="UTC")
    spend(engine, target, "week", "UTC", 0.0, tokens=850_000)
    at = overview_for(engine, monkeypatch, "admin@example.com")
    assert "Provider budgets" in [s.value for s in at.subheader]
    shown = shown_text(at)
    assert "The organisation's limit on Fake *OpenAI*" in shown
    assert f"{tokens_text(850_000)} of {tokens_text(1_000_000)} tokens this week (UTC), resets in " in shown
    assert ":orange-badge[:material/warning: Warning]" in markdown_texts(at)


def test_the_usage_page_shows_spend_against_budget(engine, monkeypatch, alice_with_a_budget) -> None:
    with transaction(engine) as session:
        provider = Provider(name="P1", settings={"models": ["m"], "default_model": None, "prices": {}})
        session.add(provider)
    insert_rows(engine, [log_row(utcnow() - timedelta(minutes=5), alice_with_a_budget, provider, "m")])
    rebuild_rollups(engine, progress=False)
    at = sign_in(app_for(engine, monkeypatch).run(), "alice@example.com")
    at.switch_page(USAGE).run()
    assert not at.exception, at.exception
    assert "Spend against budget" in [s.value for s in at.subheader]
    table = next(d.value for d in at.dataframe if "used_percent" in d.value.columns)
    [row] = table.to_dict("records")
    assert (row["budget"], row["unit"], row["used"], row["limit"]) == ("The limit on Alice", "USD", 3.2, 10.0)
    assert row["used_percent"] == pytest.approx(32.0) and row["unpriced_calls"] == 3
    assert row["period"] == "this month (Asia/Seoul)" and row["forecast"] >= 3.2

    fig = usage_view.budget_figure(table)
    assert [trace.name for trace in fig.data] == ["used this period", "forecast at this rate"]
    assert list(fig.data[0].y) == pytest.approx([32.0])
    assert [shape.y0 for shape in fig.layout.shapes] == [100]  # the budget, as the line at 100 %


def test_an_admin_sees_the_budget_alerts_of_the_current_period(engine, monkeypatch, alice_with_a_budget) -> None:
    target = limit_rules.user_target(alice_with_a_budget.id)
    current = limit_rules.period_window("month", "Asia/Seoul").key
    with transaction(engine) as session:
        for period_key, spent in ((current, 8.5), ("month:Asia/Seoul:2020-01-01", 9.9)):
            session.add(
                BudgetAlert(
                    limit_target=target, period_key=period_key, level="warning", metric="usd", budget=10.0, spent=spent
                )
            )
    at = overview_for(engine, monkeypatch, "admin@example.com")
    assert "Budget alerts" in [s.value for s in at.subheader]
    table = next(d.value for d in at.dataframe if "Reached" in d.value.columns)
    [row] = table.to_dict("records")  # last period's alert is not listed
    assert (row["Level"], row["Budget"], row["Reached"]) == ("Warning", "The budget of Alice", "$8.50 of $10.00")
    assert row["Period"].startswith("the month of ") and row["Webhook"] == "not set"

    at = overview_for(engine, monkeypatch, "alice@example.com")
    assert "Budget alerts" not in [s.value for s in at.subheader]


def test_an_admin_with_no_alerts_is_told_so(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = overview_for(engine, monkeypatch, "admin@example.com")
    assert "None: no budget has reached its warning threshold in its current period." in texts(at)
