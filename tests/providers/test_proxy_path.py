"""With a proxy named in the environment, the API path's upstream calls go through it (aiohttp does
proxies; the lean client is for direct connections), answers and streams alike."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from mindroute.providers.shapes import StreamEnd
from tests.providers.conftest import Target, ask, run_async
from tests.providers.fakes import expected_answer

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class ForwardProxy:
    """A plain-HTTP forward proxy on 127.0.0.1: takes absolute-form requests, sends each to its
    origin with `connection: close`, and relays the answer until the origin closes."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            method, url, version = request_line.split(" ")
            self.requests.append(f"{method} {url}")
            assert url.startswith("http://"), url
            authority, _, path = url[len("http://") :].partition("/")
            host, _, port = authority.partition(":")
            headers = [line for line in lines if line and not line.lower().startswith(("connection:", "proxy-"))]
            length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0)
            body = await reader.readexactly(length)
            up_reader, up_writer = await asyncio.open_connection(host, int(port or 80))
            forwarded = f"{method} /{path} {version}\r\n" + "".join(f"{h}\r\n" for h in headers)
            up_writer.write(forwarded.encode("latin-1") + b"connection: close\r\n\r\n" + body)
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            up_writer.close()
        finally:
            writer.close()

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        assert self._started.wait(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    for name in (*PROXY_VARIABLES, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ForwardProxy() as running:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{running.port}")
        yield running


def test_an_answer_goes_through_the_proxy_the_environment_names(openai: Target, proxy: ForwardProxy) -> None:
    result = run_async(lambda: openai.adapter.acomplete(ask("via proxy"), openai.endpoint, openai.key))
    assert result.text == expected_answer("via proxy")
    assert proxy.requests == [f"POST {openai.endpoint}/chat/completions"]
    assert openai.server.fake.requests[-1].headers["authorization"] == f"Bearer {openai.key}"


def test_a_stream_goes_through_the_proxy_the_environment_names(openai: Target, proxy: ForwardProxy) -> None:
    async def collect() -> list:
        return [item async for item in openai.adapter.astream(ask("streamed"), openai.endpoint, openai.key)]

    items = run_async(collect)
    assert isinstance(items[-1], StreamEnd)
    assert "".join(getattr(item, "text", "") for item in items[:-1]) == expected_answer("streamed")
    assert len(proxy.requests) == 1 and proxy.requests[0].startswith("POST http://127.0.0.1:")
