"""A raw HTTP/1.1 server on 127.0.0.1, scripted per connection with asyncio streams, so it can misbehave on
purpose: answer twice, frame an answer wrongly, stall, or send hundreds of megabytes lazily."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any


class Conn:
    """One accepted connection, as the handler sees it."""

    def __init__(self, server: Scripted, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.number = number  # 1 for the first accepted connection
        self.reader = reader
        self.writer = writer

    async def request(self) -> bytes | None:
        """The next request (head and Content-Length body), recorded; None when the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            with self.server.lock:
                self.server.eofs.append(self.number)  # the client closed its side
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        try:
            raw = head + await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        with self.server.lock:
            self.server.requests.append((self.number, raw))
        return raw

    async def send(self, data: bytes) -> None:
        """Write and wait until the kernel took it; counts what was handed over in `server.sent`."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError:
            with self.server.lock:
                self.server.eofs.append(self.number)  # the client went away while the server wrote
            raise
        with self.server.lock:
            self.server.sent += len(data)

    async def wait_eof(self, within: float = 5.0) -> bool:
        """True when the client closes its side within `within` seconds (anything it sends is ignored)."""
        try:
            async with asyncio.timeout(within):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        with self.server.lock:
            self.server.eofs.append(self.number)
        return True


Handler = Callable[[Conn], Awaitable[None]]


class Scripted:
    """`with Scripted(handler) as server`: the handler runs once per accepted connection, in the server's
    own thread and event loop, so sync and async clients alike can be pointed at `server.url`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.lock = threading.Lock()
        self.accepted = 0
        self.requests: list[tuple[int, bytes]] = []  # (connection number, raw request)
        self.eofs: list[int] = []  # connections whose client side closed, seen by wait_eof
        self.errors: list[BaseException] = []
        self.sent = 0  # bytes handed to the kernel, all connections together
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 20))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        for task in list(self._tasks):
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*self._tasks, return_exceptions=True))
        self._loop.close()

    def __enter__(self) -> Scripted:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        assert not self.errors, self.errors

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self.lock:
            self.accepted += 1
            number = self.accepted
        try:
            await self.handler(Conn(self, number, reader, writer))
        except (asyncio.CancelledError, ConnectionError):
            pass  # the test is over, or the client went away while the server still wrote
        except Exception as exc:  # noqa: BLE001 - reported when the test leaves the server
            self.errors.append(exc)
        finally:
            writer.close()
            self._tasks.discard(task)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        """As an admin types an OpenAI-compatible endpoint."""
        return self.url + "/v1"

    @property
    def connections_of_requests(self) -> list[int]:
        with self.lock:
            return [number for number, _ in self.requests]

    def wait_for(self, condition: Callable[[], bool], within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while not condition():
            assert time.monotonic() < deadline, "condition not met in time"
            time.sleep(0.01)


def answer(body: bytes = b"{}", status: str = "200 OK", *headers: str, version: str = "HTTP/1.1") -> bytes:
    """A whole answer framed by its Content-Length."""
    lines = [f"{version} {status}", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


def chat_json(text: str, model: str = "m") -> bytes:
    """An OpenAI Chat Completions answer carrying `text`."""
    body: dict[str, Any] = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    return json.dumps(body).encode()


def chat_answer(text: str, *headers: str) -> bytes:
    return answer(chat_json(text), "200 OK", "content-type: application/json", *headers)


async def answer_each(conn: Conn, make: Callable[[bytes], bytes] = lambda _: chat_answer("ok")) -> None:
    """Keep-alive server behaviour: every request answered, until the client closes."""
    while (request := await conn.request()) is not None:
        await conn.send(make(request))
