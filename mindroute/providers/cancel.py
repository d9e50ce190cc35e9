"""Stopping a sync (httpx) upstream call from another thread, at once, even while it waits for the
provider's first byte.

httpx has no way to cancel a blocking request: the thread sits in the socket's `recv` until the
provider answers or the read timeout ends it, and closing the socket from another thread does not
wake it on Linux. So every connection of the process's sync client is opened through a thin
network backend (`make_cancellable`), and a call that may be stopped runs its I/O inside a
`CancelScope` (`with scope.bound(): ...` in the thread doing the I/O). `scope.cancel()`, from any
thread, shuts down the socket that the call is reading or writing (`shutdown(SHUT_RDWR)` wakes the
blocked `recv` and sends the provider a FIN), and any later I/O of that call fails at once with
httpcore's `ReadError`, which httpx raises as `httpx.ReadError`. A connection that saw a cancel is
closed by httpcore, never returned to the pool. Calls outside a scope are not affected.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

CANCELLED_MESSAGE = "the call was stopped"

_current = threading.local()  # the CancelScope of the call this thread is doing I/O for, if any
_install_lock = threading.Lock()


class CancelScope:
    """One call's cancellation: `bound()` in the thread doing its I/O, `cancel()` from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: set[_CancellableStream] = set()
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @contextlib.contextmanager
    def bound(self) -> Iterator[CancelScope]:
        """Run the body's upstream I/O (in this thread) under this scope."""
        previous = getattr(_current, "scope", None)
        _current.scope = self
        try:
            yield self
        finally:
            _current.scope = previous

    def cancel(self) -> None:
        """Abort the call's I/O now (idempotent, any thread)."""
        with self._lock:
            self._cancelled = True
            active = list(self._active)
        for stream in active:
            stream.abort()

    def _enter(self, stream: _CancellableStream) -> None:
        with self._lock:
            if not self._cancelled:
                self._active.add(stream)
                return
        stream.abort()
        raise httpcore.ReadError(CANCELLED_MESSAGE)

    def _discard(self, stream: _CancellableStream) -> bool:
        """Forget a stream whose I/O failed; whether the scope was cancelled by then."""
        with self._lock:
            self._active.discard(stream)
            return self._cancelled

    def _leave(self, stream: _CancellableStream) -> None:
        with self._lock:
            self._active.discard(stream)
            cancelled = self._cancelled
        if cancelled:  # cancelled during this I/O: whatever it returned, the call is over
            raise httpcore.ReadError(CANCELLED_MESSAGE)


def _scope() -> CancelScope | None:
    return getattr(_current, "scope", None)


class _CancellableStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def _io(self, action: Any, *args: Any) -> Any:
        scope = _scope()
        if scope is None:
            return action(*args)
        scope._enter(self)
        try:
            result = action(*args)
        except Exception:
            if scope._discard(self):  # failed because it was stopped: say so, not how the socket broke
                raise httpcore.ReadError(CANCELLED_MESSAGE) from None
            raise
        except BaseException:
            scope._discard(self)
            raise
        scope._leave(self)
        return result

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._io(self._inner.read, max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._io(self._inner.write, buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _CancellableStream(self._io(self._inner.start_tls, ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def abort(self) -> None:
        """Shut the socket down in both directions: a `recv` blocked in another thread returns."""
        sock = self._inner.get_extra_info("socket")
        if sock is None:
            return
        with contextlib.suppress(OSError):
            # The plain socket's shutdown, also for an SSLSocket: its own would tear down the TLS
            # state under the thread that is reading it.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _CancellableBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def _opened(self, stream: httpcore.NetworkStream) -> httpcore.NetworkStream:
        wrapped = _CancellableStream(stream)
        scope = _scope()
        if scope is not None and scope.cancelled:  # stopped while connecting
            stream.close()
            raise httpcore.ConnectError(CANCELLED_MESSAGE)
        return wrapped

    def _refuse_if_cancelled(self) -> None:
        scope = _scope()
        if scope is not None and scope.cancelled:
            raise httpcore.ConnectError(CANCELLED_MESSAGE)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self._refuse_if_cancelled()
        return self._opened(
            self._inner.connect_tcp(
                host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
            )
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        self._refuse_if_cancelled()
        return self._opened(self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _pools(client: httpx.Client) -> list[Any]:
    transports = [client._transport, *(t for t in client._mounts.values() if t is not None)]
    return [pool for t in transports if (pool := getattr(t, "_pool", None)) is not None]


def make_cancellable(client: httpx.Client) -> httpx.Client:
    """Route every connection `client` opens from now on through the cancellable backend
    (idempotent). Call it right after creating the client: connections opened before stay as they
    were, and a call that reuses one of them cannot be stopped early."""
    with _install_lock:
        for pool in _pools(client):
            backend = getattr(pool, "_network_backend", None)
            if backend is not None and not isinstance(backend, _CancellableBackend):
                pool._network_backend = _CancellableBackend(backend)
    return client


def is_cancellable(client: httpx.Client) -> bool:
    """Whether every pool of `client` opens its connections through the cancellable backend."""
    pools = _pools(client)
    return bool(pools) and all(isinstance(getattr(p, "_network_backend", None), _CancellableBackend) for p in pools)
