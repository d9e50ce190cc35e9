"""POST /v1/completions with the official openai client: passed through to OpenAI-protocol providers,
whole and streamed (usage forced on upstream, shown only when asked), refused for other protocols;
one Logs row each with request_type "completion"."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.api.conftest import add_account, add_provider, logged
from tests.providers.fake_base import OPENAI_KEY
from tests.providers.fake_embeddings import (
    BROKEN_MODEL,
    SLOW_MODEL,
    SPLIT_MODEL,
    FakeOpenAIEmbeddings,
    completion_text,
    token_count,
)
from tests.providers.fakes import FakeServer

MODELS = ["text-model", "other-model"]
COMPLETION_TOKENS = 4


@pytest.fixture(scope="module")
def completions_server() -> Iterator[FakeServer]:
    running = FakeServer(FakeOpenAIEmbeddings()).start()
    yield running
    running.stop()


@pytest.fixture
def world(engine, completions_server):
    account = add_account(engine)
    completions_server.fake.reset()
    add_provider(engine, "Text", "openai", completions_server, OPENAI_KEY, MODELS, grant_to=account.user_id)
    return account, completions_server.fake


def client(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=20)


def test_a_whole_completion_is_passed_through(engine, server, world):
    account, fake = world
    answer = client(server, account.key).completions.create(
        model="Text/text-model", prompt="tell me", max_tokens=50, temperature=0.5, seed=7
    )
    assert answer.choices[0].text == completion_text("tell me")
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == "Text/text-model"
    assert answer.usage.prompt_tokens == 2
    # The body as sent, but for the routed model.
    assert fake.last.body == {
        "model": "text-model",
        "prompt": "tell me",
        "max_tokens": 50,
        "temperature": 0.5,
        "seed": 7,
    }
    (row,) = logged(engine, 1)
    assert row.request_type == "completion"
    assert row.status_code == 200
    assert (row.prompt_tokens, row.completion_tokens) == (2, COMPLETION_TOKENS)
    assert row.request_body["prompt"] == "tell me" and row.request_body["max_tokens"] == 50
    assert row.response_body["text"] == completion_text("tell me")


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_streamed_completion_is_relayed_with_usage_only_when_asked(engine, server, world, include_usage):
    account, fake = world
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        client(server, account.key).completions.create(model="Text/text-model", prompt="go on", stream=True, **options)
    )
    # Forced on upstream whatever the client asked, so that the Logs row has the counts.
    assert fake.last.body["stream_options"] == {"include_usage": True}
    assert fake.last.body["stream"] is True
    texts = [chunk.choices[0].text for chunk in chunks if chunk.choices]
    assert len(texts) >= 3
    assert "".join(texts) == completion_text("go on")
    assert {chunk.model for chunk in chunks} == {"Text/text-model"}
    usage_chunks = [chunk for chunk in chunks if chunk.usage is not None]
    if include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0].choices == []
        assert usage_chunks[0].usage.prompt_tokens == token_count("go on")
    else:
        assert usage_chunks == [] and all(chunk.choices for chunk in chunks)
    (row,) = logged(engine, 1)
    assert row.request_type == "completion" and row.status_code == 200
    assert (row.prompt_tokens, row.completion_tokens) == (token_count("go on"), COMPLETION_TOKENS)
    assert row.response_body["text"] == completion_text("go on")
    assert row.response_body["finish_reason"] == "stop"


def test_the_raw_stream_ends_with_done(engine, server, world):
    account, _ = world
    with httpx.stream(
        "POST",
        f"{server.url}/v1/completions",
        json={"model": "Text/text-model", "prompt": "x", "stream": True},
        headers={"authorization": f"Bearer {account.key}"},
        timeout=20,
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in answer.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert not any('"usage"' in line for line in lines)
    logged(engine, 1)


def test_other_protocols_are_told_to_use_chat_completions(engine, server, anthropic_server, google_server):
    account = add_account(engine)
    add_provider(engine, "Claude", "anthropic", anthropic_server, "sk-ant-x", ["claude-x"], grant_to=account.user_id)
    add_provider(engine, "Gem", "google", google_server, "AIza-x", ["gemini-x"], grant_to=account.user_id)
    anthropic_server.fake.reset()
    google_server.fake.reset()
    api = client(server, account.key)
    for model in ("Claude/claude-x", "Gem/gemini-x"):
        with pytest.raises(openai.BadRequestError) as caught:
            api.completions.create(model=model, prompt="x")
        assert caught.value.body["param"] == "model"
        assert "/v1/chat/completions" in caught.value.body["message"]
    assert anthropic_server.fake.requests == [] and google_server.fake.requests == []
    rows = logged(engine, 2)
    assert [(row.request_type, row.status_code) for row in rows] == [("completion", 400)] * 2


def test_refusals_and_upstream_errors_are_logged(engine, server, world):
    account, fake = world
    with pytest.raises(openai.AuthenticationError):
        client(server, "mr-not-a-key").completions.create(model="Text/text-model", prompt="x")
    with pytest.raises(openai.NotFoundError):
        client(server, account.key).completions.create(model="Text/no-such-model", prompt="x")
    # The provider refuses a field it does not have: its 400 is relayed, with its message.
    with pytest.raises(openai.BadRequestError) as caught:
        client(server, account.key).completions.create(model="Text/text-model", prompt="x", extra_body={"bogus": 1})
    assert "bogus" in caught.value.body["message"]
    assert fake.last.body["bogus"] == 1
    rows = logged(engine, 3)
    assert [(row.request_type, row.status_code) for row in rows] == [
        ("completion", 401),
        ("completion", 404),
        ("completion", 400),
    ]


def test_the_routes_token_limit_applies(engine, server, completions_server):
    account = add_account(engine)
    completions_server.fake.reset()
    add_provider(engine, "Capped", "openai", completions_server, OPENAI_KEY, MODELS, grant_to=account.user_id,
                 grant={"max_tokens_override": 100})  # fmt: skip
    api = client(server, account.key)
    with pytest.raises(openai.BadRequestError) as caught:
        api.completions.create(model="Capped/text-model", prompt="x", max_tokens=101)
    assert caught.value.body["param"] == "max_tokens"
    assert completions_server.fake.requests == []
    api.completions.create(model="Capped/text-model", prompt="x")
    assert completions_server.fake.last.body["max_tokens"] == 100  # filled in, as for chat
    rows = logged(engine, 2)
    assert [row.status_code for row in rows] == [400, 200]


def test_a_client_leaving_a_stream_is_logged_once_and_closes_upstream(engine, server, completions_server):
    account = add_account(engine)
    completions_server.fake.reset()
    add_provider(engine, "Slow", "openai", completions_server, OPENAI_KEY, [SLOW_MODEL], grant_to=account.user_id)
    stream = client(server, account.key).completions.create(model="Slow/slow-model", prompt="x", stream=True)
    first = next(iter(stream))
    assert first.choices[0].text == "Once"
    stream.close()
    upstream = completions_server.fake.last
    assert upstream.disconnected.wait(10), "the provider's stream was not closed"
    (row,) = logged(engine, 1)
    assert row.status_code == 499 and row.request_type == "completion"
    assert row.response_body["stopped_by_user"] is True
    assert row.response_body["text"].startswith("Once")


def test_a_stream_that_breaks_ends_with_an_error_event(engine, server, completions_server):
    account = add_account(engine)
    completions_server.fake.reset()
    add_provider(engine, "Broken", "openai", completions_server, OPENAI_KEY, [BROKEN_MODEL], grant_to=account.user_id)
    with httpx.stream(
        "POST",
        f"{server.url}/v1/completions",
        json={"model": "Broken/broken-model", "prompt": "x", "stream": True},
        headers={"authorization": f"Bearer {account.key}"},
        timeout=20,
    ) as answer:
        assert answer.status_code == 200
        events = [line.removeprefix("data: ") for line in answer.iter_lines() if line]
    assert [json.loads(e)["choices"][0]["text"] for e in events[:2]] == ["Once", " upon"]
    assert json.loads(events[2])["error"]["message"] and events[3] == "[DONE]"
    (row,) = logged(engine, 1)
    assert row.status_code == 502 and row.request_type == "completion"
    assert row.response_body["text"] == "Once upon"


def test_a_provider_key_split_across_two_streamed_chunks_never_reaches_the_client(engine, server, completions_server):
    account = add_account(engine)
    add_provider(engine, "Text", "openai", completions_server, OPENAI_KEY, [SPLIT_MODEL], grant_to=account.user_id)
    pieces = client(server, account.key).completions.create(
        model=f"Text/{SPLIT_MODEL}", prompt=f"key {OPENAI_KEY} end", stream=True
    )
    text = "".join(c.choices[0].text for c in pieces if c.choices)
    assert OPENAI_KEY[:12] not in text and OPENAI_KEY[-12:] not in text
    assert text == completion_text("key [redacted] end")
    (row,) = logged(engine, 1)
    assert row.response_body["text"] == text
