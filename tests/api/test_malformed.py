"""Malformed and hostile bodies (issue #13 item 10): each is a 400 (or the model's 404) with one Logs
row, never a 500, and nothing reaches the provider."""

from __future__ import annotations

import json

from mindroute import config
from tests.api.conftest import add_account, add_provider, logged
from tests.api.test_refusals import assert_error, post
from tests.providers.conftest import make_target


def _world(engine, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, ["test-model"], grant_to=account.user_id)
    return target, account


def test_a_100000_deep_json_body_is_a_400_with_one_row(engine, server, request):
    target, account = _world(engine, request)
    deep = b"[" * 100_000 + b"]" * 100_000
    error = assert_error(post(server, account.key, deep), 400, "nested too deeply")
    assert error["type"] == "invalid_request_error"
    inside = b'{"model": "Fake/test-model", "messages": [{"role": "user", "content": "hi"}], "metadata": '
    inside += b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_error(post(server, account.key, inside), 400, "nested too deeply")
    rows = logged(engine, 2)
    assert [r.status_code for r in rows] == [400, 400]
    assert all(r.user_id == account.user_id for r in rows)
    assert target.server.fake.requests == []


def test_a_lone_surrogate_is_a_400_naming_the_field(engine, server, request):
    target, account = _world(engine, request)
    cases = {
        "messages[0].content": '{"role": "user", "content": "a\\ud800b"}',
        "messages[0].content[1].text": (
            '{"role": "user", "content": [{"type": "text", "text": "ok"}, {"type": "text", "text": "\\udfff"}]}'
        ),
    }
    for field, message in cases.items():
        body = f'{{"model": "Fake/test-model", "messages": [{message}]}}'.encode()
        error = assert_error(post(server, account.key, body), 400, field, "lone surrogate")
        assert "API key" not in error["message"]
    user = b'{"model": "Fake/test-model", "messages": [{"role": "user", "content": "hi"}], "user": "\\ud83d"}'
    assert_error(post(server, account.key, user), 400, "user is not valid Unicode")
    rows = logged(engine, 3)
    assert [r.status_code for r in rows] == [400, 400, 400]
    assert target.server.fake.requests == []
    # A surrogate PAIR is a real character, and goes through.
    pair = b'{"model": "Fake/test-model", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'
    assert post(server, account.key, pair).status_code == 200
    assert logged(engine, 4)[-1].request_body["messages"][0]["text"] == "\U0001f600"


def test_a_body_of_many_tiny_messages_is_not_stored_whole(engine, server, request, monkeypatch):
    # Over MindRoute's default cap of messages per request (a 400, tests/api/test_large_bodies.py):
    # raised here, so that the body reaches the stored-body cap.
    monkeypatch.setenv("MINDROUTE_API_MAX_MESSAGES", "100000")
    config.get_settings.cache_clear()
    target, account = _world(engine, request)
    messages = [{"role": "user", "content": "x"}] * 100_000
    body = json.dumps({"model": "Fake/no-such-model", "messages": messages}).encode()
    assert_error(post(server, account.key, body), 404, "does not exist")
    [row] = logged(engine, 1)
    assert row.request_body["truncated"]["messages"] == 100_000
    assert len(json.dumps(row.request_body)) < 70_000
    assert target.server.fake.requests == []
