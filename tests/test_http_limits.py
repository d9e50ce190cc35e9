"""The HTTP server protocol's header cap and read timeouts, against a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mindroute.http import limits as http_limits


async def echo(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse(f"got {len(body)} bytes")


@pytest.fixture
def server_port(monkeypatch) -> Iterator[int]:
    monkeypatch.setattr(http_limits, "HEAD_TIMEOUT_S", 1.0)
    monkeypatch.setattr(http_limits, "BODY_IDLE_TIMEOUT_S", 1.0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = Starlette(routes=[Route("/", echo, methods=["GET", "POST"])])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=http_limits.LimitedHttpToolsProtocol,
        log_level="warning",
        lifespan="off",
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return data


def test_a_60_mb_header_is_refused_as_soon_as_the_cap_is_passed(server_port) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server_port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 60_000_000:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert sent < 10_000_000  # the server stopped reading long before 60 MB
    assert time.monotonic() - started < 5


def test_a_normal_request_and_a_kept_alive_second_one_pass(server_port) -> None:
    with socket.create_connection(("127.0.0.1", server_port)) as sock:
        sock.settimeout(10)
        request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Pad: " + b"p" * 8000 + b"\r\n\r\nhello"
        sock.sendall(request)
        assert b"got 5 bytes" in sock.recv(65536)
        time.sleep(1.5)  # idle between requests longer than the head timeout: uvicorn's keep-alive rules
        sock.sendall(request)
        assert b"got 5 bytes" in sock.recv(65536)


def test_a_dripped_head_is_cut_off_with_408(server_port) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server_port)) as sock:
        sock.settimeout(10)
        answer = b""
        try:
            for piece in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"d" * 40:
                sock.sendall(bytes([piece]))
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 4


def test_a_connection_that_sends_nothing_is_closed(server_port) -> None:
    with socket.create_connection(("127.0.0.1", server_port)) as sock:
        started = time.monotonic()
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 3


def test_a_body_that_goes_silent_is_cut_off(server_port) -> None:
    with socket.create_connection(("127.0.0.1", server_port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part")
        started = time.monotonic()
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"got" not in answer
        assert time.monotonic() - started < 4
