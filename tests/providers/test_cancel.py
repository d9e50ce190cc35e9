"""mindroute/providers/cancel.py on its own: a sync httpx request blocked on its socket, over plain
TCP and over TLS, ends within a second when its scope is cancelled from another thread, and the
server sees the connection close; other requests on the same client are not touched."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mindroute.providers.cancel import CancelScope, is_cancellable, make_cancellable

PROMPT_S = 1.0


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class HoldingServer:
    """Reads a request, then says nothing (or, on path /fast, answers at once); notes each close."""

    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.closed = threading.Semaphore(0)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            self.requests += 1
            if head.startswith(b"GET /fast"):
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                return
            while conn.recv(65536):  # hold until the client goes away
                pass
            self.closed.release()
        except (OSError, ssl.SSLError):
            self.closed.release()
        finally:
            conn.close()

    def stop(self) -> None:
        self.sock.close()


@pytest.fixture(params=["http", "https"])
def served(request, tmp_path) -> Iterator[tuple[HoldingServer, httpx.Client]]:
    tls, verify = None, True
    if request.param == "https":
        cert, key = self_signed(tmp_path)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        verify = ssl.create_default_context(cafile=str(cert))
    server = HoldingServer(tls)
    client = make_cancellable(httpx.Client(verify=verify, timeout=httpx.Timeout(5.0, read=60.0)))
    yield server, client
    client.close()
    server.stop()


def test_a_cancelled_request_ends_at_once_and_the_server_sees_the_close(served) -> None:
    server, client = served
    assert is_cancellable(client)
    scope = CancelScope()
    threading.Timer(0.3, scope.cancel).start()
    began = time.monotonic()
    with pytest.raises(httpx.ReadError, match="stopped"), scope.bound():
        client.get(server.url + "/hold")
    assert time.monotonic() - began < 0.3 + PROMPT_S
    assert server.closed.acquire(timeout=PROMPT_S)


def test_a_scope_cancelled_before_the_request_sends_nothing(served) -> None:
    server, client = served
    scope = CancelScope()
    scope.cancel()
    with pytest.raises(httpx.ConnectError), scope.bound():
        client.get(server.url + "/hold")
    time.sleep(0.1)
    assert server.requests == 0


def test_cancelling_one_request_leaves_the_others_alone(served) -> None:
    server, client = served
    other_done = threading.Event()
    other_error: list[BaseException] = []

    def other() -> None:  # the same client, no scope: not stoppable, and not stopped
        try:
            client.get(server.url + "/hold", timeout=httpx.Timeout(5.0, read=1.5))
        except httpx.ReadTimeout as exc:
            other_error.append(exc)
        other_done.set()

    threading.Thread(target=other, daemon=True).start()
    scope = CancelScope()
    threading.Timer(0.3, scope.cancel).start()
    with pytest.raises(httpx.ReadError), scope.bound():
        client.get(server.url + "/hold")
    assert not other_done.is_set()  # still waiting for its answer
    assert other_done.wait(5) and isinstance(other_error[0], httpx.ReadTimeout)  # its own timeout ended it
    assert client.get(server.url + "/fast").text == "ok"  # and the client goes on working


def test_make_cancellable_is_idempotent() -> None:
    client = httpx.Client()
    assert not is_cancellable(client)
    make_cancellable(make_cancellable(client))
    assert is_cancellable(client)
    backend = client._transport._pool._network_backend
    assert not hasattr(backend._inner, "_inner")  # wrapped once
    client.close()
