"""An upstream answer over the size limits (issue 13 item 3) through the API and the playground's chat
service: a 502 "upstream answer too large", and exactly one Logs row, on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from mindroute import config
from mindroute.providers import base
from mindroute.services.chat import Caller, StreamingChat, complete_chat
from tests.api.conftest import add_account, add_provider, logged
from tests.api.test_refusals import assert_error, chat, post
from tests.pages.helpers import add_user
from tests.providers.scripted import CHUNKED_HEAD, Conn, Scripted

KEY = "sk-scripted-0123456789abcdefXYZ"
MIB = 1024 * 1024
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


@pytest.fixture(autouse=True)
def small_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MINDROUTE_UPSTREAM_MAX_BODY_BYTES", str(2 * MIB))
    monkeypatch.setenv("MINDROUTE_UPSTREAM_MAX_LINE_BYTES", str(256 * 1024))
    config.get_upstream_limits.cache_clear()
    yield
    base.close_shared_client()
    config.get_upstream_limits.cache_clear()


async def huge(conn: Conn) -> None:
    """Every request: a JSON answer that never ends (or a stream whose one line never ends)."""
    while (request := await conn.request()) is not None:
        streamed = b'"stream":true' in request
        await conn.send(SSE_HEAD + b"6\r\ndata: \r\n" if streamed else CHUNKED_HEAD + b"1\r\n{\r\n")
        piece = b"a" * 65536
        while True:
            await conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))


@pytest.fixture
def upstream() -> Iterator[Scripted]:
    with Scripted(huge) as server:
        yield server


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
def test_the_api_answers_502_and_logs_one_row(engine: Engine, server, upstream: Scripted, streamed: bool) -> None:
    account = add_account(engine)
    add_provider(engine, "Big", "openai", upstream, KEY, ["m"], grant_to=account.user_id)
    response = post(server, account.key, chat("Big/m", stream=streamed))
    assert_error(response, 502, "Upstream answer too large", f"127.0.0.1:{upstream.port}")
    [row] = logged(engine, 1)
    assert row.status_code == 502
    assert row.error_message.startswith("Upstream answer too large: ")
    assert ("one line of the stream" if streamed else "the answer from") in row.error_message
    assert upstream.sent < 2 * MIB + 16 * MIB


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
def test_the_playground_fails_the_call_and_logs_one_row(engine: Engine, upstream: Scripted, streamed: bool) -> None:
    user = add_user(engine, "player@example.com")
    provider_id = add_provider(engine, "Big", "openai", upstream, KEY, ["m"], grant_to=user.id)
    caller = Caller(source="playground", ip="192.0.2.10", user_agent="pytest-browser")
    request = base.ChatRequest("m", [base.ChatMessage("user", "hi")], stream=streamed)
    if streamed:
        call = StreamingChat(engine, user, provider_id, request, caller)
        try:
            assert list(call.chunks()) == []
        finally:
            outcome = call.finish()
    else:
        outcome = complete_chat(engine, user, provider_id, request, caller)
    assert not outcome.ok
    assert outcome.status_code == 502
    assert outcome.error is not None and outcome.error.startswith("Upstream answer too large: ")
    [row] = logged(engine, 1)
    assert row.status_code == 502
    assert row.error_message == outcome.error
