"""The sync (httpx) transport: the playground's chat calls and every model list.

One pooled client per provider (scheme, host and port), each cancellable from another thread
(cancel.py); bodies decompressed here and refused past MindRoute's size limits; httpx's failures
mapped to the typed errors through one table, `_transport_error`.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import threading
import zlib
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from mindroute.config import get_upstream_limits
from mindroute.i18n import _l
from mindroute.providers import transport
from mindroute.providers.cancel import make_cancellable
from mindroute.providers.errors import ProviderError, UpstreamError, body_too_large
from mindroute.providers.shapes import HttpCall
from mindroute.providers.sse import LineSplitter
from mindroute.providers.transport import ACCEPT_ENCODING, DEFAULT_TIMEOUT, USER_AGENT, host_of, text_of

# --- the pools ------------------------------------------------------------------------------

_sync_clients: dict[tuple[str, str, int | None], httpx.Client] = {}
_sync_clients_lock = threading.Lock()


def _origin_key(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:  # httpx refuses it with its own error; it needs some client to do that
        return "", url, None


def shared_client(url: str = "") -> httpx.Client:
    """The process's pooled sync client for `url`'s provider (scheme, host and port), created on first use.

    One client per provider, because httpx's connection limits are per client: a provider that
    holds every one of its connections makes only its own calls wait, never another provider's.
    Streamlit runs each session in a thread; the clients are thread-safe.
    """
    key = _origin_key(url)
    with _sync_clients_lock:
        client = _sync_clients.get(key)
        if client is None or client.is_closed:
            limits = get_upstream_limits()
            # No transport retries: a request that may have reached the model is never sent twice.
            # No kept-alive connections either: httpcore puts a connection back in the pool with
            # bytes still buffered on it (a second answer to one request), and the next call would
            # read them as its own answer. A playground call waits seconds for the model; a new
            # connection per call costs a handshake.
            # `Connection: close` makes that so on the wire too, and it matters: httpcore marks a
            # finished keep-alive connection idle before it takes the pool's lock, so another thread
            # can be handed that connection in between and then have it closed under its own request
            # by the pool's "too many idle connections" sweep ("[Errno 9] Bad file descriptor", 1 in
            # ~100 calls under load). A connection that must close never becomes idle: the thread
            # that used it closes it.
            client = _sync_clients[key] = httpx.Client(
                timeout=DEFAULT_TIMEOUT,
                limits=httpx.Limits(max_connections=limits.connections_per_host, max_keepalive_connections=0),
                headers={"user-agent": USER_AGENT, "accept-encoding": ACCEPT_ENCODING, "connection": "close"},
                # A cookie one caller's answer set is never sent on another caller's call.
                cookies=http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
            )
            # The playground's Stop ends a call from another thread (mindroute/providers/cancel.py).
            make_cancellable(client)
        return client


def close_shared_client() -> None:
    """Close the sync pools (at shutdown, or in tests); the next call opens new ones."""
    with _sync_clients_lock:
        clients = list(_sync_clients.values())
        _sync_clients.clear()
    for client in clients:
        client.close()


# --- reading the body -----------------------------------------------------------------------


class _BoundedBody:
    """The sync path's body decoder: gzip or deflate inflated as it arrives, never past `limit` bytes out."""

    def __init__(self, content_encoding: str | None, limit: int, host: str) -> None:
        codings = [
            coding
            for coding in (part.strip().lower() for part in (content_encoding or "").split(","))
            if coding and coding != "identity"
        ]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise UpstreamError(
                _l(
                    "{host} answered in a content encoding MindRoute does not read ({encoding})",
                    host=host,
                    encoding=content_encoding,
                )
            )
        self._coding = codings[0] if codings else None
        self._inflater: Any = None
        self._limit = limit
        self._host = host
        self.size = 0

    def feed(self, data: bytes) -> bytes:
        if self._coding is not None:
            data = self._inflate(data)
        self.size += len(data)
        if self.size > self._limit:
            raise body_too_large(self._host, self._limit)
        return data

    def _inflate(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            if self._inflater is None:
                if self._coding != "deflate":
                    wbits = 16 + zlib.MAX_WBITS  # gzip
                elif data[0] & 0x0F == 8:
                    wbits = zlib.MAX_WBITS  # deflate in its zlib wrapper, as the RFC says
                else:
                    wbits = -zlib.MAX_WBITS  # raw deflate, as some servers send it
                self._inflater = zlib.decompressobj(wbits)
            budget = self._limit - self.size - sum(map(len, out)) + 1
            try:
                piece = self._inflater.decompress(data, budget)
            except zlib.error:
                raise UpstreamError(
                    _l("{host} sent a {coding} body that does not decompress", host=self._host, coding=self._coding)
                ) from None
            out.append(piece)
            if self._inflater.unconsumed_tail:  # it stopped at the budget: more is to come than the limit
                raise body_too_large(self._host, self._limit)
            data = b""
            if self._inflater.eof and self._inflater.unused_data:  # another gzip member follows
                data, self._inflater = self._inflater.unused_data, None
        return b"".join(out)


class HttpxAnswer:
    """An httpx response as the adapters read it (transport.SyncAnswer)."""

    __slots__ = ("_limit", "_line_limit", "_response", "host")

    def __init__(self, response: httpx.Response, host: str) -> None:
        limits = get_upstream_limits()
        self._response = response
        self._limit = limits.max_body_bytes
        self._line_limit = limits.max_line_bytes
        self.host = host

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def ok(self) -> bool:
        return self._response.is_success

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def reason(self) -> str:
        return self._response.reason_phrase

    @property
    def line_limit(self) -> int:
        return self._line_limit

    def text(self, content: bytes) -> str:
        return text_of(content, self._response.charset_encoding)

    def read(self) -> bytes:
        return b"".join(self._pieces())

    def lines(self) -> Iterator[str]:
        splitter = LineSplitter(self._line_limit, self.host)
        for piece in self._pieces():
            yield from splitter.feed(piece)
        yield from splitter.finish()

    def _pieces(self) -> Iterator[bytes]:
        """The body, decompressed, in pieces as they arrive, refused past the body limit."""
        response, limit, host = self._response, self._limit, self.host
        encoding = response.headers.get("content-encoding")
        length = response.headers.get("content-length")
        if not encoding and length and length.isdigit() and int(length) > limit:
            raise body_too_large(host, limit)
        body = _BoundedBody(encoding, limit, host)
        for raw in response.iter_raw():
            piece = body.feed(raw)
            if piece:
                yield piece


# --- calls ----------------------------------------------------------------------------------


def _timeout_seconds(timeout: httpx.Timeout, exc: httpx.TimeoutException) -> float | None:
    if isinstance(exc, httpx.ConnectTimeout):
        return timeout.connect
    if isinstance(exc, httpx.WriteTimeout):
        return timeout.write
    if isinstance(exc, httpx.PoolTimeout):
        return timeout.pool
    return timeout.read


def _transport_error(exc: Exception, url: str, timeout: httpx.Timeout, started_answer: bool) -> ProviderError:
    host = host_of(url)
    if isinstance(exc, httpx.TimeoutException):
        seconds = _timeout_seconds(timeout, exc)
        if isinstance(exc, httpx.ConnectTimeout):
            return transport.connect_timeout(host, seconds)
        if isinstance(exc, httpx.PoolTimeout):
            return transport.pool_exhausted(host, seconds or 0.0)
        return transport.read_timeout(host, seconds, started_answer)
    if isinstance(exc, httpx.ConnectError):
        return transport.unreachable(host, exc or exc.__class__.__name__)
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return transport.unusable_url(exc)
    if isinstance(exc, UnicodeEncodeError):
        return transport.unsendable_key()
    broken = isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError) and started_answer
    return transport.broken_or_failed(host, exc, broken)


