"""Large request bodies against the real API (issue #13 item 10): too many messages are a quick 400
naming `messages`, a big body is parsed off the event loop so other calls go on, and every call
keeps its one capped Logs row, on both databases."""

from __future__ import annotations

import json
import threading
import time

import pytest

from mindroute import config, redaction
from mindroute.http.chat_request import parse_chat_request, parse_off_loop
from mindroute.providers.shapes import ChatMessage, ChatRequest
from mindroute.redaction import redact_secrets
from mindroute.services import call_log
from tests.api.conftest import add_account, add_provider, logged
from tests.api.test_refusals import assert_error, chat, post
from tests.providers.conftest import make_target

MANY = 700_000


def _world(engine, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, ["test-model"], grant_to=account.user_id)
    return target, account


def _tiny_messages(count: int, model: str = "Fake/test-model") -> bytes:
    """`count` one-character user messages: 700,000 of them are a 23 MB body."""
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "x"}] * count}).encode()


def _max_messages(monkeypatch, value: int) -> None:
    monkeypatch.setenv("MINDROUTE_API_MAX_MESSAGES", str(value))
    config.get_settings.cache_clear()  # the API reads it per request, from the settings


def test_700000_tiny_messages_are_a_quick_400_naming_messages(engine, server, request):
    target, account = _world(engine, request)
    body = _tiny_messages(MANY)
    assert len(body) > 20_000_000
    started = time.perf_counter()
    response = post(server, account.key, body)
    took = time.perf_counter() - started
    error = assert_error(response, 400, "messages", "at most 10,000 messages")
    assert error["param"] == "messages"
    assert error["type"] == "invalid_request_error"
    # Refused once 10,001 messages were parsed: the upload of 23 MB is most of it (parsing and
    # building them all took 3.5 s here).
    assert took < 2.0, f"the 400 took {took:.2f} s"
    [row] = logged(engine, 1)
    assert row.status_code == 400
    assert row.user_id == account.user_id
    assert "at most 10,000 messages" in row.error_message
    assert len(json.dumps(row.request_body)) < 2_000  # the messages were never built, so none is stored
    assert target.server.fake.requests == []


def test_a_body_at_the_cap_is_answered_and_one_over_is_refused(engine, server, request):
    target, account = _world(engine, request)
    response = post(server, account.key, _tiny_messages(10_000))
    assert response.status_code == 200, response.text
    assert len(target.server.fake.last.body["messages"]) == 10_000
    error = assert_error(post(server, account.key, _tiny_messages(10_001)), 400, "at most 10,000 messages")
    assert error["param"] == "messages"
    answered, refused = logged(engine, 2)
    assert (answered.status_code, refused.status_code) == (200, 400)
    assert answered.request_body["truncated"]["messages"] == 10_000  # stored capped, with its marker
    assert len(json.dumps(answered.request_body)) < 70_000
    assert len(target.server.fake.requests) == 1


def test_the_cap_is_a_setting_and_counts_small_bodies_too(engine, server, request, monkeypatch):
    _, account = _world(engine, request)
    _max_messages(monkeypatch, 3)
    three = {"model": "Fake/test-model", "messages": [{"role": "user", "content": "hi"}] * 3}
    assert post(server, account.key, three).status_code == 200
    four = {**three, "messages": three["messages"] * 2}
    error = assert_error(post(server, account.key, four), 400, "at most 3 messages", "this one has 6")
    assert error["param"] == "messages"
    assert [r.status_code for r in logged(engine, 2)] == [200, 400]


def test_a_setting_that_is_not_a_number_stops_start_up(monkeypatch):
    for raw, words in (("many", "expected a whole number"), ("0", "at least 1")):
        monkeypatch.setenv("MINDROUTE_API_MAX_MESSAGES", raw)
        with pytest.raises(config.ConfigError, match=words) as raised:
            config.load_settings()
        assert "MINDROUTE_API_MAX_MESSAGES" in str(raised.value)


def test_only_costly_bodies_leave_the_event_loop():
    assert not parse_off_loop(json.dumps(chat("Fake/test-model", "hi" * 10_000)).encode())  # one 20 KB message
    assert not parse_off_loop(_tiny_messages(100))
    assert parse_off_loop(_tiny_messages(300))  # about 1 ms of parsing
    assert parse_off_loop(json.dumps(chat("Fake/test-model", "x" * 300_000)).encode())
    # Counted on the loop too: the cap holds whichever way a body is parsed.
    with pytest.raises(ValueError, match="this one has 11"):
        parse_chat_request(_tiny_messages(11), 10)


def _timed_post(server, key: str, body: dict | bytes) -> tuple[float, int]:
    started = time.perf_counter()
    response = post(server, key, body)
    return time.perf_counter() - started, response.status_code


