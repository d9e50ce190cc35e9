"""Size limits on what a provider may send (issue 13 item 3), on both paths: a 300 MB body served lazily,
an endless SSE line or event, a gzip bomb. Each fails cleanly with UpstreamTooLarge, having read little
more than the limit, and holds no more memory than about the limit."""

from __future__ import annotations

import asyncio
import functools
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mindroute import config
from mindroute.config import ConfigError, load_upstream_limits
from mindroute.providers.errors import UpstreamTooLarge
from mindroute.providers.models_list import fetch_models
from mindroute.providers.registry import adapter_for
from mindroute.providers.shapes import ChatMessage, ChatRequest, StreamEnd
from mindroute.providers.transport_aiohttp import aclose_shared_async_client
from mindroute.providers.transport_httpx import close_shared_client
from tests.providers.scripted import CHUNKED_HEAD, Conn, Scripted, chat_json

KEY = "sk-scripted-0123456789abcdefXYZ"
MIB = 1024 * 1024
BODY_LIMIT = 4 * MIB
HUGE = 300 * MIB
PIECE = 64 * 1024
# What the kernel's socket buffers on both ends of a loopback connection may hold beyond what the
# client read; the server counts a byte as sent once the kernel took it.
KERNEL_BUFFERS = 16 * MIB
MODES = ["sync", "async"]
TIMEOUT = httpx.Timeout(30.0)


@pytest.fixture(autouse=True)
def body_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A 4 MiB body limit (the default is 32 MiB) and the default 1 MiB line limit."""
    monkeypatch.setenv("MINDROUTE_UPSTREAM_MAX_BODY_BYTES", str(BODY_LIMIT))
    monkeypatch.delenv("MINDROUTE_UPSTREAM_MAX_LINE_BYTES", raising=False)
    config.get_upstream_limits.cache_clear()
    yield
    close_shared_client()
    config.get_upstream_limits.cache_clear()


def ask() -> ChatRequest:
    return ChatRequest("m", [ChatMessage("user", "hi")])


def call(mode: str, endpoint: str, *, stream: bool = False) -> Any:
    """The answer's text, or the UpstreamTooLarge it ended in (anything else fails the test)."""
    adapter = adapter_for("openai")
    try:
        if mode == "sync":
            if stream:
                items = list(adapter.stream(ask(), endpoint, KEY, timeout=TIMEOUT))
                assert isinstance(items[-1], StreamEnd)
                return items[-1].text
            return adapter.complete(ask(), endpoint, KEY, timeout=TIMEOUT).text

        async def main() -> str:
            try:
                if stream:
                    items = [item async for item in adapter.astream(ask(), endpoint, KEY, timeout=TIMEOUT)]
                    return items[-1].text
                return (await adapter.acomplete(ask(), endpoint, KEY, timeout=TIMEOUT)).text
            finally:
                await aclose_shared_async_client()

        return asyncio.run(main())
    except UpstreamTooLarge as exc:
        return exc


async def send_lazily(conn: Conn, head: bytes, piece: bytes, total: int, *, chunk: bool) -> None:
    """`head`, then `piece` again and again up to `total` bytes, each made only when the last was taken."""
    if await conn.request() is None:
        return
    await conn.send(head)
    sent = 0
    while sent < total:
        await conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunk else piece)
        sent += len(piece)
    if chunk:
        await conn.send(b"0\r\n\r\n")


# --- bodies ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_300_mb_chunked_body_fails_after_little_more_than_the_limit(mode: str) -> None:
    async def handler(conn: Conn) -> None:
        await send_lazily(conn, CHUNKED_HEAD, b"x" * PIECE, HUGE, chunk=True)

    with Scripted(handler) as server:
        error = call(mode, server.endpoint)
        assert isinstance(error, UpstreamTooLarge), error
        assert error.message == (
            f"Upstream answer too large: the answer from 127.0.0.1:{server.port} is over 4 MiB "
            "(MINDROUTE_UPSTREAM_MAX_BODY_BYTES)"
        )
        assert BODY_LIMIT < server.sent < BODY_LIMIT + KERNEL_BUFFERS
        server.wait_for(lambda: server.eofs == [1])  # the connection was dropped, not drained


@pytest.mark.parametrize("mode", MODES)
def test_a_300_mb_content_length_is_refused_before_the_body_is_read(mode: str) -> None:
    async def handler(conn: Conn) -> None:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % HUGE
        await send_lazily(conn, head, b"x" * PIECE, HUGE, chunk=False)

    with Scripted(handler) as server:
        error = call(mode, server.endpoint)
        assert isinstance(error, UpstreamTooLarge), error
        assert server.sent < KERNEL_BUFFERS


