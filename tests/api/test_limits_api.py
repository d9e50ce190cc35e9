"""Budgets and rate limits through the real API (uvicorn, both databases, the fake providers): OpenAI's
headers on every answer of an admitted call, OpenAI's 429 body and retry-after on a refusal, one Logs
row per refusal, the official SDK's RateLimitError, a refused stream, and an admin's change to a rule
applying at the very next call (the admission fingerprint)."""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import pytest
from sqlalchemy import Engine

from mindroute.db import transaction
from mindroute.models import BudgetSpend, User
from mindroute.services import admission, limit_admin
from mindroute.services.limit_rules import LimitSettings, key_target, period_window, user_target
from tests.api.conftest import add_account, add_provider, logged
from tests.api.test_refusals import chat, post
from tests.pages.helpers import add_user
from tests.providers.conftest import make_target
from tests.providers.fake_base import COMPLETION_TOKENS, OPENAI_KEY, PROMPT_TOKENS
from tests.providers.fake_embeddings import FakeOpenAIEmbeddings
from tests.providers.fakes import FakeServer

HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


def set_rule(engine: Engine, admin_id: uuid.UUID, target: str, **settings: object) -> None:
    with transaction(engine) as session:
        limit_admin.set_limit(session, session.get(User, admin_id), target, LimitSettings(**settings))


def spent(engine: Engine, target: str, *, usd: float = 0.0, tokens: int = 0, period: str = "month") -> None:
    """`target` has already spent this much in the current period (as the Logs writer would have counted it)."""
    with transaction(engine) as session:
        key = period_window(period, "UTC").key
        session.merge(BudgetSpend(target=target, period_key=key, spent_usd=usd, tokens=tokens))


def fresh_minute(margin_s: float = 5.0) -> None:
    """Start a sequence of calls early enough in a minute that it does not cross into the next one."""
    into = time.time() % 60
    if into > 60 - margin_s:
        time.sleep(60 - into + 0.2)


@pytest.fixture
def world(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    provider_id = add_provider(
        engine, "Fake", "openai", target.server, target.key, ["test-model", "error-500"], grant_to=account.user_id
    )
    admin = add_user(engine, "admin@example.com", role="admin")
    return account, provider_id, admin.id


def assert_limited(response: httpx.Response, code: str, error_type: str) -> dict:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["code"], error["type"], error["param"]) == (code, error_type, None)
    assert error["message"]
    assert int(response.headers["retry-after"]) >= 0
    return error


def test_rpm_2_on_a_key_admits_two_calls_with_their_headers_and_refuses_the_third(engine, server, world):
    account, _, admin_id = world
    set_rule(engine, admin_id, key_target(account.key_id), rpm=2)
    fresh_minute()
    answers = [post(server, account.key, chat("Fake/test-model")) for _ in range(2)]
    assert [answer.status_code for answer in answers] == [200, 200], answers[1].text
    for answer in answers:
        assert answer.headers["x-ratelimit-limit-requests"] == "2"
        assert answer.headers["x-ratelimit-reset-requests"]
    assert [answer.headers["x-ratelimit-remaining-requests"] for answer in answers] == ["1", "0"]
    third = post(server, account.key, chat("Fake/test-model"))
    error = assert_limited(third, "rate_limit_exceeded", "requests")
    assert 0 <= int(third.headers["retry-after"]) <= 60
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    rows = logged(engine, 3)
    assert [row.status_code for row in rows] == [200, 200, 429]
    assert rows[2].error_message == error["message"]
    assert rows[2].request_body["api_key_id"] == str(account.key_id)


