"""Through the API and the playground's chat service, on both databases: an upstream answer over the
size limits (issue 13 item 3) is a 502 "upstream answer too large" with exactly one Logs row, and a slow
provider holding its connections does not hold up calls to another provider (item 6)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from mindroute import config
from mindroute.providers.shapes import ChatMessage, ChatRequest
from mindroute.providers.transport_httpx import close_shared_client
from mindroute.services.call_tracker import Caller
from mindroute.services.chat import StreamingChat, complete_chat
from tests.api.conftest import add_account, add_provider, logged
from tests.api.test_refusals import assert_error, chat, post
from tests.pages.helpers import add_user
from tests.providers.scripted import CHUNKED_HEAD, Conn, Scripted, answer_each, chat_answer

KEY = "sk-scripted-0123456789abcdefXYZ"
MIB = 1024 * 1024
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


@pytest.fixture(autouse=True)
def small_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MINDROUTE_UPSTREAM_MAX_BODY_BYTES", str(2 * MIB))
    monkeypatch.setenv("MINDROUTE_UPSTREAM_MAX_LINE_BYTES", str(256 * 1024))
    config.get_upstream_limits.cache_clear()
    yield
    close_shared_client()
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
    request = ChatRequest("m", [ChatMessage("user", "hi")], stream=streamed)
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


# --- issue 13 item 6: one slow provider does not starve the others --------------------------------


def test_calls_to_a_fast_provider_answer_while_120_calls_wait_on_a_slow_one(engine: Engine, server) -> None:
    async def slow_answers(conn: Conn) -> None:
        while await conn.request() is not None:
            await asyncio.sleep(3.0)
            await conn.send(chat_answer("slow"))

    account = add_account(engine)
    with (
        Scripted(slow_answers) as slow,
        Scripted(lambda conn: answer_each(conn, lambda _: chat_answer("fast"))) as fast,
    ):
        add_provider(engine, "Slow", "openai", slow, KEY, ["m"], grant_to=account.user_id)
        add_provider(engine, "Fast", "openai", fast, KEY, ["m"], grant_to=account.user_id)
        headers = {"authorization": f"Bearer {account.key}"}

        async def main() -> tuple[list[int], int, float]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30, limits=limits) as client:
                waiting = [
                    asyncio.create_task(client.post("/v1/chat/completions", json=chat("Slow/m"))) for _ in range(120)
                ]
                while len(slow.requests) < 100:
                    await asyncio.sleep(0.02)
                begun = time.monotonic()
                quick = await client.post("/v1/chat/completions", json=chat("Fast/m"))
                took = time.monotonic() - begun
                return [r.status_code for r in await asyncio.gather(*waiting)], quick.status_code, took

        statuses, quick_status, took = asyncio.run(main())
    assert quick_status == 200
    assert took < 1.5, took
    assert statuses == [200] * 120  # the 20 over the provider's 100 connections waited their turn
    rows = logged(engine, 121)
    assert sorted(row.status_code for row in rows) == [200] * 121
