"""The seam between the protocols and the HTTP stacks: the answer's shape, the timeouts, one wording per failure.

Two stacks carry provider calls: httpx for the playground's sync calls (transport_httpx.py) and aiohttp
for the API (transport_aiohttp.py). Each maps its own exceptions to the typed errors below through one
table, and hands back an `Answer` (status, headers, body as bytes or lines), so the adapters, the chat
services and the model lists never see which stack carried a call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from mindroute.i18n import Message, _l
from mindroute.providers.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderError,
    ProviderTimeout,
    UpstreamError,
)
from mindroute.providers.shapes import HttpCall

CONNECT_TIMEOUT_S = 10.0
# The longest silence allowed between two bytes of an answer: a non-streamed answer from a large
# model arrives in one piece after it is fully generated, so this is generous.
READ_TIMEOUT_S = 120.0
WRITE_TIMEOUT_S = 30.0  # a request with a 20 MB attachment on a slow uplink
POOL_TIMEOUT_S = 10.0  # waiting for a free connection when every pooled one is busy
DEFAULT_TIMEOUT = httpx.Timeout(
    connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S, write=WRITE_TIMEOUT_S, pool=POOL_TIMEOUT_S
)
# Connections per provider and in all: `MINDROUTE_UPSTREAM_CONNECTIONS_PER_HOST` / `_TOTAL` (config.py).
USER_AGENT = "MindRoute"
# Both stacks ask for gzip and deflate only, and decode what they get themselves, counting the
# decompressed bytes against the body limit.
ACCEPT_ENCODING = "gzip, deflate"


# --- the interface --------------------------------------------------------------------------


class Answer(Protocol):
    """A provider's answer whose head has arrived; its body is read with the stack's own `read`/`lines`."""

    @property
    def status(self) -> int: ...

    @property
    def ok(self) -> bool: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def reason(self) -> str: ...

    @property
    def host(self) -> str: ...

    def text(self, content: bytes) -> str:
        """`content` (this answer's body) decoded by the charset it declared."""
        ...


class SyncAnswer(Answer, Protocol):
    def read(self) -> bytes:
        """The whole body, decompressed, refused past MINDROUTE_UPSTREAM_MAX_BODY_BYTES."""
        ...

    def lines(self) -> Iterator[str]:
        """The body's lines as they arrive, each at most MINDROUTE_UPSTREAM_MAX_LINE_BYTES."""
        ...


class AsyncAnswer(Answer, Protocol):
    async def read(self) -> bytes: ...

    def lines(self) -> AsyncIterator[str]: ...

    def line_batches(self) -> AsyncIterator[list[str]]:
        """The same lines, a list per piece of the body as it arrives (never an empty list)."""
        ...


class SyncTransport(Protocol):
    def post(self, call: HttpCall, timeout: httpx.Timeout, *, stream: bool) -> AbstractContextManager[SyncAnswer]:
        """Send `call`; inside the block the answer's head has arrived. Failures come out as ProviderErrors.

        `stream` says whether a 2xx answer's body is a stream being read (a break then is "the
        connection broke before the answer was complete").
        """
        ...

    def get(
        self, url: str, headers: Mapping[str, str], params: Mapping[str, str], timeout: httpx.Timeout
    ) -> AbstractContextManager[SyncAnswer]: ...


class AsyncTransport(Protocol):
    def post(
        self, call: HttpCall, timeout: httpx.Timeout, *, stream: bool
    ) -> AbstractAsyncContextManager[AsyncAnswer]: ...


# --- shared by both stacks ------------------------------------------------------------------


def as_timeout(timeout: httpx.Timeout | float | None) -> httpx.Timeout:
    """A caller's timeout: None for the defaults, a number of seconds for all four phases, or an httpx.Timeout."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    return timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)


def host_of(url: str) -> str:
    """host[:port] of `url`, for messages; the URL itself when it does not parse."""
    try:
        return urlsplit(url).netloc or url
    except ValueError:  # the URL the HTTP stack just refused may not parse here either
        return url


def text_of(content: bytes, charset: str | None) -> str:
    try:
        return content.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return content.decode("utf-8", errors="replace")


def check_headers(headers: Mapping[str, str]) -> None:
    """Refuse, before anything is sent, a header that cannot be sent (a key with an "é") or would split
    the request (a key pasted with a line break)."""
    for name, value in headers.items():
        if not value.isascii():  # the only header of ours that can carry such characters is the key
            raise unsendable_key()
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise BadRequestError(
                _l("The request cannot be sent: the {header} header has a line break in it", header=repr(name.strip()))
            )


# The typed errors both stacks map their failures to: one wording each.


def _seconds(value: float) -> str:
    return f"{value:g}"


def connect_timeout(host: str, within_s: float | None) -> ProviderError:
    if within_s is None:
        return ProviderTimeout(_l("Could not connect to {host}", host=host))
    return ProviderTimeout(_l("Could not connect to {host} within {seconds} s", host=host, seconds=_seconds(within_s)))


def pool_exhausted(host: str, waited_s: float) -> ProviderError:
    waited = f"{waited_s:.1f}"
    return ProviderTimeout(
        _l(
            "Too many calls in flight to {host}: waited {seconds} s for a connection "
            "({setting} sets how many one provider may have)",
            host=host,
            seconds=waited,
            setting="MINDROUTE_UPSTREAM_CONNECTIONS_PER_HOST",
        )
    )


def read_timeout(host: str, within_s: float | None, started_answer: bool) -> ProviderError:
    message: Message
    if within_s is None:
        message = (
            _l("{host} stopped sending the answer: nothing more came", host=host)
            if started_answer
            else _l("No answer from {host}", host=host)
        )
    elif started_answer:
        message = _l(
            "{host} stopped sending the answer: nothing more came within {seconds} s",
            host=host,
            seconds=_seconds(within_s),
        )
    else:
        message = _l("No answer from {host} within {seconds} s", host=host, seconds=_seconds(within_s))
    return ProviderTimeout(message)


def unreachable(host: str, reason: object) -> ProviderError:
    return UpstreamError(_l("Could not reach {host}: {reason}", host=host, reason=str(reason)))


def unusable_url(exc: Exception) -> ProviderError:
    return BadRequestError(_l("The endpoint URL is not usable: {reason}", reason=str(exc)))


def unsendable_key() -> ProviderError:
    return AuthenticationError(_l("The API key has characters that cannot be sent in an HTTP header"))


def broken_or_failed(host: str, exc: BaseException, started_answer: bool) -> ProviderError:
    if started_answer:
        return UpstreamError(_l("The connection to {host} broke before the answer was complete", host=host))
    return UpstreamError(_l("Talking to {host} failed: {reason}", host=host, reason=str(exc or exc.__class__.__name__)))
