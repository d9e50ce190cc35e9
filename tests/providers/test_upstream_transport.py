"""The upstream transport of both paths (aiohttp for the API, httpx for the playground) against scripted
servers that misbehave on purpose: a second answer to one request, answers framed wrongly or with bytes
left over, stalls, and one slow provider holding connections while another must still be reached."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from mindroute import config
from mindroute.providers.errors import BadRequestError, ProviderError, ProviderTimeout, UpstreamError
from mindroute.providers.registry import adapter_for
from mindroute.providers.shapes import ChatMessage, ChatRequest, StreamEnd
from mindroute.providers.transport_aiohttp import aclose_shared_async_client
from mindroute.providers.transport_httpx import close_shared_client
from tests.providers.scripted import (
    CHUNKED_HEAD,
    Conn,
    Scripted,
    answer,
    answer_each,
    chat_answer,
    chat_json,
    chunked,
)

KEY = "sk-scripted-0123456789abcdefXYZ"
TIMEOUT = httpx.Timeout(5.0)
SHORT_READ = httpx.Timeout(5.0, read=0.3)
MODES = ["sync", "async"]
Outcome = str | ProviderError


def connections(mode: str, calls_made: int) -> list[int]:
    """The connections `calls_made` calls in a row use: the API's path keeps one alive; the sync path
    (the playground) keeps none, so a byte left on a connection can never reach another call."""
    return [1] * calls_made if mode == "async" else list(range(1, calls_made + 1))


def ask(text: str = "hi") -> ChatRequest:
    return ChatRequest("m", [ChatMessage("user", text)])


def calls(mode: str, endpoints: list[str], timeout: httpx.Timeout = TIMEOUT) -> list[Outcome]:
    """One call after the other to each endpoint, all on one pool (for the API's path: one event loop);
    the answer's text, or the typed error it ended in."""
    adapter = adapter_for("openai")
    outcomes: list[Outcome] = []
    if mode == "sync":
        try:
            for endpoint in endpoints:
                try:
                    outcomes.append(adapter.complete(ask(), endpoint, KEY, timeout=timeout).text)
                except ProviderError as exc:
                    outcomes.append(exc)
        finally:
            close_shared_client()
        return outcomes

    async def main() -> None:
        try:
            for endpoint in endpoints:
                try:
                    outcomes.append((await adapter.acomplete(ask(), endpoint, KEY, timeout=timeout)).text)
                except ProviderError as exc:
                    outcomes.append(exc)
        finally:
            await aclose_shared_async_client()

    asyncio.run(main())
    return outcomes


def streamed(mode: str, endpoint: str, timeout: httpx.Timeout = TIMEOUT) -> str:
    adapter = adapter_for("openai")
    if mode == "sync":
        try:
            items = list(adapter.stream(ask(), endpoint, KEY, timeout=timeout))
        finally:
            close_shared_client()
    else:

        async def main() -> list[Any]:
            try:
                return [item async for item in adapter.astream(ask(), endpoint, KEY, timeout=timeout)]
            finally:
                await aclose_shared_async_client()

        items = asyncio.run(main())
    assert isinstance(items[-1], StreamEnd)
    return items[-1].text


# --- issue 13 item 1: one caller never gets another caller's answer -----------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_second_answer_to_one_request_never_reaches_the_next_caller(mode: str) -> None:
    """The upstream answers the first request twice, both in one write; the next caller on the same
    pool gets its own answer on a new connection, and so does every later one."""

    async def handler(conn: Conn) -> None:
        served = 0
        while await conn.request() is not None:
            served += 1
            if conn.number == 1 and served == 1:
                await conn.send(chat_answer("the first caller's answer") + chat_answer("an answer nobody asked for"))
            else:
                await conn.send(chat_answer(f"answer {served} on connection {conn.number}"))

    with Scripted(handler) as server:
        outcomes = calls(mode, [server.endpoint] * 4)
        assert outcomes[0] == "the first caller's answer"
        assert all("nobody asked for" not in outcome for outcome in outcomes)
        # The connection with the extra answer on it was closed, never reused; on the API's path
        # the next one was kept alive and carried every later call.
        if mode == "async":
            assert outcomes[1:] == [f"answer {n} on connection 2" for n in (1, 2, 3)]
            assert server.connections_of_requests == [1, 2, 2, 2]
        else:
            assert outcomes[1:] == [f"answer 1 on connection {n}" for n in (2, 3, 4)]
            assert server.connections_of_requests == [1, 2, 3, 4]
        server.wait_for(lambda: 1 in server.eofs)


@pytest.mark.parametrize("mode", MODES)
def test_an_extra_answer_arriving_while_the_connection_is_idle_never_reaches_the_next_caller(mode: str) -> None:
    async def handler(conn: Conn) -> None:
        served = 0
        while await conn.request() is not None:
            served += 1
            await conn.send(chat_answer(f"answer {served} on connection {conn.number}"))
            if conn.number == 1 and served == 1:
                await asyncio.sleep(0.1)  # the client has its answer and the connection is back in the pool
                await conn.send(chat_answer("a late answer nobody asked for"))

    with Scripted(handler) as server:
        adapter = adapter_for("openai")
        if mode == "sync":
            try:
                first = adapter.complete(ask(), server.endpoint, KEY, timeout=TIMEOUT).text
                time.sleep(0.3)
                second = adapter.complete(ask(), server.endpoint, KEY, timeout=TIMEOUT).text
            finally:
                close_shared_client()
        else:

            async def main() -> tuple[str, str]:
                try:
                    one = (await adapter.acomplete(ask(), server.endpoint, KEY, timeout=TIMEOUT)).text
                    await asyncio.sleep(0.3)
                    two = (await adapter.acomplete(ask(), server.endpoint, KEY, timeout=TIMEOUT)).text
                    return one, two
                finally:
                    await aclose_shared_async_client()

            first, second = asyncio.run(main())
        assert first == "answer 1 on connection 1"
        assert second == "answer 1 on connection 2"
        assert server.connections_of_requests == [1, 2]


@pytest.mark.parametrize("mode", MODES)
def test_bytes_left_over_after_an_answer_close_its_connection(mode: str) -> None:
    async def handler(conn: Conn) -> None:
        while await conn.request() is not None:
            left_over = b"GARBAGE" if conn.number == 1 else b""
            await conn.send(chat_answer(f"connection {conn.number}") + left_over)

    with Scripted(handler) as server:
        first, *rest = calls(mode, [server.endpoint] * 3)
        # httpx hands the first caller its answer; aiohttp fails the call on the bytes it cannot
        # frame. Either way nobody gets anything else, and the connection is not used again.
        assert first == "connection 1" or isinstance(first, UpstreamError), first
        assert rest == (["connection 2", "connection 2"] if mode == "async" else ["connection 2", "connection 3"])
        assert server.connections_of_requests[:2] == [1, 2]
        server.wait_for(lambda: 1 in server.eofs)


BODY = chat_json("framed")
UNFRAMEABLE = {
    # Both framings at once, as in request smuggling: which one ends the body is ambiguous.
    "length-and-chunked": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(BODY),
    "two-different-lengths": b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncontent-length: %d\r\n\r\n%s"
    % (len(BODY), len(BODY) - 1, BODY),
    "bad-chunk-size": CHUNKED_HEAD + b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk-without-crlf": CHUNKED_HEAD + b"5\r\nhelloXX0\r\n\r\n",
    "status-not-a-number": b"HTTP/1.1 abc OK\r\ncontent-length: 2\r\n\r\n{}",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 2\r\n\r\n{}",
    "garbage": b"garbage\r\n\r\n",
    "head-over-64-kib": b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 70_000 + b"\r\ncontent-length: 2\r\n\r\n{}",
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bad", list(UNFRAMEABLE))
def test_an_answer_that_cannot_be_framed_exactly_fails_and_closes_its_connection(mode: str, bad: str) -> None:
    async def handler(conn: Conn) -> None:
        if conn.number == 1:
            await conn.request()
            await conn.send(UNFRAMEABLE[bad])
            await conn.wait_eof()
            return
        await answer_each(conn, lambda _: chat_answer(f"connection {conn.number}"))

    with Scripted(handler) as server:
        first, second = calls(mode, [server.endpoint] * 2)
        if mode == "sync" and bad == "length-and-chunked":
            assert first == "framed"  # h11 frames it by its chunks, as RFC 9112 says (and never keeps it)
        else:
            assert isinstance(first, UpstreamError), first
            assert KEY not in first.message
        assert second == "connection 2"
        assert server.connections_of_requests == [1, 2]
        server.wait_for(lambda: 1 in server.eofs)


@pytest.mark.parametrize("mode", MODES)
def test_an_answer_shorter_than_its_content_length_is_a_broken_connection(mode: str) -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"choices"')

    with Scripted(handler) as server:
        (outcome,) = calls(mode, [server.endpoint])
        assert isinstance(outcome, UpstreamError)
        assert "127.0.0.1" in outcome.message


# --- what the deleted lean client did, now through aiohttp -----------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_kept_alive_connections_carry_call_after_call_with_the_request_as_sent(mode: str) -> None:
    with Scripted(answer_each) as server:
        assert calls(mode, [server.endpoint] * 3) == ["ok"] * 3
        assert server.connections_of_requests == connections(mode, 3)
        head = server.requests[0][1].split(b"\r\n\r\n")[0].decode().lower()
        assert head.startswith("post /v1/chat/completions http/1.1\r\n")
        assert f"host: 127.0.0.1:{server.port}" in head
        assert "user-agent: mindroute" in head
        assert f"authorization: bearer {KEY.lower()}" in head
        assert "accept-encoding: gzip, deflate" in head
        assert "cookie" not in head


@pytest.mark.parametrize("mode", MODES)
def test_a_cookie_one_call_got_is_never_sent_on_another(mode: str) -> None:
    with Scripted(lambda conn: answer_each(conn, lambda _: chat_answer("ok", "set-cookie: session=alice"))) as server:
        assert calls(mode, [server.endpoint] * 2) == ["ok", "ok"]
        assert all(b"cookie" not in raw.lower() for _, raw in server.requests)


@pytest.mark.parametrize("mode", MODES)
def test_chunked_answers_with_extensions_and_trailers_and_1xx_interim_answers(mode: str) -> None:
    body = chat_json("chunked answer")

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await conn.send(
            CHUNKED_HEAD + b"5;foo=bar\r\n" + body[:5] + b"\r\n%X\r\n" % (len(body) - 5) + body[5:] + b"\r\n"
            b"0\r\nX-Trailer: yes\r\n\r\n"
        )
        await answer_each(conn)

    with Scripted(handler) as server:
        assert calls(mode, [server.endpoint] * 2) == ["chunked answer", "ok" if mode == "async" else "chunked answer"]
        assert server.connections_of_requests == connections(mode, 2)


@pytest.mark.parametrize("mode", MODES)
def test_a_close_delimited_answer_is_read_whole_and_its_connection_not_reused(mode: str) -> None:
    async def handler(conn: Conn) -> None:
        while await conn.request() is not None:
            await conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n")
            await conn.send(chat_json(f"until the end of connection {conn.number}"))
            conn.writer.write_eof()

    with Scripted(handler) as server:
        assert calls(mode, [server.endpoint] * 2) == [
            "until the end of connection 1",
            "until the end of connection 2",
        ]
        assert server.connections_of_requests == [1, 2]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
def test_gzip_and_deflate_answers_are_decoded(mode: str, coding: str) -> None:
    body = chat_json("compressible " * 200)
    if coding == "gzip":
        packed = gzip.compress(body)
    elif coding == "deflate":
        packed = zlib.compress(body)
    else:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = packer.compress(body) + packer.flush()
    header = f"content-encoding: {coding.removeprefix('raw-')}"
    thirds = [
        packed[: len(packed) // 3],
        packed[len(packed) // 3 : 2 * len(packed) // 3],
        packed[2 * len(packed) // 3 :],
    ]

    def reply(request: bytes) -> bytes:
        return CHUNKED_HEAD.replace(b"\r\n\r\n", f"\r\n{header}\r\n\r\n".encode()) + chunked(*thirds)

    with Scripted(lambda conn: answer_each(conn, reply)) as server:
        assert calls(mode, [server.endpoint] * 2) == ["compressible " * 200] * 2
        assert server.connections_of_requests == connections(mode, 2)


@pytest.mark.parametrize("mode", MODES)
def test_a_body_that_does_not_decompress_is_an_upstream_error(mode: str) -> None:
    with Scripted(
        lambda conn: answer_each(conn, lambda _: answer(b"this is not gzip at all", "200 OK", "content-encoding: gzip"))
    ) as server:
        (outcome,) = calls(mode, [server.endpoint])
        assert isinstance(outcome, UpstreamError)


@pytest.mark.parametrize("mode", MODES)
def test_a_body_that_stalls_midway_is_a_read_timeout_and_the_connection_is_dropped(mode: str) -> None:
    async def handler(conn: Conn) -> None:
        if conn.number == 1:
            await conn.request()
            await conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            await conn.wait_eof()
            return
        await answer_each(conn)

    with Scripted(handler) as server:
        started = time.monotonic()
        first, second = calls(mode, [server.endpoint] * 2, timeout=SHORT_READ)
        assert isinstance(first, ProviderTimeout) and "within 0.3 s" in first.message, first
        assert second == "ok"
        assert time.monotonic() - started < 3
        assert server.connections_of_requests == [1, 2]
        server.wait_for(lambda: 1 in server.eofs)


@pytest.mark.parametrize("mode", MODES)
def test_a_stream_read_only_partly_then_closed_drops_its_connection(mode: str) -> None:
    chunk = b'data: {"choices": [{"index": 0, "delta": {"content": "more "}}]}\n\n'

    async def handler(conn: Conn) -> None:
        if conn.number == 1:
            await conn.request()
            await conn.send(CHUNKED_HEAD + b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await conn.wait_eof()  # the rest is never sent: the client must go away by itself
            return
        await answer_each(conn)

    with Scripted(handler) as server:
        adapter = adapter_for("openai")
        if mode == "sync":
            try:
                stream = adapter.stream(ask(), server.endpoint, KEY, timeout=TIMEOUT)
                assert next(stream).text == "more "
                stream.close()
                assert adapter.complete(ask(), server.endpoint, KEY, timeout=TIMEOUT).text == "ok"
            finally:
                close_shared_client()
        else:

            async def main() -> None:
                try:
                    stream = adapter.astream(ask(), server.endpoint, KEY, timeout=TIMEOUT)
                    assert (await anext(stream)).text == "more "
                    await stream.aclose()
                    assert (await adapter.acomplete(ask(), server.endpoint, KEY, timeout=TIMEOUT)).text == "ok"
                finally:
                    await aclose_shared_async_client()

            asyncio.run(main())
        server.wait_for(lambda: 1 in server.eofs)
        assert server.connections_of_requests == [1, 2]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "key", [f"{KEY}\r\nx-injected: 1", f"{KEY}\nx-injected: 1", f"{KEY}\rx-injected: 1"], ids=["crlf", "lf", "cr"]
)
def test_a_key_with_a_line_break_is_refused_before_anything_is_sent(mode: str, key: str) -> None:
    with Scripted(answer_each) as server:
        adapter = adapter_for("openai")
        with pytest.raises(BadRequestError, match="line break") as caught:
            if mode == "sync":
                adapter.complete(ask(), server.endpoint, key, timeout=TIMEOUT)
            else:
                asyncio.run(adapter.acomplete(ask(), server.endpoint, key, timeout=TIMEOUT))
        assert "0123456789" not in caught.value.message
        time.sleep(0.05)
        assert server.accepted == 0


def test_a_cancelled_call_closes_its_connection_and_frees_its_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDROUTE_UPSTREAM_CONNECTIONS_PER_HOST", "1")
    config.get_upstream_limits.cache_clear()
    got_request = threading.Event()

    async def handler(conn: Conn) -> None:
        if conn.number == 1:
            await conn.request()
            got_request.set()
            await conn.wait_eof()  # never answers
            return
        await answer_each(conn)

    async def main(server: Scripted) -> str:
        adapter = adapter_for("openai")
        try:
            task = asyncio.create_task(adapter.acomplete(ask(), server.endpoint, KEY, timeout=TIMEOUT))
            while not got_request.is_set():
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            quick = httpx.Timeout(5.0, pool=0.3, connect=0.3)
            return (await adapter.acomplete(ask(), server.endpoint, KEY, timeout=quick)).text
        finally:
            await aclose_shared_async_client()

    try:
        with Scripted(handler) as server:
            assert asyncio.run(main(server)) == "ok"  # the only slot was free again
            server.wait_for(lambda: 1 in server.eofs)
    finally:
        config.get_upstream_limits.cache_clear()


def test_streams_go_through_the_same_transport() -> None:
    events = b"".join(
        b"data: %s\n\n" % piece
        for piece in (
            b'{"choices": [{"index": 0, "delta": {"content": "one "}}]}',
            b'{"choices": [{"index": 0, "delta": {"content": "two"}, "finish_reason": "stop"}]}',
            b"[DONE]",
        )
    )
    with Scripted(
        lambda conn: answer_each(conn, lambda _: answer(events, "200 OK", "content-type: text/event-stream"))
    ) as s:
        for each in MODES:
            assert streamed(each, s.endpoint) == "one two"


# --- issue 13 item 6: one slow provider does not starve the others -----------------------------------


class Peak:
    """Requests being answered at once, and the most there were."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0


def slow_handler(delay_s: float, started: list[float], peak: Peak | None = None) -> Callable[[Conn], Any]:
    peak = peak or Peak()

    async def handler(conn: Conn) -> None:
        while await conn.request() is not None:
            started.append(time.monotonic())
            peak.now += 1  # the server's own loop: no lock needed
            peak.most = max(peak.most, peak.now)
            await asyncio.sleep(delay_s)
            await conn.send(chat_answer("slow"))
            peak.now -= 1

    return handler


def test_120_calls_to_a_slow_provider_leave_room_for_a_call_to_another_one() -> None:
    """The API's path, default limits: A holds its 100 connections (20 more calls wait for one) and B's
    call still answers at once."""
    slow_started: list[float] = []
    peak = Peak()
    with Scripted(slow_handler(3.0, slow_started, peak)) as slow, Scripted(answer_each) as fast:
        adapter = adapter_for("openai")

        async def main() -> tuple[list[Any], float, str]:
            try:
                tasks = [
                    asyncio.create_task(adapter.acomplete(ask(), slow.endpoint, KEY, timeout=TIMEOUT))
                    for _ in range(120)
                ]
                while len(slow_started) < 100:
                    await asyncio.sleep(0.02)
                begun = time.monotonic()
                quick = await adapter.acomplete(ask(), fast.endpoint, KEY, timeout=httpx.Timeout(5.0, pool=1.0))
                took = time.monotonic() - begun
                return await asyncio.gather(*tasks, return_exceptions=True), took, quick.text
            finally:
                await aclose_shared_async_client()

        results, took, text = asyncio.run(main())
        assert text == "ok"
        assert took < 1.0, took
        assert peak.most == 100  # at most that many connections to one provider at once
        assert [getattr(r, "text", r) for r in results] == ["slow"] * 120  # the 20 others waited their turn


def test_120_calls_to_a_slow_provider_leave_room_for_a_call_to_another_one_on_the_sync_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MINDROUTE_UPSTREAM_CONNECTIONS_PER_HOST", "100")
    config.get_upstream_limits.cache_clear()
    slow_started: list[float] = []
    adapter = adapter_for("openai")
    try:
        peak = Peak()
        with Scripted(slow_handler(2.0, slow_started, peak)) as slow, Scripted(answer_each) as fast:
            with ThreadPoolExecutor(120) as pool:
                futures = [
                    pool.submit(adapter.complete, ask(), slow.endpoint, KEY, timeout=TIMEOUT) for _ in range(120)
                ]
                deadline = time.monotonic() + 10
                while len(slow_started) < 100 and time.monotonic() < deadline:
                    time.sleep(0.02)
                begun = time.monotonic()
                quick = adapter.complete(ask(), fast.endpoint, KEY, timeout=httpx.Timeout(5.0, pool=1.0))
                took = time.monotonic() - begun
                texts = [future.result().text for future in futures]
            assert quick.text == "ok"
            assert took < 1.0, took
            assert peak.most == 100
            assert texts == ["slow"] * 120
    finally:
        close_shared_client()
        config.get_upstream_limits.cache_clear()


@pytest.mark.parametrize("mode", MODES)
def test_a_wait_for_a_connection_past_the_timeout_says_too_many_calls_are_in_flight(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINDROUTE_UPSTREAM_CONNECTIONS_PER_HOST", "2")
    config.get_upstream_limits.cache_clear()
    slow_started: list[float] = []
    adapter = adapter_for("openai")
    short_pool = httpx.Timeout(5.0, pool=0.3, connect=0.2)

    def sync_case(slow: Scripted) -> ProviderError:
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(adapter.complete, ask(), slow.endpoint, KEY, timeout=TIMEOUT) for _ in range(2)]
            slow.wait_for(lambda: len(slow_started) == 2)
            with pytest.raises(ProviderTimeout) as caught:
                adapter.complete(ask(), slow.endpoint, KEY, timeout=short_pool)
            assert [future.result().text for future in held] == ["slow", "slow"]
        return caught.value

    async def async_case(slow: Scripted) -> ProviderError:
        try:
            held = [
                asyncio.create_task(adapter.acomplete(ask(), slow.endpoint, KEY, timeout=TIMEOUT)) for _ in range(2)
            ]
            while len(slow_started) < 2:
                await asyncio.sleep(0.01)
            with pytest.raises(ProviderTimeout) as caught:
                await adapter.acomplete(ask(), slow.endpoint, KEY, timeout=short_pool)
            assert [result.text for result in await asyncio.gather(*held)] == ["slow", "slow"]
            return caught.value
        finally:
            await aclose_shared_async_client()

    try:
        with Scripted(slow_handler(1.5, slow_started)) as slow:
            error = sync_case(slow) if mode == "sync" else asyncio.run(async_case(slow))
            assert error.message.startswith(f"Too many calls in flight to 127.0.0.1:{slow.port}: waited 0.")
            assert "for a connection" in error.message
            assert "could not connect" not in error.message.lower()
            assert slow.accepted == 2
    finally:
        close_shared_client()
        config.get_upstream_limits.cache_clear()


@pytest.mark.parametrize("mode", MODES)
def test_a_real_connect_timeout_is_still_called_one(mode: str) -> None:
    # 192.0.2.0/24 is TEST-NET-1: nothing answers, so connecting hangs until the timeout.
    outcome = calls(mode, ["http://192.0.2.1:9/v1"], timeout=httpx.Timeout(5.0, connect=0.2, pool=0.2))[0]
    assert isinstance(outcome, ProviderTimeout | UpstreamError), outcome
    assert "too many calls" not in outcome.message.lower()
