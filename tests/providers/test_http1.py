"""The lean HTTP/1.1 client (mindroute.providers.http1) against small real servers on 127.0.0.1,
each scripted per connection so it can misbehave on purpose."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest

from mindroute.providers import base, http1

T = TypeVar("T")
TIMEOUT = httpx.Timeout(5.0)
SHORT_READ = httpx.Timeout(5.0, read=0.2)
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")


# --- a scripted server ------------------------------------------------------------------------


class Conn:
    """One accepted connection, as the handler sees it."""

    def __init__(self, server: Server, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.number = number  # 1 for the first accepted connection
        self.reader = reader
        self.writer = writer

    async def request(self) -> bytes | None:
        """The next request (head and Content-Length body), recorded; None when the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        raw = head + await self.reader.readexactly(length)
        self.server.requests.append((self.number, raw))
        return raw

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def wait_eof(self, within: float = 2.0) -> bool:
        """True when the client closes its side within `within` seconds (anything it sends is ignored)."""
        try:
            async with asyncio.timeout(within):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        self.server.eofs.append(self.number)
        return True


Handler = Callable[[Conn], Awaitable[None]]


class Server:
    """`async with Server(handler) as server`: the handler runs once per accepted connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepted = 0
        self.requests: list[tuple[int, bytes]] = []  # (connection number, raw request)
        self.eofs: list[int] = []  # connections whose client side closed, seen by wait_eof
        self.errors: list[BaseException] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        assert not self.errors, self.errors

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            await self.handler(Conn(self, self.accepted, reader, writer))
        except asyncio.CancelledError:
            pass  # the test's loop ends while this connection still waits (asyncio would log it)
        except Exception as exc:  # noqa: BLE001 - reported when the test leaves the server
            self.errors.append(exc)
        finally:
            writer.close()

    def url(self, path: str = "/v1/chat") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def connections_of_requests(self) -> list[int]:
        return [number for number, _ in self.requests]


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(main())


def answer(body: bytes = b"{}", status: str = "200 OK", *headers: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"{version} {status}", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


async def answer_each(conn: Conn, make: Callable[[bytes], bytes] = lambda _: answer()) -> None:
    """Keep-alive server behaviour: every request answered, until the client closes."""
    while (request := await conn.request()) is not None:
        await conn.send(make(request))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_for(condition: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --- answers and requests ---------------------------------------------------------------------


def test_a_content_length_answer_read_whole_and_the_request_as_sent() -> None:
    body = b'{"model": "m", "text": "\xc3\xa9t\xc3\xa9"}'
    reply = b'{"ok": true, "text": "\xc3\xa9"}'

    async def handler(conn: Conn) -> None:
        await answer_each(
            conn,
            lambda _: answer(
                reply, "201 Created", "Content-Type: application/json; charset=utf-8", "X-Request-Id: Abc-1"
            ),
        )

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            headers = {"authorization": "Bearer sk-test", "content-type": "application/json", "x-trace": "t1"}
            response = await pool.post(server.url("/v1/chat?x=1&y=%20z"), headers, body, TIMEOUT, whole=True)
            assert (response.status, response.reason) == (201, "Created")
            assert response.content == reply
            assert response.charset == "utf-8"
            assert isinstance(response.headers, httpx.Headers)
            assert response.headers["x-request-id"] == "Abc-1"
            assert response.headers["X-REQUEST-ID"] == "Abc-1"
            assert response.headers["Content-Type"] == "application/json; charset=utf-8"

            assert len(server.requests) == 1
            head, _, sent_body = server.requests[0][1].partition(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            assert request_line == "POST /v1/chat?x=1&y=%20z HTTP/1.1"
            received = [tuple(part.strip() for part in line.split(":", 1)) for line in header_lines]
            names = [name.lower() for name, _ in received]
            assert len(names) == len(set(names)), received
            assert dict((name.lower(), value) for name, value in received) == {
                "host": f"127.0.0.1:{server.port}",
                "user-agent": "MindRoute",
                "authorization": "Bearer sk-test",
                "content-type": "application/json",
                "x-trace": "t1",
                "content-length": str(len(body)),
            }
            assert sent_body == body
        await pool.aclose()

    run(main)


def test_chunked_answers_with_extensions_and_trailers_read_whole_and_piece_by_piece() -> None:
    go_on = asyncio.Event()

    async def handler(conn: Conn) -> None:
        await conn.request()  # read whole: everything at once, with extensions, upper-case hex, trailers
        await conn.send(
            CHUNKED_HEAD + b'5;foo=bar\r\nhello\r\n1\r\n \r\nA ; x="y"\r\n0123456789\r\n'
            b"0\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n"
        )
        await conn.request()  # read in pieces: the first chunk, then the rest once the client has it
        await conn.send(CHUNKED_HEAD + b"5;foo=bar\r\nhello\r\n")
        async with asyncio.timeout(2):
            await go_on.wait()
        await conn.send(b"1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: yes\r\n\r\n")
        await answer_each(conn)

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            whole = await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert whole.status == 200
            assert whole.content == b"hello 0123456789"

            response = await pool.post(server.url(), {}, b"{}", TIMEOUT)
            pieces = response.pieces()
            first = await anext(pieces)
            assert first == b"hello"
            assert not go_on.is_set()  # it came before the server sent the rest
            go_on.set()
            rest = [piece async for piece in pieces]
            assert b"".join(rest) == b" world"
            response.release()

            # The trailers were consumed: the same connection carries a third, plain exchange.
            third = await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert third.content == b"{}"
            assert server.accepted == 1
            assert server.connections_of_requests == [1, 1, 1]
        await pool.aclose()

    run(main)


def test_a_close_delimited_body_is_read_whole_and_its_connection_not_reused() -> None:
    async def handler(conn: Conn) -> None:
        while await conn.request() is not None:
            # Neither Content-Length nor chunked: the body ends where the server's side ends. The
            # server keeps reading, so a client that wrongly reused the connection would show here.
            await conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end ")
            await conn.send(b"of the connection")
            conn.writer.write_eof()

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            first = await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert first.content == b"until the end of the connection"
            assert not pool._open
            second = await pool.post(server.url(), {}, b"{}", TIMEOUT)
            assert await second.read() == b"until the end of the connection"
            assert server.accepted == 2
            assert server.connections_of_requests == [1, 2]
        await pool.aclose()

    run(main)


def test_keep_alive_three_sequential_requests_use_one_connection() -> None:
    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(answer_each) as server:
            for n in range(3):
                response = await pool.post(server.url(), {}, b'{"n": %d}' % n, TIMEOUT, whole=True)
                assert response.content == b"{}"
            assert server.accepted == 1
            assert server.connections_of_requests == [1, 1, 1]
            assert len(pool._open) == 1
        await pool.aclose()

    run(main)


def test_a_connection_idle_longer_than_the_keepalive_expiry_is_not_reused() -> None:
    async def main() -> None:
        pool = http1.Pool(4, 0.1, "MindRoute")
        async with Server(answer_each) as server:  # the server would keep it open for ever
            await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)  # at once: reused
            await asyncio.sleep(0.15)
            await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert server.connections_of_requests == [1, 1, 2]
            assert len(pool._open) == 1
        await pool.aclose()

    run(main)


@pytest.mark.parametrize(
    "closing_answer",
    [answer(b"{}", "200 OK", "Connection: close"), answer(b"{}", "200 OK", version="HTTP/1.0")],
    ids=["connection-close", "http-1.0"],
)
def test_connection_close_or_an_http_1_0_answer_makes_the_next_request_open_a_new_connection(
    closing_answer: bytes,
) -> None:
    async def handler(conn: Conn) -> None:
        # The server leaves the connection open: only the client's own choice keeps it from reuse.
        await answer_each(conn, lambda _: closing_answer)

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            for _ in range(2):
                response = await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
                assert response.content == b"{}"
            assert server.accepted == 2
            assert server.connections_of_requests == [1, 2]
        await pool.aclose()

    run(main)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_gzip_and_deflate_bodies_are_decoded_whole_and_in_pieces(coding: str) -> None:
    text = b'{"choices": [{"text": "%s"}]}' % (b"compressible " * 500)
    packed = gzip.compress(text) if coding == "gzip" else zlib.compress(text)
    cut = len(packed) // 3
    thirds = [packed[:cut], packed[cut : 2 * cut], packed[2 * cut :]]

    def reply(request: bytes) -> bytes:
        if b" /length " in request:
            return answer(packed, "200 OK", f"Content-Encoding: {coding}")
        head = f"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-encoding: {coding}\r\n\r\n".encode()
        return head + chunked(*thirds)

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(lambda conn: answer_each(conn, reply)) as server:
            for path in ("/length", "/chunked"):
                whole = await pool.post(server.url(path), {}, b"{}", TIMEOUT, whole=True)
                assert whole.content == text, path
                streamed = await pool.post(server.url(path), {}, b"{}", TIMEOUT)
                pieces = [piece async for piece in streamed.pieces()]
                assert all(pieces)
                assert b"".join(pieces) == text, path
            assert server.connections_of_requests == [1, 1, 1, 1]
        await pool.aclose()

    run(main)


def test_interim_1xx_answers_are_skipped() -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        await conn.send(answer(b'{"real": 1}', "200 OK", "X-Final: yes"))
        await answer_each(conn)

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            response = await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert (response.status, response.reason) == (200, "OK")
            assert response.content == b'{"real": 1}'
            assert response.headers["x-final"] == "yes"
            assert "link" not in response.headers
            again = await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert again.content == b"{}"
            assert server.accepted == 1
        await pool.aclose()

    run(main)


# --- stale and lost connections ---------------------------------------------------------------


@pytest.mark.parametrize("when", ["right-after-answering", "on-the-next-request"])
def test_a_stale_kept_alive_connection_is_replaced_and_the_request_sent_again(when: str) -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(answer(b'{"n": %d}' % conn.number))  # no connection: close
        if conn.number == 1:
            if when == "on-the-next-request":
                await conn.request()  # the reused connection gets the request, and no answer at all
            return  # the server closes that kept-alive connection
        await answer_each(conn, lambda _: answer(b'{"n": %d}' % conn.number))

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            first = await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert first.content == b'{"n": 1}'
            second = await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert second.content == b'{"n": 2}'
            assert server.accepted == 2
            if when == "on-the-next-request":
                assert server.connections_of_requests == [1, 1, 2]  # sent again, once
            else:
                assert server.connections_of_requests[-1] == 2
            assert len(pool._open) == 1
        await pool.aclose()

    run(main)


def test_a_new_connection_that_closes_before_answering_is_not_retried() -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()  # and close without a word

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            with pytest.raises(http1.ConnectionLostError):
                await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert server.accepted == 1
            assert len(server.requests) == 1
            assert not pool._open
        await pool.aclose()

    run(main)


def test_a_reused_connection_that_closes_mid_answer_is_not_retried() -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(answer())
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\ncontent-")  # something came back: the request may have been seen

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            with pytest.raises(http1.ConnectionLostError):
                await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert server.accepted == 1
            assert server.connections_of_requests == [1, 1]
        await pool.aclose()

    run(main)


# --- timeouts and the slot limit --------------------------------------------------------------


def test_no_answer_head_within_the_read_timeout() -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.wait_eof()

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            started = time.monotonic()
            with pytest.raises(http1.ReadTimeoutError) as caught:
                await pool.post(server.url(), {}, b"{}", SHORT_READ, whole=True)
            assert 0.15 < time.monotonic() - started < 2.0
            assert caught.value.started_answer is False
            assert not pool._open
            await wait_for(lambda: server.eofs == [1])
        await pool.aclose()

    run(main)


@pytest.mark.parametrize(
    "stalling",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789",
        CHUNKED_HEAD + b"a\r\n0123456789\r\n",
        CHUNKED_HEAD + b"14\r\n0123456789",  # stops inside a chunk
    ],
    ids=["content-length", "chunked-between-chunks", "chunked-inside-a-chunk"],
)
def test_a_body_that_stalls_midway_is_a_read_timeout_after_the_answer_started(stalling: bytes) -> None:
    async def handler(conn: Conn) -> None:
        while await conn.request() is not None:
            await conn.send(stalling)

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            response = await pool.post(server.url(), {}, b"{}", SHORT_READ)
            pieces = response.pieces()
            assert await anext(pieces) == b"0123456789"
            with pytest.raises(http1.ReadTimeoutError) as caught:
                await anext(pieces)
            assert caught.value.started_answer is True
            response.release()

            with pytest.raises(http1.ReadTimeoutError) as caught:
                await pool.post(server.url(), {}, b"{}", SHORT_READ, whole=True)
            assert caught.value.started_answer is True
            assert not pool._open
        await pool.aclose()

    run(main)


def test_connecting_where_nothing_listens_fails_and_frees_the_slot() -> None:
    async def main() -> None:
        pool = http1.Pool(1, 30.0, "MindRoute")
        with pytest.raises(http1.ConnectFailedError) as caught:
            await pool.post(f"http://127.0.0.1:{closed_port()}/v1", {}, b"{}", TIMEOUT)
        assert isinstance(caught.value.os_error, ConnectionRefusedError)
        assert not pool._open
        async with Server(answer_each) as server:  # the only slot is free again
            response = await pool.post(server.url(), {}, b"{}", httpx.Timeout(5.0, pool=0.2), whole=True)
            assert response.status == 200
        await pool.aclose()

    run(main)


def test_waiting_for_a_slot_held_by_an_unreleased_response_is_a_connect_timeout() -> None:
    async def main() -> None:
        pool = http1.Pool(1, 30.0, "MindRoute")
        async with Server(answer_each) as a, Server(answer_each) as b:
            held = await pool.post(a.url(), {}, b"{}", TIMEOUT)  # head read, body not: the slot stays taken
            started = time.monotonic()
            with pytest.raises(http1.ConnectTimeoutError):
                await pool.post(b.url(), {}, b"{}", httpx.Timeout(5.0, pool=0.2), whole=True)
            assert 0.15 < time.monotonic() - started < 2.0
            assert b.accepted == 0
            assert len(pool._open) == 1
            held.release()
        await pool.aclose()

    run(main)


def test_an_idle_connection_to_another_origin_gives_its_slot_to_a_new_one() -> None:
    async def handler(conn: Conn) -> None:
        await answer_each(conn)
        conn.server.eofs.append(conn.number)

    async def main() -> None:
        pool = http1.Pool(1, 30.0, "MindRoute")
        async with Server(handler) as a, Server(handler) as b:
            response = await pool.post(a.url(), {}, b"{}", TIMEOUT)
            assert await response.read() == b"{}"
            response.release()  # read to its end: kept alive, idle
            other = await pool.post(b.url(), {}, b"{}", httpx.Timeout(5.0, pool=0.2), whole=True)
            assert other.content == b"{}"
            assert (a.accepted, b.accepted) == (1, 1)
            await wait_for(lambda: a.eofs == [1])  # the idle one was closed
            assert len(pool._open) == 1
        await pool.aclose()

    run(main)


def test_a_post_waiting_for_a_slot_gets_the_connection_a_finished_post_gives_back() -> None:
    async def handler(conn: Conn) -> None:
        await answer_each(conn, lambda request: answer(request[request.index(b"\r\n\r\n") + 4 :]))

    async def main() -> None:
        pool = http1.Pool(1, 30.0, "MindRoute")
        async with Server(handler) as server:
            held = await pool.post(server.url(), {}, b"first", TIMEOUT)
            waiting = asyncio.create_task(
                pool.post(server.url(), {}, b"second", httpx.Timeout(5.0, pool=0.5), whole=True)
            )
            await asyncio.sleep(0.05)
            assert await held.read() == b"first"  # read to its end: the connection is free again
            assert (await waiting).content == b"second"
            assert server.connections_of_requests == [1, 1]
        await pool.aclose()

    run(main)


def test_a_post_waiting_for_a_slot_gets_it_when_another_origins_connection_goes_idle() -> None:
    async def main() -> None:
        pool = http1.Pool(1, 30.0, "MindRoute")
        async with Server(answer_each) as a, Server(answer_each) as b:
            held = await pool.post(a.url(), {}, b"{}", TIMEOUT)
            waiting = asyncio.create_task(pool.post(b.url(), {}, b"{}", httpx.Timeout(5.0, pool=0.5), whole=True))
            await asyncio.sleep(0.05)
            assert await held.read() == b"{}"
            assert (await waiting).content == b"{}"
            assert (a.accepted, b.accepted) == (1, 1)
        await pool.aclose()

    run(main)


# --- release --------------------------------------------------------------------------------


def test_a_body_read_only_partly_then_released_closes_the_connection() -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n0123456789")
        await conn.wait_eof()  # the rest is never needed

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            response = await pool.post(server.url(), {}, b"{}", TIMEOUT)
            pieces = response.pieces()
            assert await anext(pieces) == b"0123456789"
            response.release()
            await pieces.aclose()
            await wait_for(lambda: server.eofs == [1])
            assert not pool._open
            again = await pool.post(server.url(), {}, b"{}", TIMEOUT)
            again.release()
            assert server.accepted == 2  # not reused
            assert server.connections_of_requests == [1, 2]
        await pool.aclose()

    run(main)


def test_a_body_read_to_its_end_then_released_is_reused() -> None:
    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(answer_each) as server:
            response = await pool.post(server.url(), {}, b"{}", TIMEOUT)
            assert await response.read() == b"{}"
            response.release()
            response.release()  # twice is harmless
            again = await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert again.content == b"{}"
            assert server.accepted == 1
            assert server.connections_of_requests == [1, 1]
        await pool.aclose()

    run(main)


# --- URLs and malformed answers ---------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://x/y", "http://[::1/v1", "not a url", "/v1/chat", "http:///v1"])
def test_invalid_urls_are_refused(url: str) -> None:
    with pytest.raises(http1.InvalidUrlError):
        http1.parse_url(url)

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        with pytest.raises(http1.InvalidUrlError):
            await pool.post(url, {}, b"{}", TIMEOUT)
        assert not pool._open
        await pool.aclose()

    run(main)


@pytest.mark.parametrize(
    ("url", "origin", "host_header", "path"),
    [
        ("http://h/p", ("http", "h", 80), "h", "/p"),
        ("http://h", ("http", "h", 80), "h", "/"),
        ("https://h/p", ("https", "h", 443), "h", "/p"),
        ("https://h:443/p", ("https", "h", 443), "h", "/p"),
        ("http://h:443/p", ("http", "h", 443), "h:443", "/p"),
        ("https://h:8443/p?q=1", ("https", "h", 8443), "h:8443", "/p?q=1"),
        ("http://[::1]:8080/x", ("http", "::1", 8080), "[::1]:8080", "/x"),
        ("http://[::1]/x", ("http", "::1", 80), "[::1]", "/x"),
    ],
)
def test_parse_url_gives_origin_host_header_and_path(
    url: str, origin: tuple[str, str, int], host_header: str, path: str
) -> None:
    target = http1.parse_url(url)
    assert tuple(target.origin) == origin
    assert target.host_header == host_header
    assert target.path == path


@pytest.mark.parametrize(
    "bad",
    [
        b"garbage\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n",
        CHUNKED_HEAD + b"zz\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD + b"5\r\nhelloXX0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (http1.MAX_HEAD_BYTES + 10) + b"\r\n\r\n",
    ],
    ids=[
        "garbage",
        "http-2",
        "status-not-a-number",
        "header-without-colon",
        "bad-length",
        "bad-chunk-size",
        "no-crlf",
        "head-over-64-kib",
    ],
)
def test_a_malformed_answer_is_a_bad_response(bad: bytes) -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(bad)
        await conn.wait_eof()

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            with pytest.raises(http1.BadResponseError):
                await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert not pool._open
            await wait_for(lambda: server.eofs == [1])
        await pool.aclose()

    run(main)


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "pieces"])
def test_a_body_that_does_not_decode_is_a_bad_response(whole: bool) -> None:
    async def handler(conn: Conn) -> None:
        await answer_each(conn, lambda _: answer(b"this is not gzip at all", "200 OK", "Content-Encoding: gzip"))

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(handler) as server:
            with pytest.raises(http1.Http1Error):
                response = await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=whole)
                await response.read()
        await pool.aclose()

    run(main)


def test_a_raw_deflate_body_is_decoded_as_httpx_and_aiohttp_do() -> None:
    text = b'{"text": "%s"}' % (b"raw deflate " * 50)
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = packer.compress(text) + packer.flush()

    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(
            lambda conn: answer_each(conn, lambda _: answer(raw, "200 OK", "Content-Encoding: deflate"))
        ) as server:
            response = await pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True)
            assert response.content == text
        await pool.aclose()

    run(main)


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer k\r\nx-injected: 1"},
        {"authorization": "Bearer k\nx-injected: 1"},
        {"authorization": "Bearer k\rx-injected: 1"},
        {"x-a\r\nx-injected": "1"},
    ],
    ids=["crlf-in-value", "lf-in-value", "cr-in-value", "crlf-in-name"],
)
def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(headers: dict[str, str]) -> None:
    async def main() -> None:
        pool = http1.Pool(4, 30.0, "MindRoute")
        async with Server(answer_each) as server:
            with pytest.raises(http1.InvalidHeaderError):
                await pool.post(server.url(), headers, b"{}", TIMEOUT, whole=True)
            await asyncio.sleep(0.05)
            assert server.accepted == 0
            assert server.requests == []
        await pool.aclose()

    run(main)


# --- cancellation -----------------------------------------------------------------------------


def test_a_cancelled_post_closes_its_connection() -> None:
    got_request = asyncio.Event()

    async def handler(conn: Conn) -> None:
        await conn.request()
        got_request.set()
        await conn.wait_eof()  # never answers

    async def main() -> None:
        pool = http1.Pool(1, 30.0, "MindRoute")
        async with Server(handler) as server:
            task = asyncio.create_task(pool.post(server.url(), {}, b"{}", TIMEOUT, whole=True))
            async with asyncio.timeout(2):
                await got_request.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await wait_for(lambda: server.eofs == [1], within=1.0)
            assert not pool._open
        async with Server(answer_each) as other:  # the only slot is free again
            response = await pool.post(other.url(), {}, b"{}", httpx.Timeout(5.0, pool=0.2), whole=True)
            assert response.content == b"{}"
        await pool.aclose()

    run(main)


# --- through the adapter layer ----------------------------------------------------------------


def test_the_adapter_layer_leaves_a_proxied_environment_to_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARIABLES, *NO_PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")

    async def main() -> None:
        try:
            assert base._lean_pool() is None
        finally:
            await base.aclose_shared_async_client()

    run(main)


def test_the_adapter_layer_uses_the_lean_pool_without_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARIABLES, *NO_PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)

    async def main() -> None:
        try:
            pool = base._lean_pool()
            assert isinstance(pool, http1.Pool)
            assert base._lean_pool() is pool  # one per loop
        finally:
            await base.aclose_shared_async_client()
        assert asyncio.get_running_loop() not in http1._pools

    run(main)


def test_no_proxy_alone_does_not_turn_the_lean_pool_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")

    async def main() -> None:
        try:
            assert isinstance(base._lean_pool(), http1.Pool)
        finally:
            await base.aclose_shared_async_client()

    run(main)
