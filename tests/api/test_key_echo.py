"""An upstream that repeats provider keys back (its own, and another stored provider's) in whole
answers, in streams that split them across chunks, and in errors: neither the API's caller (the
openai client, raw HTTP), nor the playground's service, nor any Logs row ever holds one. Issue 13,
item 9; on both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from mindroute import redaction
from mindroute.db import transaction
from mindroute.models import Log, User
from mindroute.providers.shapes import ChatMessage, ChatRequest
from mindroute.services.call_tracker import Caller
from mindroute.services.chat import StreamingChat, complete_chat
from tests.api.conftest import add_account, add_provider, log_rows, logged, wait_for
from tests.providers.fakes import FakeOpenAI, FakeServer, Reply, sse

# Not shaped like any known key (no sk-, AIza, bearer): only exact-value redaction finds them.
OWN_KEY = "Zq7xLm2Pv9Rt4Wk8Hn3Bc6Dy5Fj1Gs0"
OTHER_KEY = "pQ8rT2vW6yZ0bC4eG8iK2mO6qS0uW4xx"
SECRETS = (OWN_KEY, OTHER_KEY)
REDACTED = "[redacted]"
LEAK = f"Your key is {REDACTED}, and the other one {REDACTED}."
MODELS = ["leak", "leak-chars", "leak-error", "leak-stream-error", "leak-cut", "test-model"]


class LeakyOpenAI(FakeOpenAI):
    """An OpenAI-compatible upstream behind a proxy that repeats keys: the one it was called with, and
    `other` (as if it knew the organisation's other keys)."""

    other = OTHER_KEY

    def __init__(self) -> None:
        super().__init__(key=OWN_KEY)

    def leak_text(self, given: str) -> str:
        return f"Your key is {given}, and the other one {self.other}."

    def scenario(self, model: str, given_key: str, stream: bool) -> Reply | None:
        text = self.leak_text(given_key)
        if model == "leak-error":
            return self.error(500, f"upstream rejected {given_key} and {self.other}", "server_error")
        if not model.startswith("leak"):
            return None
        if not stream:
            return Reply(
                json_body={
                    "id": "chatcmpl-leak",
                    "object": "chat.completion",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                }
            )
        if model == "leak-chars":
            pieces = list(text)  # every key split at every character
        elif model == "leak-cut":  # the answer stops (max tokens) half-way through the key
            pieces = ["Your key is ", given_key[:9], given_key[9:20]]
        else:
            pieces = [
                "Your key is ",
                given_key[:5],
                given_key[5:17],
                given_key[17:],
                ", and the other one ",
                self.other[:1],
                self.other[1:],
                ".",
            ]
        events = self.stream_events(model, pieces, False)
        if model == "leak-stream-error":
            error = {"error": {"message": f"stream broke for {given_key} / {self.other}", "type": "server_error"}}
            events = [*events[:-2], sse(error)]  # the pieces, then an error instead of the end
        return Reply(events=events)


@pytest.fixture(scope="module")
def leaky_server() -> Iterator[FakeServer]:
    server = FakeServer(LeakyOpenAI()).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_snapshot():
    redaction.forget_stored_keys()
    yield
    redaction.forget_stored_keys()


def assert_clean(text: str) -> None:
    """No key, and no 12 characters of one in a row."""
    for secret in SECRETS:
        for i in range(len(secret) - 11):
            assert secret[i : i + 12] not in text, f"a piece of a provider key got out: {text[:300]!r}"


def assert_rows_clean(rows: list[Log]) -> None:
    for row in rows:
        stored = json.dumps(
            [row.request_body, row.response_body, row.error_message, row.user_agent, row.model_id], default=str
        )
        assert_clean(stored)


@pytest.fixture
def leaky_world(engine, leaky_server):
    """A user granted the leaky provider; another provider, not granted, holds OTHER_KEY."""
    leaky_server.fake.reset()
    account = add_account(engine)
    add_provider(engine, "Leaky", "openai-compatible", leaky_server, OWN_KEY, MODELS, grant_to=account.user_id)
    add_provider(engine, "Other", "openai", leaky_server, OTHER_KEY, ["test-model"])
    return account


def client_for(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=20)


def post(server, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=20
    )


def body(model: str, text: str = "hi", **options: Any) -> dict[str, Any]:
    return {"model": f"Leaky/{model}", "messages": [{"role": "user", "content": text}], **options}


# --- the API -------------------------------------------------------------------------------------


def test_a_whole_answer_echoing_keys_reaches_neither_the_caller_nor_the_log(engine, server, leaky_world):
    completion = client_for(server, leaky_world.key).chat.completions.create(
        model="Leaky/leak", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == LEAK
    raw = post(server, leaky_world.key, body("leak"))
    assert raw.status_code == 200
    assert_clean(raw.text)
    rows = logged(engine, 2)
    assert [r.response_body["text"] for r in rows] == [LEAK, LEAK]
    assert_rows_clean(rows)


@pytest.mark.parametrize("model", ["leak", "leak-chars"])
def test_a_stream_splitting_keys_across_chunks_never_sends_a_piece_of_one(engine, server, leaky_world, model):
    stream = client_for(server, leaky_world.key).chat.completions.create(
        model=f"Leaky/{model}", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == LEAK
    for piece in pieces:
        assert_clean(piece)
    with (
        httpx.Client(timeout=20) as client,
        client.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            json=body(model, stream=True),
            headers={"authorization": f"Bearer {leaky_world.key}"},
        ) as response,
    ):
        assert response.status_code == 200
        assert_clean("".join(response.iter_text()))  # the bytes on the wire, JSON and all
    rows = logged(engine, 2)
    assert [r.response_body["text"] for r in rows] == [LEAK, LEAK]
    assert_rows_clean(rows)


def test_a_stream_cut_off_inside_a_key_does_not_send_its_beginning(engine, server, leaky_world):
    stream = client_for(server, leaky_world.key).chat.completions.create(
        model="Leaky/leak-cut", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == f"Your key is {REDACTED}"
    [row] = logged(engine, 1)
    assert row.response_body["text"] == f"Your key is {REDACTED}"
    assert_rows_clean([row])


def test_an_error_echoing_keys_is_redacted_for_the_caller_and_the_log(engine, server, leaky_world):
    response = post(server, leaky_world.key, body("leak-error"))
    assert response.status_code == 502
    assert response.json()["error"]["message"] == f"upstream rejected {REDACTED} and {REDACTED}"
    assert_clean(response.text)
    with pytest.raises(openai.APIStatusError) as raised:
        client_for(server, leaky_world.key).chat.completions.create(
            model="Leaky/leak-error", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert_clean(str(raised.value))
    rows = logged(engine, 2)
    assert {r.status_code for r in rows} == {502}
    assert all(REDACTED in r.error_message for r in rows)
    assert_rows_clean(rows)


def test_an_error_event_mid_stream_is_redacted(engine, server, leaky_world):
    response = post(server, leaky_world.key, body("leak-stream-error", stream=True))
    assert response.status_code == 200
    assert_clean(response.text)
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[-2])["error"]["message"] == f"stream broke for {REDACTED} / {REDACTED}"
    [row] = logged(engine, 1)
    assert row.status_code == 502
    assert row.response_body["text"] == LEAK
    assert_rows_clean([row])


def test_a_key_pasted_into_a_prompt_stays_out_of_the_answer_and_the_log(engine, server, leaky_world):
    prompt = f"is {OTHER_KEY} a valid key?"
    completion = client_for(server, leaky_world.key).chat.completions.create(
        model="Leaky/test-model", messages=[{"role": "user", "content": prompt}], user=f"agent {OWN_KEY}"
    )
    assert completion.choices[0].message.content.endswith(f"You said: is {REDACTED} a valid key?")
    # Refused before any upstream call (a provider the user was not granted), with the key in the prompt.
    refused = post(server, leaky_world.key, {**body("nope", prompt), "model": "Other/test-model"})
    assert refused.status_code in (403, 404)
    unknown = post(server, leaky_world.key, body(OTHER_KEY))  # a model id that is a key: refused, logged
    assert unknown.status_code == 404
    rows = logged(engine, 3)
    assert rows[0].request_body["messages"][0]["text"] == f"is {REDACTED} a valid key?"
    assert rows[0].request_body["user"] == f"agent {REDACTED}"
    assert_rows_clean(rows)


def test_a_key_changed_by_the_admin_is_redacted_on_the_next_call(engine, server, leaky_world, leaky_server):
    client_for(server, leaky_world.key).chat.completions.create(
        model="Leaky/leak", messages=[{"role": "user", "content": "hi"}]
    )
    new_key = "Nw5kE9yR3tU7iO1pA5sD9fG3hJ7kL1"
    add_provider(engine, "Newer", "openai", leaky_server, new_key, ["test-model"])
    leaky_server.fake.other = new_key
    try:
        completion = client_for(server, leaky_world.key).chat.completions.create(
            model="Leaky/leak", messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        leaky_server.fake.other = OTHER_KEY
    assert completion.choices[0].message.content == LEAK
    assert wait_for(lambda: len(log_rows(engine)) == 2)
    for row in log_rows(engine):
        assert new_key not in json.dumps(row.response_body)


# --- the playground's service -------------------------------------------------------------------


def _user(engine, account) -> User:
    with transaction(engine) as session:
        user = session.get(User, account.user_id)
        session.expunge(user)
        return user


def _provider_id(engine, name: str):
    from sqlalchemy import select

    from mindroute.models import Provider

    with transaction(engine) as session:
        return session.scalar(select(Provider.id).where(Provider.name == name))


def ask(model: str, text: str = "hi") -> ChatRequest:
    return ChatRequest(model=model, messages=[ChatMessage("user", text)])


PLAYGROUND = Caller(source="playground", ip="192.0.2.1", user_agent="pytest")


@pytest.mark.parametrize("model", ["leak", "leak-error"])
def test_the_playground_whole_answer_and_error_are_redacted(engine, leaky_world, model):
    outcome = complete_chat(engine, _user(engine, leaky_world), _provider_id(engine, "Leaky"), ask(model), PLAYGROUND)
    if model == "leak":
        assert outcome.ok and outcome.text == LEAK
    else:
        assert outcome.status_code == 502 and outcome.error == f"upstream rejected {REDACTED} and {REDACTED}"
    assert_clean(outcome.text + (outcome.error or ""))
    assert_rows_clean(log_rows(engine))


@pytest.mark.parametrize("model", ["leak", "leak-chars", "leak-stream-error", "leak-cut"])
def test_the_playground_stream_never_shows_a_piece_of_a_key(engine, leaky_world, model):
    request = ChatRequest(model=model, messages=[ChatMessage("user", "hi")], stream=True)
    call = StreamingChat(engine, _user(engine, leaky_world), _provider_id(engine, "Leaky"), request, PLAYGROUND)
    shown = ""
    try:
        for piece in call.chunks():
            shown += piece
            assert_clean(shown)  # what the page shows at every moment
    finally:
        outcome = call.finish()
    assert shown == (f"Your key is {REDACTED}" if model == "leak-cut" else LEAK)
    assert outcome.text == shown
    assert_clean(outcome.error or "")
    [row] = log_rows(engine)
    assert row.response_body["text"] == shown
    assert_rows_clean([row])