@pytest.mark.parametrize("mode", MODES)
def test_an_error_page_of_300_mb_is_cut_off_too(mode: str) -> None:
    async def handler(conn: Conn) -> None:
        head = b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n"
        await send_lazily(conn, head, b"<p>error</p>" * 5000, HUGE, chunk=True)

    with Scripted(handler) as server:
        error = call(mode, server.endpoint)
        assert isinstance(error, UpstreamTooLarge), error
        assert server.sent < BODY_LIMIT + KERNEL_BUFFERS


@pytest.mark.parametrize("mode", MODES)
def test_an_answer_just_under_the_limit_is_read_whole(mode: str) -> None:
    text = "y" * (BODY_LIMIT - 1000)

    async def handler(conn: Conn) -> None:
        await conn.request()
        body = chat_json(text)
        assert len(body) <= BODY_LIMIT
        await conn.send(CHUNKED_HEAD + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))

    with Scripted(handler) as server:
        assert call(mode, server.endpoint) == text


# --- gzip bombs ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """300 MiB of zeros gzipped to about 300 KB, made a mebibyte at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    packed = [packer.compress(zeros) for _ in range(HUGE // MIB)]
    return b"".join(packed) + packer.flush()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_gzip_bomb_fails_at_the_limit_of_decompressed_bytes_without_holding_more(mode: str, framing: str) -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 400_000

    async def handler(conn: Conn) -> None:
        await conn.request()
        if framing == "content-length":
            head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(bomb)
            await conn.send(head + bomb)
        else:
            head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
            await conn.send(head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in _cut(bomb, 8192)) + b"0\r\n\r\n")
        await conn.wait_eof()

    with Scripted(handler) as server:
        tracemalloc.start()
        try:
            error = call(mode, server.endpoint)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert isinstance(error, UpstreamTooLarge), error
        assert "is over 4 MiB" in error.message
        # About the limit (what was decompressed before it was passed, and its join) and nothing like
        # the bomb's 300 MiB.
        assert peak < 4 * BODY_LIMIT, peak


def _cut(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("mode", MODES)
def test_a_gzipped_answer_under_the_limit_is_decoded(mode: str) -> None:
    body = chat_json("zipped " * 1000)
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    packed = packer.compress(body) + packer.flush()
    # Two gzip members one after the other are one body (RFC 1952), as httpx and aiohttp read it.
    twice = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    tail = twice.compress(b"") + twice.flush()

    async def handler(conn: Conn) -> None:
        await conn.request()
        payload = packed + tail
        await conn.send(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(payload))
        await conn.send(payload)

    with Scripted(handler) as server:
        assert call(mode, server.endpoint) == "zipped " * 1000


# --- streams -------------------------------------------------------------------------------------------

SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("mode", MODES)
def test_an_endless_sse_line_fails_at_the_line_limit(mode: str) -> None:
    async def handler(conn: Conn) -> None:
        if await conn.request() is None:
            return
        await conn.send(SSE_HEAD + b"6\r\ndata: \r\n")
        while True:  # one line that never ends, until the client goes away
            await conn.send(b"%x\r\n%s\r\n" % (PIECE, b"a" * PIECE))

    with Scripted(handler) as server:
        error = call(mode, server.endpoint, stream=True)
        assert isinstance(error, UpstreamTooLarge), error
        assert error.message == (
            f"Upstream answer too large: one line of the stream from 127.0.0.1:{server.port} is over 1 MiB "
            "(MINDROUTE_UPSTREAM_MAX_LINE_BYTES)"
        )
        assert server.sent < MIB + KERNEL_BUFFERS
        server.wait_for(lambda: server.eofs == [1])


@pytest.mark.parametrize("mode", MODES)
def test_an_endless_sse_event_of_short_lines_fails_at_the_line_limit(mode: str) -> None:
    async def handler(conn: Conn) -> None:
        if await conn.request() is None:
            return
        await conn.send(SSE_HEAD)
        lines = b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n" * 1000
        while True:  # data lines without the blank line that would end the event
            await conn.send(b"%x\r\n%s\r\n" % (len(lines), lines))

    with Scripted(handler) as server:
        error = call(mode, server.endpoint, stream=True)
        assert isinstance(error, UpstreamTooLarge), error
        assert "one event of the stream" in error.message
        assert server.sent < MIB + KERNEL_BUFFERS


@pytest.mark.parametrize("mode", MODES)
def test_an_endless_stream_of_small_events_fails_at_the_body_limit(mode: str) -> None:
    event = b'data: {"choices": [{"index": 0, "delta": {"content": "more "}}]}\n\n'

    async def handler(conn: Conn) -> None:
        if await conn.request() is None:
            return
        await conn.send(SSE_HEAD)
        events = event * 1000
        while True:
            await conn.send(b"%x\r\n%s\r\n" % (len(events), events))

    with Scripted(handler) as server:
        error = call(mode, server.endpoint, stream=True)
        assert isinstance(error, UpstreamTooLarge), error
        assert "the answer from" in error.message
        assert server.sent < BODY_LIMIT + KERNEL_BUFFERS


@pytest.mark.parametrize("mode", MODES)
def test_a_stream_of_ordinary_events_is_untouched_by_the_limits(mode: str) -> None:
    events = b"".join(
        b"data: %s\n\n" % piece
        for piece in (
            b'{"choices": [{"index": 0, "delta": {"content": "%s"}}]}' % (b"z" * 500_000),
            b'{"choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}]}',
            b"[DONE]",
        )
    )

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(SSE_HEAD + b"%x\r\n%s\r\n0\r\n\r\n" % (len(events), events))

    with Scripted(handler) as server:
        assert call(mode, server.endpoint, stream=True) == "z" * 500_000 + "!"


# --- the settings ----------------------------------------------------------------------------------------


def test_the_defaults_are_32_mib_a_body_1_mib_a_line_100_connections_a_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "MINDROUTE_UPSTREAM_MAX_BODY_BYTES",
        "MINDROUTE_UPSTREAM_MAX_LINE_BYTES",
        "MINDROUTE_UPSTREAM_CONNECTIONS_PER_HOST",
        "MINDROUTE_UPSTREAM_CONNECTIONS_TOTAL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINDROUTE_SECRETS_FILE", "/nonexistent/secrets.toml")
    limits = load_upstream_limits()
    assert (limits.max_body_bytes, limits.max_line_bytes) == (32 * MIB, MIB)
    assert (limits.connections_per_host, limits.connections_total) == (100, 1000)


