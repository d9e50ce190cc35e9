"""The chat service end to end: policy, limits, the upstream call and its one Logs row, checked field by field."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from mindroute import security
from mindroute.config import get_settings
from mindroute.db import transaction
from mindroute.models import Log, Provider, User, UserProvider
from mindroute.providers.shapes import Attachment, ChatMessage, ChatRequest
from mindroute.services.call_tracker import Caller
from mindroute.services.chat import StreamingChat, complete_chat
from tests.providers.fakes import (
    ANTHROPIC_KEY,
    COMPLETION_TOKENS,
    GOOGLE_KEY,
    OPENAI_KEY,
    PROMPT_TOKENS,
    expected_answer,
)
from tests.providers.media import PNG_BYTES

PROTOCOLS = {
    "openai": ("openai_server", OPENAI_KEY, True),
    "openai-compatible": ("compatible_server", None, False),
    "anthropic": ("anthropic_server", ANTHROPIC_KEY, True),
    "google": ("google_server", GOOGLE_KEY, True),
}
CALLER = Caller(source="playground", ip="192.0.2.10", user_agent="pytest-browser")


@pytest.fixture(params=list(PROTOCOLS))
def setup(request, engine):
    """A user granted one provider of each protocol, pointed at its fake server."""
    protocol = request.param
    fixture, key, reports_usage = PROTOCOLS[protocol]
    server = request.getfixturevalue(fixture)
    endpoint = server.url + "/v1" if protocol.startswith("openai") else server.url
    box = security.SecretBox(get_settings().secret_keys)
    with transaction(engine) as session:
        user = User(email="u@example.com", name="U", password="x")
        provider = Provider(
            name=f"Fake {protocol}",
            protocol=protocol,
            endpoint_url=endpoint,
            api_key=box.encrypt(key) if key else None,
            allow_images=True,
            max_tokens=500,
            settings={"models": [], "default_model": None, "prices": {"test-model": {"input": 2.0, "output": 8.0}}},
        )
        session.add_all([user, provider])
        session.flush()
        session.add(UserProvider(user_id=user.id, provider_id=provider.id, allowed=True))
    return engine, user, provider, reports_usage, key


def ask(text: str, model: str = "test-model", **options) -> ChatRequest:
    return ChatRequest(model=model, messages=[ChatMessage("user", text)], **options)


def the_log(engine) -> Log:
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Log)) == 1  # exactly one row per call
        return session.scalar(select(Log))


def test_complete_logs_one_row_with_the_providers_counts(setup) -> None:
    engine, user, provider, reports_usage, key = setup
    outcome = complete_chat(engine, user, provider.id, ask("ping", max_tokens=100), CALLER)
    assert outcome.ok and outcome.text == expected_answer("ping")
    row = the_log(engine)
    assert (row.user_id, row.provider_id, row.model_id, row.request_type) == (
        user.id,
        provider.id,
        "test-model",
        "chat",
    )
    assert (row.status_code, row.ip, row.user_agent) == (200, "192.0.2.10", "pytest-browser")
    assert row.request_body["messages"] == [{"role": "user", "text": "ping"}]
    assert row.response_body["text"] == expected_answer("ping")
    if reports_usage:
        assert (row.prompt_tokens, row.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
        assert row.tokens_used == PROMPT_TOKENS + COMPLETION_TOKENS
        assert outcome.cost_usd == pytest.approx((PROMPT_TOKENS * 2 + COMPLETION_TOKENS * 8) / 1e6)
    else:
        assert (row.prompt_tokens, row.completion_tokens, row.tokens_used) == (None, None, None)
        assert row.response_body["usage"]["reported"] is False and outcome.cost_usd is None
    assert row.duration is not None and row.duration >= 0
    if key:
        assert key not in str(row.request_body) + str(row.response_body)


def test_stream_logs_text_usage_and_time_to_first_token(setup) -> None:
    engine, user, provider, reports_usage, _ = setup
    call = StreamingChat(engine, user, provider.id, ask("stream me", stream=True), CALLER)
    try:
        pieces = list(call.chunks())
    finally:
        outcome = call.finish()
    assert "".join(pieces) == expected_answer("stream me") == outcome.text
    row = the_log(engine)
    assert row.status_code == 200 and row.response_body["time_to_first_token_ms"] is not None
    assert (row.prompt_tokens is not None) == reports_usage


def test_image_is_sent_and_logged_by_description_only(setup) -> None:
    engine, user, provider, _, _ = setup
    image = Attachment(kind="image", mime_type="image/png", data=PNG_BYTES, filename="dot.png")
    request = ChatRequest(model="test-model", messages=[ChatMessage("user", "what is it?", [image])])
    outcome = complete_chat(engine, user, provider.id, request, CALLER)
    assert outcome.ok, outcome.error
    row = the_log(engine)
    assert row.request_body["messages"][0]["attachments"] == [
        {"name": "dot.png", "type": "image/png", "size": len(PNG_BYTES)}
    ]
    assert "base64" not in str(row.request_body) and "data:" not in str(row.request_body)


def test_media_policy_refuses_before_the_upstream_call(setup, request) -> None:
    engine, user, provider, _, _ = setup
    with transaction(engine) as session:
        session.get(Provider, provider.id).allow_images = False
    server = request.getfixturevalue(PROTOCOLS[provider.protocol][0])
    server.fake.reset()
    image = Attachment(kind="image", mime_type="image/png", data=PNG_BYTES, filename="dot.png")
    outcome = complete_chat(
        engine, user, provider.id, ChatRequest("test-model", [ChatMessage("user", "x", [image])]), CALLER
    )
    assert outcome.status_code == 400 and "image" in outcome.error.lower()
    assert server.fake.requests == []  # nothing went upstream
    row = the_log(engine)
    assert row.status_code == 400 and row.error_message == outcome.error


@pytest.mark.parametrize(
    "model,status",
    [("error-404", 404), ("error-429", 429), ("error-500", 502), ("malformed", 502)],
)
def test_upstream_errors_are_logged_with_the_providers_message(setup, model, status) -> None:
    engine, user, provider, _, key = setup
    outcome = complete_chat(engine, user, provider.id, ask("x", model=model), CALLER)
    assert outcome.status_code == status and outcome.error
    row = the_log(engine)
    assert (row.status_code, row.error_message, row.model_id) == (status, outcome.error, model)
    if key:
        assert key not in row.error_message
    if status == 429:
        assert outcome.retry_after is not None


def test_refusals_are_logged_too(setup) -> None:
    engine, user, provider, _, _ = setup
    over = complete_chat(engine, user, provider.id, ask("x", max_tokens=501), CALLER)
    assert over.status_code == 400 and "limit of 500" in over.error
    with transaction(engine) as session:
        session.execute(UserProvider.__table__.update().values(allowed=False))
    denied = complete_chat(engine, user, provider.id, ask("x"), CALLER)
    assert denied.status_code == 403 and "turned off" in denied.error
    with transaction(engine) as session:
        rows = session.scalars(select(Log).order_by(Log.created_at)).all()
    assert [r.status_code for r in rows] == [400, 403]


def test_stopping_a_stream_midway_logs_the_partial_answer_and_closes_upstream(setup, request) -> None:
    engine, user, provider, _, _ = setup
    fake = request.getfixturevalue(PROTOCOLS[provider.protocol][0]).fake
    fake.reset()
    call = StreamingChat(engine, user, provider.id, ask("x", model="endless", stream=True), CALLER)
    chunks = call.chunks()
    received = [next(chunks) for _ in range(3)]
    outcome = call.finish()  # what the page does when the user presses Stop
    assert outcome.stopped_by_user and outcome.status_code == 499
    assert outcome.text.startswith("".join(received))
    row = the_log(engine)
    assert row.status_code == 499 and row.response_body["stopped_by_user"] is True
    assert row.response_body["text"] == outcome.text
    assert fake.last.disconnected.wait(5)  # the provider saw the client go away


def test_two_concurrent_calls_write_two_rows(setup) -> None:
    engine, user, provider, _, _ = setup
    outcomes = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(complete_chat(engine, user, provider.id, ask("a"), CALLER)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    time.sleep(0.05)
    assert [o.ok for o in outcomes] == [True, True]
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Log)) == 2