def test_the_openai_sdk_sees_a_rate_limit_error(engine, server, world):
    account, _, admin_id = world
    set_rule(engine, admin_id, user_target(account.user_id), rpm=1)
    fresh_minute()
    api = openai.OpenAI(base_url=server.url + "/v1", api_key=account.key, max_retries=0, timeout=20)
    raw = api.chat.completions.with_raw_response.create(
        model="Fake/test-model", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    assert raw.parse().choices[0].message.content
    with pytest.raises(openai.RateLimitError) as caught:
        api.chat.completions.create(model="Fake/test-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"]
    assert [row.status_code for row in logged(engine, 2)] == [200, 429]


def test_a_spent_budget_is_refused_with_insufficient_quota(engine, server, world):
    account, _, admin_id = world
    set_rule(engine, admin_id, user_target(account.user_id), budget_tokens=1_000, period="month")
    spent(engine, user_target(account.user_id), tokens=1_000)
    response = post(server, account.key, chat("Fake/test-model"))
    error = assert_limited(response, "insufficient_quota", "insufficient_quota")
    [row] = logged(engine, 1)
    assert (row.status_code, row.error_message) == (429, error["message"])


def test_a_stream_refused_for_a_spent_budget_is_a_429_json_answer_not_sse(engine, server, world):
    account, _, admin_id = world
    set_rule(engine, admin_id, key_target(account.key_id), budget_usd=5.0, period="day")
    spent(engine, key_target(account.key_id), usd=5.0, period="day")
    response = post(server, account.key, chat("Fake/test-model", stream=True))
    assert_limited(response, "insufficient_quota", "insufficient_quota")
    assert "data:" not in response.text
    [row] = logged(engine, 1)
    assert row.status_code == 429


def test_an_admitted_stream_carries_the_headers(engine, server, world):
    account, _, admin_id = world
    set_rule(engine, admin_id, key_target(account.key_id), rpm=50, tpm=100_000)
    fresh_minute()
    response = post(server, account.key, chat("Fake/test-model", stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.rstrip().endswith("data: [DONE]")
    for name in HEADERS:
        assert response.headers[name], name
    assert response.headers["x-ratelimit-limit-requests"] == "50"
    assert response.headers["x-ratelimit-limit-tokens"] == "100000"
    assert [row.status_code for row in logged(engine, 1)] == [200]


def test_without_rules_no_ratelimit_headers_are_sent(engine, server, world):
    account, _, _ = world
    response = post(server, account.key, chat("Fake/test-model"))
    assert response.status_code == 200
    assert not any(name.startswith("x-ratelimit-") for name in response.headers)


def test_an_admins_change_to_a_rule_applies_at_the_next_call(engine, server, world):
    account, _, admin_id = world
    fresh_minute(margin_s=8)
    assert post(server, account.key, chat("Fake/test-model")).status_code == 200  # routed and remembered, no rule
    set_rule(engine, admin_id, key_target(account.key_id), rpm=1)  # the remembered route has no rules: re-routed
    assert post(server, account.key, chat("Fake/test-model")).status_code == 200
    assert_limited(post(server, account.key, chat("Fake/test-model")), "rate_limit_exceeded", "requests")
    set_rule(engine, admin_id, key_target(account.key_id), rpm=5)  # raised: the next call goes
    raised = post(server, account.key, chat("Fake/test-model"))
    assert raised.status_code == 200, raised.text
    assert raised.headers["x-ratelimit-limit-requests"] == "5"
    set_rule(engine, admin_id, key_target(account.key_id))  # removed: no limit, no headers
    cleared = post(server, account.key, chat("Fake/test-model"))
    assert cleared.status_code == 200
    assert "x-ratelimit-limit-requests" not in cleared.headers
    assert [row.status_code for row in logged(engine, 5)] == [200, 200, 429, 200, 200]


def test_a_key_owners_tighter_rule_wins(engine, server, world):
    account, _, admin_id = world
    set_rule(engine, admin_id, key_target(account.key_id), rpm=10)
    with transaction(engine) as session:
        owner = session.get(User, account.user_id)
        limit_admin.set_limit(session, owner, key_target(account.key_id, owner=True), LimitSettings(rpm=1))
    fresh_minute()
    first = post(server, account.key, chat("Fake/test-model"))
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert_limited(post(server, account.key, chat("Fake/test-model")), "rate_limit_exceeded", "requests")


@pytest.fixture(scope="module")
def text_server():
    running = FakeServer(FakeOpenAIEmbeddings()).start()
    yield running
    running.stop()


@pytest.mark.parametrize("route", ["embeddings", "completions"])
def test_embeddings_and_completions_carry_the_headers_and_are_refused_alike(engine, server, text_server, route):
    account = add_account(engine)
    admin = add_user(engine, "admin@example.com", role="admin")
    model = "embed-small" if route == "embeddings" else "text-model"
    add_provider(engine, "Text", "openai", text_server, OPENAI_KEY, [model], grant_to=account.user_id)
    set_rule(engine, admin.id, key_target(account.key_id), rpm=1)
    body = {"model": f"Text/{model}", "input" if route == "embeddings" else "prompt": "hello"}
    fresh_minute()

    def call() -> httpx.Response:
        return httpx.post(
            f"{server.url}/v1/{route}", json=body, headers={"authorization": f"Bearer {account.key}"}, timeout=20
        )

    first = call()
    assert first.status_code == 200, first.text
    assert (first.headers["x-ratelimit-limit-requests"], first.headers["x-ratelimit-remaining-requests"]) == ("1", "0")
    assert_limited(call(), "rate_limit_exceeded", "requests")
    rows = logged(engine, 2)
    assert [row.status_code for row in rows] == [200, 429]
    assert {row.request_type for row in rows} == {"embedding" if route == "embeddings" else "completion"}


def test_a_stream_admitted_under_its_budget_finishes_past_it_and_the_next_call_is_refused(engine, server, world):
    account, _, admin_id = world
    set_rule(engine, admin_id, key_target(account.key_id), budget_tokens=10, period="month")
    streamed = post(server, account.key, chat("Fake/test-model", stream=True, stream_options={"include_usage": True}))
    assert streamed.status_code == 200
    assert streamed.text.rstrip().endswith("data: [DONE]")  # finished, though its 22 tokens are over the 10
    [row] = logged(engine, 1)
    assert row.tokens_used == PROMPT_TOKENS + COMPLETION_TOKENS
    with transaction(engine) as session:
        spend = session.get(BudgetSpend, (key_target(account.key_id), period_window("month", "UTC").key))
        assert spend is not None and spend.tokens == PROMPT_TOKENS + COMPLETION_TOKENS
    refused = post(server, account.key, chat("Fake/test-model"))
    assert "22 of 10 tokens" in assert_limited(refused, "insufficient_quota", "insufficient_quota")["message"]
    assert [row.status_code for row in logged(engine, 2)] == [200, 429]


def test_tokens_per_minute_count_at_the_calls_end(engine, server, world):
    account, _, admin_id = world
    set_rule(engine, admin_id, user_target(account.user_id), tpm=10)
    fresh_minute()
    first = post(server, account.key, chat("Fake/test-model"))
    assert first.status_code == 200
    assert (first.headers["x-ratelimit-limit-tokens"], first.headers["x-ratelimit-remaining-tokens"]) == ("10", "10")
    logged(engine, 1)  # its tokens are counted with its Logs row
    assert_limited(post(server, account.key, chat("Fake/test-model")), "rate_limit_exceeded", "tokens")


def test_a_route_with_rules_is_remembered_until_a_rule_changes(engine, server, world, monkeypatch):
    account, _, admin_id = world
    set_rule(engine, admin_id, key_target(account.key_id), rpm=1000, budget_usd=100.0)
    set_rule(engine, admin_id, user_target(account.user_id), tpm=1_000_000)
    routed: list[str] = []
    resolve = admission._resolve

    def counted(*args: object) -> object:
        routed.append("route")
        return resolve(*args)  # the real routing, counted

    monkeypatch.setattr(admission, "_resolve", counted)
    for _ in range(3):
        assert post(server, account.key, chat("Fake/test-model")).status_code == 200
    assert routed == ["route"]  # the rules came with the route, once; the per-call read stays one query
    logged(engine, 3)  # the Logs writer's spend and token counts change no rule
    assert post(server, account.key, chat("Fake/test-model")).status_code == 200
    assert routed == ["route"]
    set_rule(engine, admin_id, user_target(account.user_id), tpm=2_000_000)
    assert post(server, account.key, chat("Fake/test-model")).headers["x-ratelimit-limit-tokens"] == "2000000"
    assert routed == ["route", "route"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_failure_of_an_admitted_call_carries_the_headers(engine, server, world, stream):
    account, _, admin_id = world
    set_rule(engine, admin_id, key_target(account.key_id), rpm=10)
    fresh_minute()
    failed = post(server, account.key, chat("Fake/error-500", stream=stream))
    assert failed.status_code == 502, failed.text
    assert failed.json()["error"]["code"] == "upstream_error"
    assert failed.headers["x-ratelimit-limit-requests"] == "10"
    assert failed.headers["x-ratelimit-remaining-requests"] == "9"
    assert [row.status_code for row in logged(engine, 1)] == [502]