def test_a_small_call_is_answered_while_a_big_body_is_parsed(engine, server, request, monkeypatch):
    """700,000 messages under a raised cap: parsing and building them takes seconds, in a worker
    thread; calls that arrive meanwhile are answered in their usual time (on the event loop they
    waited for the whole parse: 2.9 s at most here)."""
    target, account = _world(engine, request)
    _max_messages(monkeypatch, 1_000_000)
    small = chat("Fake/test-model")
    alone = sorted(_timed_post(server, account.key, small)[0] for _ in range(5))[2]
    body = _tiny_messages(MANY, "Fake/no-such-model")  # parsed whole, then a 404: nothing goes upstream
    big: dict[str, float | int] = {}

    def send_big() -> None:
        big["took"], big["status"] = _timed_post(server, account.key, body)

    sender = threading.Thread(target=send_big)
    sender.start()
    latencies, calls = [], 0
    while sender.is_alive():
        took, status = _timed_post(server, account.key, small)
        calls += 1
        if sender.is_alive():  # answered while the big body was still in hand
            latencies.append(took)
        assert status == 200
    sender.join()
    assert big["status"] == 404
    print(
        f"\nbig body: {big['took']:.2f} s; small call alone {alone * 1000:.1f} ms, during it "
        f"{len(latencies)} calls, max {max(latencies) * 1000:.1f} ms"
    )
    # On the loop, the call that came just after the parse began waited until it ended.
    assert big["took"] > 1.0, "the big body did not take long enough to tell"
    assert len(latencies) >= 5
    assert max(latencies) < max(0.3, big["took"] / 4), latencies
    rows = logged(engine, 5 + 1 + calls)
    assert sum(r.status_code == 404 for r in rows) == 1
    big_row = next(r for r in rows if r.status_code == 404)
    assert big_row.request_body["truncated"]["messages"] == MANY
    assert len(json.dumps(big_row.request_body)) < 70_000
    assert all(r.request_body["messages"][-1]["text"] == "hi" for r in rows if r.status_code == 200)
    assert len(target.server.fake.requests) == len(rows) - 1


@pytest.fixture(autouse=True)
def _settings_back():
    yield
    config.get_settings.cache_clear()  # a raised cap must not outlive its test


class _CountingKeys(redaction.KeySet):
    """A real KeySet that counts the texts it is asked to redact."""

    texts = 0

    def redact(self, text: str) -> str:
        type(self).texts += 1
        return super().redact(text)


KEY = "sk-stored-provider-key-0123456789abcdef"


def _record(messages: list[ChatMessage]) -> call_log.CallRecord:
    request = ChatRequest(model="test-model", messages=messages)
    return call_log.CallRecord(None, None, "test-model", request, 200, 1, source="api")


def test_a_logs_row_redacts_only_the_messages_it_stores(monkeypatch):
    keys = _CountingKeys([KEY])
    monkeypatch.setattr(redaction, "stored_keys", lambda: keys)
    old = [ChatMessage("user", f"old {KEY}")] + [ChatMessage("user", "x")] * (MANY - 2)
    values = call_log.log_values(_record([*old, ChatMessage("user", f"newest {KEY}")]))
    body = values["request_body"]
    assert body["truncated"]["messages"] == MANY
    kept = body["truncated"]["kept"]
    assert kept < 2_000
    assert _CountingKeys.texts <= kept + 10  # was every one of the 700,000
    assert body["messages"][-1]["text"] == "newest [redacted]"
    assert KEY not in json.dumps(body)


def test_a_huge_message_costs_what_its_stored_part_costs(monkeypatch):
    monkeypatch.setattr(redaction, "stored_keys", lambda: redaction.KeySet([KEY]))
    limit = call_log.MESSAGE_TEXT_MAX_CHARS
    text = "a" * (limit - 5) + KEY + "b" * 20_000_000  # the key across the clip, then 20 MB of one word
    started = time.perf_counter()
    stored = call_log.log_values(_record([ChatMessage("user", text)]))["request_body"]["messages"][0]["text"]
    took = time.perf_counter() - started
    assert took < 0.5, f"{took:.2f} s"  # a masked-secret pattern took seconds for 16,000 such characters
    assert KEY[:6] not in stored and "b" not in stored[: limit + 1]
    assert stored.startswith("a" * (limit - 5) + "[reda")
    assert stored.endswith(f"[truncated: {len(text) - limit} more characters]")


def test_key_shaped_redaction_is_linear_in_long_words():
    word = "x" * 16_000
    started = time.perf_counter()
    assert redact_secrets(f"{word} sk-abc***wxyz {word}ab***cd") == f"{word} [redacted] [redacted]"
    assert time.perf_counter() - started < 0.2