# What httpx's failures are turned into typed errors; anything else is a bug and propagates as is.
_TRANSPORT_ERRORS = (httpx.HTTPError, httpx.InvalidURL, UnicodeEncodeError)


class HttpxTransport:
    """transport.SyncTransport over the shared httpx clients."""

    @contextlib.contextmanager
    def post(self, call: HttpCall, timeout: httpx.Timeout, *, stream: bool) -> Iterator[HttpxAnswer]:
        with self._request("POST", call.url, timeout, stream, headers=call.headers, json=call.body) as answer:
            yield answer

    @contextlib.contextmanager
    def get(
        self, url: str, headers: Mapping[str, str], params: Mapping[str, str], timeout: httpx.Timeout
    ) -> Iterator[HttpxAnswer]:
        with self._request("GET", url, timeout, False, headers=headers, params=params) as answer:
            yield answer

    @contextlib.contextmanager
    def _request(
        self, method: str, url: str, timeout: httpx.Timeout, stream: bool, **kwargs: Any
    ) -> Iterator[HttpxAnswer]:
        answer: HttpxAnswer | None = None
        try:
            # Leaving this block early (the consumer closed its generator) closes the response
            # unread, which drops the connection: the provider sees the disconnect and stops.
            with shared_client(url).stream(method, url, timeout=timeout, **kwargs) as response:
                answer = HttpxAnswer(response, host_of(url))
                yield answer
        except _TRANSPORT_ERRORS as exc:
            started_answer = stream and answer is not None and answer.ok
            raise _transport_error(exc, url, timeout, started_answer) from None


HTTPX = HttpxTransport()