@pytest.mark.parametrize(
    ("name", "raw", "words"),
    [
        ("MINDROUTE_UPSTREAM_MAX_BODY_BYTES", "32MB", "expected a whole number, got '32MB'"),
        ("MINDROUTE_UPSTREAM_MAX_BODY_BYTES", "-5", "expected a whole number"),
        ("MINDROUTE_UPSTREAM_MAX_BODY_BYTES", "10", "must be at least 1024, got 10"),
        ("MINDROUTE_UPSTREAM_MAX_LINE_BYTES", "64000000", "must not be more than MINDROUTE_UPSTREAM_MAX_BODY_BYTES"),
        ("MINDROUTE_UPSTREAM_CONNECTIONS_PER_HOST", "0", "must be at least 1, got 0"),
        ("MINDROUTE_UPSTREAM_CONNECTIONS_PER_HOST", "5000", "MINDROUTE_UPSTREAM_CONNECTIONS_TOTAL: must be at least"),
    ],
)
def test_a_bad_setting_is_refused_with_its_name(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, words: str
) -> None:
    monkeypatch.setenv("MINDROUTE_SECRETS_FILE", "/nonexistent/secrets.toml")
    monkeypatch.setenv("MINDROUTE_UPSTREAM_MAX_BODY_BYTES", str(32 * MIB))
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError, match=words):
        load_upstream_limits()


def test_a_setting_takes_underscores_between_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDROUTE_SECRETS_FILE", "/nonexistent/secrets.toml")
    monkeypatch.setenv("MINDROUTE_UPSTREAM_MAX_BODY_BYTES", "64_000_000")
    assert load_upstream_limits().max_body_bytes == 64_000_000


# --- the model list ("refresh models", "test connection") ----------------------------------------------


@pytest.mark.parametrize("bomb", [False, True], ids=["300-mb", "gzip-bomb"])
def test_a_model_list_over_the_limit_is_a_clear_failure(bomb: bool) -> None:
    async def handler(conn: Conn) -> None:
        if bomb:
            await conn.request()
            packed = gzip_bomb()
            head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(packed)
            await conn.send(head + packed)
            await conn.wait_eof()
        else:
            await send_lazily(conn, CHUNKED_HEAD, b"x" * PIECE, HUGE, chunk=True)

    with Scripted(handler) as server:
        result = fetch_models("openai", server.endpoint, KEY, timeout_s=30)
    assert not result.ok
    assert result.error == (
        f"Upstream answer too large: the answer from 127.0.0.1:{server.port} is over 4 MiB "
        "(MINDROUTE_UPSTREAM_MAX_BODY_BYTES)"
    )
    assert server.sent < BODY_LIMIT + KERNEL_BUFFERS


def test_a_bad_upstream_limit_stops_start_up_with_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from cryptography.fernet import Fernet

    monkeypatch.setenv("MINDROUTE_SECRETS_FILE", "/nonexistent/secrets.toml")
    monkeypatch.setenv("MINDROUTE_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("MINDROUTE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MINDROUTE_UPSTREAM_MAX_LINE_BYTES", "lots")
    with pytest.raises(ConfigError, match="MINDROUTE_UPSTREAM_MAX_LINE_BYTES: expected a whole number"):
        config.load_settings()
