"""Budgets and rate limits in the playground (the chat service, both databases, the fake OpenAI server):
a limit's refusal is the call's outcome (429, the message naming the limit), nothing goes upstream, and it
is one Logs row; an admitted call's tracker carries its charges and its cost onto its record."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, func, select

from mindroute import security
from mindroute.config import get_settings
from mindroute.db import transaction
from mindroute.models import BudgetSpend, Log, Provider, User, UserProvider
from mindroute.providers.shapes import ChatMessage, ChatRequest, ChatResult
from mindroute.services import limit_admin
from mindroute.services.call_tracker import Caller, CallTracker
from mindroute.services.chat import StreamingChat, WholeChat, complete_chat
from mindroute.services.limit_charges import Charges
from mindroute.services.limit_rules import (
    DEFAULT_TARGET,
    LimitSettings,
    period_window,
    provider_target,
    rules_for_call,
    user_target,
)
from mindroute.services.routing import prepare_call
from tests.providers.conftest import openai_server  # noqa: F401 - the fake provider, shared
from tests.providers.fakes import OPENAI_KEY, expected_answer

CALLER = Caller(source="playground", ip="192.0.2.10", user_agent="pytest")
PRICES = {"test-model": {"input": 2.0, "output": 8.0}}


@pytest.fixture
def setup(engine: Engine, openai_server):  # noqa: F811 - the fixture imported above
    """A user and an admin, and one provider granted to the user, pointed at the fake OpenAI server."""
    openai_server.fake.reset()
    box = security.SecretBox(get_settings().secret_keys)
    with transaction(engine) as session:
        user = User(email="u@example.com", name="U", password="x")
        admin = User(email="a@example.com", name="A", password="x", role="admin")
        provider = Provider(
            name="Fake",
            protocol="openai",
            endpoint_url=openai_server.url + "/v1",
            api_key=box.encrypt(OPENAI_KEY),
            settings={"models": [], "default_model": None, "prices": PRICES},
        )
        session.add_all([user, admin, provider])
        session.flush()
        session.add(UserProvider(user_id=user.id, provider_id=provider.id, allowed=True))
    return engine, user, admin, provider, openai_server.fake


def set_rule(engine: Engine, admin: User, target: str, **settings: object) -> None:
    with transaction(engine) as session:
        limit_admin.set_limit(session, session.get(User, admin.id), target, LimitSettings(**settings))


def ask(text: str = "ping", **options: object) -> ChatRequest:
    return ChatRequest(model="test-model", messages=[ChatMessage("user", text)], **options)


def statuses(engine: Engine) -> list[int]:
    with transaction(engine) as session:
        return list(session.scalars(select(Log.status_code).order_by(Log.created_at)))


def fresh_minute(margin_s: float = 5.0) -> None:
    into = time.time() % 60
    if into > 60 - margin_s:
        time.sleep(60 - into + 0.2)


def test_a_rate_limit_refuses_the_next_call_with_its_message_and_one_row(setup) -> None:
    engine, user, admin, provider, fake = setup
    set_rule(engine, admin, user_target(user.id), rpm=1)
    fresh_minute()
    first = complete_chat(engine, user, provider.id, ask(), CALLER)
    assert first.ok and first.text == expected_answer("ping")
    sent = len(fake.requests)
    refused = complete_chat(engine, user, provider.id, ask(), CALLER)
    assert refused.status_code == 429 and not refused.ok
    assert refused.error and "minute" in refused.error.lower()
    assert refused.retry_after is not None and 0 <= refused.retry_after <= 60
    assert refused.log_id is not None
    assert len(fake.requests) == sent  # nothing went upstream
    assert statuses(engine) == [200, 429]
    with transaction(engine) as session:
        row = session.get(Log, refused.log_id)
        assert (row.status_code, row.error_message, row.user_id) == (429, refused.error, user.id)


def test_the_default_rule_applies_to_every_user_in_the_playground(setup) -> None:
    engine, user, admin, provider, _ = setup
    set_rule(engine, admin, DEFAULT_TARGET, rpm=1)
    fresh_minute()
    assert complete_chat(engine, user, provider.id, ask(), CALLER).ok
    assert complete_chat(engine, user, provider.id, ask(), CALLER).status_code == 429


def test_a_spent_budget_refuses_a_stream_before_it_starts(setup) -> None:
    engine, user, admin, provider, fake = setup
    set_rule(engine, admin, provider_target(provider.id), budget_usd=1.0, period="week", timezone="Asia/Kolkata")
    with transaction(engine) as session:
        key = period_window("week", "Asia/Kolkata").key
        session.merge(BudgetSpend(target=provider_target(provider.id), period_key=key, spent_usd=1.5))
    chat = StreamingChat(engine, user, provider.id, ask(stream=True), CALLER)
    try:
        pieces = list(chat.chunks())
    finally:
        outcome = chat.finish()
    assert pieces == [] and fake.requests == []
    assert outcome.status_code == 429 and outcome.error
    assert chat.finish() is outcome  # logged once
    assert statuses(engine) == [429]


def test_a_whole_stoppable_call_is_refused_alike(setup) -> None:
    engine, user, admin, provider, fake = setup
    set_rule(engine, admin, user_target(user.id), budget_tokens=100, period="total")
    with transaction(engine) as session:
        session.merge(BudgetSpend(target=user_target(user.id), period_key="total", tokens=100))
    chat = WholeChat(engine, user, provider.id, ask(), CALLER)
    assert list(chat.pieces(0.01)) == []
    outcome = chat.finish()
    assert outcome.status_code == 429 and fake.requests == []
    assert statuses(engine) == [429]


def test_an_admitted_call_under_limits_is_answered(setup) -> None:
    engine, user, admin, provider, _ = setup
    set_rule(engine, admin, user_target(user.id), rpm=100, tpm=100_000, budget_usd=10.0)
    outcome = complete_chat(engine, user, provider.id, ask(), CALLER)
    assert outcome.ok and outcome.cost_usd is not None
    assert statuses(engine) == [200]


def test_the_tracker_puts_its_charges_and_cost_on_the_record(setup) -> None:
    engine, user, admin, provider, _ = setup
    set_rule(engine, admin, user_target(user.id), tpm=1000, budget_usd=10.0)
    with transaction(engine) as session:
        prepared = prepare_call(session, session.get(User, user.id), provider.id, ask())
        rules = rules_for_call(session, user.id, None, provider.id)
    charges = Charges(rate_keys=(user_target(user.id),), window=1, budgets=())
    tracker = CallTracker(prepared, CALLER, time.perf_counter(), None, charges)
    tracker.answered(ChatResult("pong", 1000, 500, 1500, True, "stop", "test-model"))
    record, outcome = tracker.finished()
    assert record.charges is charges
    assert record.cost_usd == outcome.cost_usd == pytest.approx((1000 * 2 + 500 * 8) / 1e6)
    assert [rule.target for rule in rules] == [user_target(user.id)]
    unpriced = CallTracker(prepared, CALLER, time.perf_counter())
    unpriced.answered(ChatResult("pong", None, None, None, False, "stop", "test-model"))
    record, _ = unpriced.finished()
    assert record.charges is None and record.cost_usd is None


def test_no_rule_means_no_check(setup) -> None:
    engine, user, _, provider, _ = setup
    with transaction(engine) as session:
        assert rules_for_call(session, user.id, None, provider.id) == ()
        assert session.scalar(select(func.count()).select_from(BudgetSpend)) == 0
    assert complete_chat(engine, user, provider.id, ask(), CALLER).ok


def test_a_calls_tokens_count_against_its_budget_when_it_is_logged(setup) -> None:
    engine, user, admin, provider, _ = setup
    set_rule(engine, admin, user_target(user.id), budget_tokens=10, period="day", timezone="Asia/Kolkata")
    chat = StreamingChat(engine, user, provider.id, ask(stream=True), CALLER)
    try:
        assert "".join(chat.chunks()) == expected_answer("ping")  # admitted: nothing spent yet
    finally:
        first = chat.finish()
    assert first.ok
    with transaction(engine) as session:
        spend = session.get(BudgetSpend, (user_target(user.id), period_window("day", "Asia/Kolkata").key))
        assert spend is not None and spend.tokens == first.total_tokens
    refused = complete_chat(engine, user, provider.id, ask(), CALLER)
    assert refused.status_code == 429 and "tokens" in refused.error and "Asia/Kolkata" in refused.error
    assert statuses(engine) == [200, 429]
