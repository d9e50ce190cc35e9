"""The async (aiohttp) transport: the API's chat calls, its hot path.

One pooled session per running event loop, with a count of calls in flight per provider so a wait
for a connection that ends in the timeout says the provider had every connection it may have;
bodies refused past MindRoute's size limits; aiohttp's failures mapped to the typed errors through
one table, `_transport_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import urllib.request
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import yarl
from aiohttp import hdrs

from mindroute.config import UpstreamLimits, get_upstream_limits
from mindroute.i18n import _l
from mindroute.providers import transport
from mindroute.providers.errors import BadRequestError, ProviderError, body_too_large
from mindroute.providers.shapes import HttpCall
from mindroute.providers.sse import LineSplitter, aiter_lines
from mindroute.providers.transport import ACCEPT_ENCODING, DEFAULT_TIMEOUT, USER_AGENT, host_of, text_of

POOL_KEEPALIVE_EXPIRY_S = 30.0  # the sync path keeps no idle connections (see transport_httpx.shared_client)
DNS_CACHE_TTL_S = 300.0  # a provider's host is resolved at most this often

# --- the pools ------------------------------------------------------------------------------


class _LoopClient:
    """The running loop's aiohttp session, the limits it was made with, and its calls in flight per provider."""

    __slots__ = ("in_flight", "limits", "session", "total")

    def __init__(self, session: aiohttp.ClientSession, limits: UpstreamLimits) -> None:
        self.session = session
        self.limits = limits
        self.in_flight: dict[str, int] = {}  # origin -> calls waiting for or holding a connection
        self.total = 0


# A session's pooled connections belong to the event loop that opened them, so "one per process"
# is one per running loop: a single one under uvicorn.
_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = weakref.WeakKeyDictionary()


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, except that a pooled connection with anything on it is never handed out.

    aiohttp keeps reading a kept-alive connection while it sits idle in the pool and queues what
    arrives as a response; its `_get` reuses such a connection anyway (aio-libs/aiohttp#13656), so
    a second answer that a provider (or a proxy) sent late would become the next caller's answer.
    A connection whose protocol says it should close (bytes or a parsed answer waiting on it, an
    unread body, an error) is closed here instead, and the next one in the pool tried.
    """

    async def _get(self, *args: Any, **kwargs: Any) -> Any:
        while True:
            connection = await super()._get(*args, **kwargs)
            if connection is None:
                return None
            protocol = connection.protocol
            if protocol is not None and not protocol.should_close:
                return connection
            connection.close()


def _new_session(limits: UpstreamLimits) -> aiohttp.ClientSession:
    connector = _Connector(
        limit=limits.connections_total,
        # One slow provider holding its connections makes only its own calls wait.
        limit_per_host=limits.connections_per_host,
        keepalive_timeout=POOL_KEEPALIVE_EXPIRY_S,
        ttl_dns_cache=DNS_CACHE_TTL_S,
        # Aborted TLS connections are only freed with this on the Pythons that need it (3.11 here);
        # aiohttp deprecates it on the ones that do not.
        enable_cleanup_closed=bool(getattr(aiohttp.connector, "NEEDS_CLEANUP_CLOSED", False)),
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
        cookie_jar=aiohttp.DummyCookieJar(),  # one caller's provider cookies never reach another's call
        # HTTP(S)_PROXY / NO_PROXY, as httpx honours them on the sync path. aiohttp looks them up on
        # every call when this is on, so it is on only when the environment names a proxy at all.
        trust_env=any(scheme != "no" for scheme in urllib.request.getproxies()),
        timeout=_aio_timeout(DEFAULT_TIMEOUT),
        auto_decompress=True,  # aiohttp inflates as the body is read, never more than it is asked for
        raise_for_status=False,
    )


def _loop_client() -> _LoopClient:
    loop = asyncio.get_running_loop()
    client = _loop_clients.get(loop)
    if client is None or client.session.closed:
        limits = get_upstream_limits()
        client = _loop_clients[loop] = _LoopClient(_new_session(limits), limits)
    return client


def shared_async_session() -> aiohttp.ClientSession:
    """The pooled aiohttp session of the running event loop, created on first use."""
    return _loop_client().session


async def aclose_shared_async_client() -> None:
    """Close the running loop's session; call it before the loop ends (app shutdown, end of a test)."""
    client = _loop_clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.session.close()


# --- calls ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Destination:
    """An endpoint URL as aiohttp takes it, parsed once, with the names errors and limits use."""

    url: yarl.URL | str  # a string yarl cannot parse goes to aiohttp as it is, which refuses it
    host: str  # host[:port], for messages
    origin: str  # scheme://host:port, the key of the per-provider count of calls in flight


@functools.lru_cache(maxsize=1024)
def _destination(url: str) -> _Destination:
    try:
        parsed = yarl.URL(url)
        origin = f"{parsed.scheme}://{parsed.host}:{parsed.port}"
    except (ValueError, TypeError):
        return _Destination(url, host_of(url), url)
    return _Destination(parsed, host_of(url), origin)


def _aio_timeout(timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
    """The same limits for aiohttp: waiting for a pooled connection plus connecting, then the
    longest silence while reading (aiohttp has no write timeout of its own). Built once per value."""
    return _aio_timeout_of(timeout.pool, timeout.connect, timeout.read)


@functools.lru_cache(maxsize=64)
def _aio_timeout_of(pool: float | None, connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None, connect=(pool or 0) + (connect or 0) or None, sock_connect=connect, sock_read=read
    )


def _transport_error(exc: BaseException, url: str, timeout: httpx.Timeout, started_answer: bool) -> ProviderError:
    host = host_of(url)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return transport.connect_timeout(host, _connect_within(timeout))
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's read timeout (SocketTimeoutError) is one too
        return transport.read_timeout(host, _read_within(timeout), started_answer)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return transport.unreachable(host, exc.os_error or exc.__class__.__name__)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return transport.unusable_url(exc)
    if isinstance(exc, UnicodeEncodeError):
        return transport.unsendable_key()
    if isinstance(exc, ValueError) and not isinstance(exc, aiohttp.ClientError):
        return BadRequestError(_l("The request cannot be sent: {reason}", reason=str(exc)))
    return transport.broken_or_failed(host, exc, started_answer)


def _connect_within(timeout: httpx.Timeout) -> float | None:
    return timeout.connect or None


def _read_within(timeout: httpx.Timeout) -> float | None:
    return timeout.read


# What aiohttp's failures are turned into typed errors; anything else is a bug and propagates as is.
_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, UnicodeEncodeError, ValueError)


# One encoder for every request body: json.dumps with non-default arguments builds a new one per call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json_bytes(body: Any) -> bytes:
    return _ENCODE(body).encode()


async def _aread(response: aiohttp.ClientResponse, limit: int, host: str) -> bytes:
    """The whole body, decompressed, refused as soon as it passes `limit` bytes."""
    length = response.content_length
    if length is not None and hdrs.CONTENT_ENCODING not in response.headers:
        if length > limit:
            raise body_too_large(host, limit)
        return await response.read()  # framed by its Content-Length: no more can come
    parts: list[bytes] = []
    size = 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if size > limit:
            raise body_too_large(host, limit)
        parts.append(piece)
    return b"".join(parts)


async def _apieces(response: aiohttp.ClientResponse, limit: int, host: str) -> AsyncIterator[bytes]:
    """The async answer's body in pieces as they arrive, refused past `limit` bytes in all."""
    size = 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if size > limit:
            raise body_too_large(host, limit)
        yield piece


class AiohttpAnswer:
    """An aiohttp response as the adapters read it (transport.AsyncAnswer)."""

    __slots__ = ("_limits", "_response", "host")

    def __init__(self, response: aiohttp.ClientResponse, host: str, limits: UpstreamLimits) -> None:
        self._response = response
        self._limits = limits
        self.host = host

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def ok(self) -> bool:
        return 200 <= self._response.status < 300

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def reason(self) -> str:
        return self._response.reason or ""

    @property
    def line_limit(self) -> int:
        return self._limits.max_line_bytes

    def text(self, content: bytes) -> str:
        return text_of(content, self._response.charset)

    async def read(self) -> bytes:
        return await _aread(self._response, self._limits.max_body_bytes, self.host)

    def lines(self) -> AsyncIterator[str]:
        limits = self._limits
        return aiter_lines(_apieces(self._response, limits.max_body_bytes, self.host), limits.max_line_bytes, self.host)

    async def line_batches(self) -> AsyncIterator[list[str]]:
        """The lines of each piece of the body as it arrives (what `lines` yields one by one), in one step
        per piece: a stream's hot loop, one async hop per network read rather than two per event."""
        limits = self._limits
        limit, host = limits.max_body_bytes, self.host
        splitter = LineSplitter(limits.max_line_bytes, host)
        size = 0
        async for piece in self._response.content.iter_any():
            size += len(piece)
            if size > limit:
                raise body_too_large(host, limit)
            lines = splitter.feed(piece)
            if lines:
                yield lines
        rest = splitter.finish()
        if rest:
            yield rest


class AiohttpTransport:
    """transport.AsyncTransport over the running loop's aiohttp session."""

    @contextlib.asynccontextmanager
    async def post(self, call: HttpCall, timeout: httpx.Timeout, *, stream: bool) -> AsyncIterator[AiohttpAnswer]:
        """POST the call and yield its answer, head arrived.

        Leaving the block before the body was read to its end closes the connection (aiohttp never
        pools a connection with unread or left-over bytes), so the provider sees the disconnect and
        stops generating.
        """
        client = _loop_client()
        destination = _destination(call.url)
        origin = destination.origin
        in_flight = client.in_flight
        in_flight[origin] = in_flight.get(origin, 0) + 1
        client.total += 1
        started = time.monotonic()
        answer: AiohttpAnswer | None = None
        try:
            try:
                response = await client.session.post(
                    destination.url, headers=call.headers, data=_json_bytes(call.body), timeout=_aio_timeout(timeout)
                )
            except aiohttp.ConnectionTimeoutError:
                limits = client.limits
                if in_flight[origin] > limits.connections_per_host or client.total > limits.connections_total:
                    raise transport.pool_exhausted(destination.host, time.monotonic() - started) from None
                raise
            answer = AiohttpAnswer(response, destination.host, get_upstream_limits())
            try:
                yield answer
            except BaseException:
                response.close()  # a half-read connection never goes back to the pool
                raise
            finally:
                response.release()
        except _TRANSPORT_ERRORS as exc:
            started_answer = stream and answer is not None and answer.ok
            raise _transport_error(exc, call.url, timeout, started_answer) from None
        finally:
            client.total -= 1
            left = in_flight[origin] - 1
            if left:
                in_flight[origin] = left
            else:
                del in_flight[origin]


AIOHTTP = AiohttpTransport()
