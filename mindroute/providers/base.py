"""What every chat adapter shares: the chat shapes, typed errors, key redaction, the HTTP pool, the call loop."""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import functools
import http.cookiejar
import json
import math
import re
import threading
import time
import urllib.request
import weakref
import zlib
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import httpx
import yarl
from aiohttp import hdrs

from mindroute.config import UpstreamLimits, get_upstream_limits

# --- limits ---------------------------------------------------------------------------------

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
POOL_KEEPALIVE_EXPIRY_S = 30.0  # the API's path; the sync path keeps no idle connections (see shared_client)
DNS_CACHE_TTL_S = 300.0  # the API's path resolves a provider's host at most this often
ERROR_MESSAGE_MAX_CHARS = 1000
# An error page is cut to this before redaction, so a huge HTML page costs nothing to scrub.
ERROR_BODY_SCAN_CHARS = 8000
USER_AGENT = "MindRoute"

Role = Literal["system", "user", "assistant"]
AttachmentKind = Literal["image", "video", "file"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


# --- the internal shapes --------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message; `kind` is what the provider's allowImages/allowVideos/allowFiles govern."""

    kind: AttachmentKind
    mime_type: str
    data: bytes = field(repr=False)  # never in a repr: it ends up in logs and tracebacks
    filename: str = ""

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def effective_kind(self) -> AttachmentKind:
        """The kind by content type first, so an image labelled "file" is still governed by allowImages."""
        mime = self.mime_type.lower()
        if mime.startswith("image/"):
            return "image"
        if mime.startswith("video/"):
            return "video"
        return self.kind

    @property
    def label(self) -> str:
        return self.filename or self.mime_type


def attachment_kind(mime_type: str) -> AttachmentKind:
    """The kind of an upload from its content type: image, video, or any other file."""
    mime = mime_type.lower()
    if mime.startswith("image/"):
        return "image"
    if mime.startswith("video/"):
        return "video"
    return "file"


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    text: str = ""
    attachments: list[Attachment] = field(default_factory=list)


@dataclass(frozen=True)
class ChatRequest:
    """One chat call in MindRoute's terms; each adapter translates it to its protocol."""

    model: str
    messages: list[ChatMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    stream: bool = False  # what the caller asked for; complete()/stream() decide what goes on the wire


@dataclass(frozen=True)
class ChatResult:
    """A whole answer. Token counts are the provider's own; None (and usage_reported False) when it gave none."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    usage_reported: bool
    finish_reason: str | None  # the provider's own word: "stop", "end_turn", "STOP", "length", ...
    model: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the provider's JSON, for the log


@dataclass(frozen=True)
class StreamChunk:
    """A piece of answer text as it arrived."""

    text: str


@dataclass(frozen=True)
class StreamEnd:
    """The last item of a stream: the whole text and the usage the provider reported.

    `ChatStream.so_far()` returns the same shape with `finished=False` for a stream that was
    stopped or broke: the text and usage received up to then.
    """

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    usage_reported: bool
    finish_reason: str | None
    model: str
    finished: bool = True


# --- errors ---------------------------------------------------------------------------------


class ProviderError(Exception):
    """A chat call failed. `message` is the provider's own words with anything key-like removed.

    `status_code` is the provider's HTTP status; for refusals before any upstream call, the status
    that describes them (400, 401, 403); None when there is no provider status to report (a
    timeout, a network failure, an answer that could not be read).
    `error_type` is the provider's error type or code when it sent one ("rate_limit_error",
    "RESOURCE_EXHAUSTED", "invalid_api_key").
    """

    default_status: int | None = None

    def __init__(self, message: str, *, status_code: int | None = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = self.default_status if status_code is None else status_code
        self.error_type = error_type

    def __str__(self) -> str:
        return self.message

    def redact(self, api_key: str | None) -> None:
        """Scrub the message in place; every error leaving an adapter passes through here."""
        self.message = redact_secrets(self.message, api_key)
        self.args = (self.message,)


class AuthenticationError(ProviderError):
    default_status = 401


class ProviderPermissionError(ProviderError):
    default_status = 403


class NotFoundError(ProviderError):
    default_status = 404


class BadRequestError(ProviderError):
    """The provider refused the request itself (400, 413, 422...): a parameter, the size, the content."""

    default_status = 400


class RateLimitedError(ProviderError):
    default_status = 429

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, error_type=error_type)
        self.retry_after = retry_after  # seconds, as the provider asked; None when it did not say


class UpstreamError(ProviderError):
    """The provider failed (5xx, overloaded), could not be reached, or answered something we cannot read."""


class UpstreamTooLarge(UpstreamError):  # noqa: N818 - reads better at the raise site
    """The provider's answer, or one line or event of its stream, is over MindRoute's limit
    (`MINDROUTE_UPSTREAM_MAX_BODY_BYTES`, `MINDROUTE_UPSTREAM_MAX_LINE_BYTES`); nothing past it was read."""


class ProviderTimeout(ProviderError):  # noqa: N818 - reads better at the raise site
    """No connection, or no next byte, within the timeout."""


class Cancelled(ProviderError):  # noqa: N818 - reads better at the raise site
    """The caller stopped the call (a stop button, a client that went away).

    Adapters never raise it by themselves: closing a stream is the normal way to stop it. It is
    the typed error a caller records for a stopped call, with `ChatStream.so_far()` as the partial
    answer. 499 is the "client closed request" convention.
    """

    default_status = 499


class MediaNotAllowed(ProviderPermissionError):  # noqa: N818 - reads better at the raise site
    """The provider's settings do not allow this kind of attachment; raised before any upstream call."""


class UnsupportedMedia(BadRequestError):  # noqa: N818 - reads better at the raise site
    """The protocol cannot carry this attachment (a video to OpenAI, a .docx anywhere); raised before any call."""


_ERROR_BY_STATUS: dict[int, type[ProviderError]] = {
    401: AuthenticationError,
    403: ProviderPermissionError,
    404: NotFoundError,
    429: RateLimitedError,
}


def error_class_for_status(status: int) -> type[ProviderError]:
    """The typed error for an HTTP status: the named ones, other 4xx as a bad request, the rest upstream."""
    if status in _ERROR_BY_STATUS:
        return _ERROR_BY_STATUS[status]
    if status == 408:
        return ProviderTimeout
    if 400 <= status < 500:
        return BadRequestError
    return UpstreamError


def make_error(
    status: int | None,
    message: str,
    *,
    error_type: str | None = None,
    retry_after: float | None = None,
    error_class: type[ProviderError] | None = None,
) -> ProviderError:
    cls = error_class or (error_class_for_status(status) if status is not None else UpstreamError)
    if issubclass(cls, RateLimitedError):
        return cls(message, status_code=status, error_type=error_type, retry_after=retry_after)
    return cls(message, status_code=status, error_type=error_type)


# --- redaction ------------------------------------------------------------------------------

REDACTED = "[redacted]"
# Shapes of secrets that may show up in a provider's message even when they are not our key: an
# OpenAI 401 echoes the key it got ("sk-abc1***wxyz"), a proxy may echo a header or a URL.
_SECRET_RE = re.compile(
    r"(?<![\w-])sk-ant-[\w\-*.]{6,}"  # Anthropic
    r"|(?<![\w-])sk-[\w\-*.…]{6,}"  # OpenAI, project keys, masked echoes
    r"|(?<![\w-])AIza[\w\-]{10,}"  # Google API keys
    r"|(?<![\w-])mr-[\w\-]{10,}"  # MindRoute's own API keys
    r"|(?i:bearer)\s+[\w.~+/=\-]{8,}"  # a bearer token, whoever's it is
    r"|(?<=[?&]key=)[^&\s\"'<>]+"  # Gemini's ?key= in a quoted URL
    # Any masked secret, from the start of its word only: tried at every character of a long word,
    # this alternative took seconds for 16,000 characters with no space (quadratic).
    r"|(?<![^\s\"'`,;()<>\[\]{}])[^\s\"'`,;()<>\[\]{}]*[*•]{3,}[^\s\"'`,;()<>\[\]{}]*"
)
_TOKEN_RE = re.compile(r"[^\s\"'`,;()<>\[\]{}]+")
# A word sharing this many characters with the configured key counts as the key showing through.
KEY_FRAGMENT_CHARS = 8


def redact_secrets(text: str, api_key: str | None = None) -> str:
    """`text` with the configured key, pieces of it, and anything shaped like a key replaced by [redacted]."""
    if api_key:
        text = text.replace(api_key, REDACTED)
    text = _SECRET_RE.sub(REDACTED, text)
    if api_key and len(api_key) >= KEY_FRAGMENT_CHARS + 4:
        windows = {api_key[i : i + KEY_FRAGMENT_CHARS] for i in range(len(api_key) - KEY_FRAGMENT_CHARS + 1)}

        def scrub(match: re.Match[str]) -> str:
            token = match.group(0)
            if len(token) >= KEY_FRAGMENT_CHARS and any(window in token for window in windows):
                return REDACTED
            return token

        text = _TOKEN_RE.sub(scrub, text)
    return text


def clip(text: str, limit: int = ERROR_MESSAGE_MAX_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def provider_error_details(body: Any) -> tuple[str | None, str | None]:
    """(message, type) from an error body of any provider we speak to.

    OpenAI {"error": {"message", "type", "code"}}, Anthropic {"type": "error", "error": {"type",
    "message"}}, Gemini {"error": {"code", "message", "status"}}; Ollama and vLLM {"error": "..."};
    FastAPI-based servers {"detail": "..."}.
    """
    if isinstance(body, list) and len(body) == 1:  # Gemini's streaming endpoint wraps errors in a list
        body = body[0]
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, dict):
        message = error.get("message") if isinstance(error.get("message"), str) else None
        kind = error.get("status") or error.get("type") or error.get("code")
        return message, (str(kind) if kind is not None and not isinstance(kind, dict | list) else None)
    if isinstance(error, str):
        return error, None
    for key in ("message", "detail"):
        if isinstance(body.get(key), str):
            return body[key], None
    return None, None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from retry-after-ms, or retry-after as seconds or an HTTP date."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(float(raw_ms) / 1000, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max((when - datetime.now(UTC)).total_seconds(), 0.0)
    return max(seconds, 0.0) if math.isfinite(seconds) else None


# --- media ----------------------------------------------------------------------------------

# Content types sent as text: every protocol can carry text, whatever it thinks of files.
_TEXT_MIME_TYPES = ("application/json", "application/xml", "application/x-yaml", "application/yaml")
_TEXT_MIME_SUFFIXES = ("+json", "+xml")


def check_media(request: ChatRequest, allow_images: bool, allow_videos: bool, allow_files: bool) -> None:
    """Refuse, before any upstream call, attachments the provider's settings do not allow."""
    allowed = {"image": allow_images, "video": allow_videos, "file": allow_files}
    nouns = {"image": "images", "video": "videos", "file": "file attachments"}
    for message in request.messages:
        for attachment in message.attachments:
            kind = attachment.effective_kind
            if not allowed[kind]:
                raise MediaNotAllowed(f"This provider does not accept {nouns[kind]} ({attachment.label})")


def is_text_like(mime_type: str) -> bool:
    mime = mime_type.lower().split(";")[0].strip()
    return mime.startswith("text/") or mime in _TEXT_MIME_TYPES or mime.endswith(_TEXT_MIME_SUFFIXES)


def base_mime(mime_type: str) -> str:
    return mime_type.lower().split(";")[0].strip()


def base64_of(attachment: Attachment) -> str:
    return base64.b64encode(attachment.data).decode("ascii")


def data_url(attachment: Attachment) -> str:
    return f"data:{base_mime(attachment.mime_type)};base64,{base64_of(attachment)}"


def text_of(attachment: Attachment) -> str:
    # A stray byte must not fail the call: the model reads a replacement character instead.
    return attachment.data.decode("utf-8", errors="replace")


def inlined_text(attachment: Attachment) -> str:
    """A text file as plain text, with its name, for protocols that take no text files."""
    name = attachment.filename or "attached file"
    return f"--- {name} ---\n{text_of(attachment)}\n--- end of {name} ---"


def refuse_attachments_outside_user_turns(message: ChatMessage) -> None:
    if message.attachments and message.role != "user":
        raise UnsupportedMedia("Attachments can only be sent with the user's messages")


# --- server-sent events ---------------------------------------------------------------------


@dataclass(frozen=True)
class SSEEvent:
    event: str  # "message" when the server named none
    data: str


class SSEDecoder:
    """Lines of a text/event-stream in, events out (the WHATWG rules: event/data fields, blank line dispatches)."""

    def __init__(self, limit: int | None = None, host: str = "the provider") -> None:
        self._event = ""
        self._data: list[str] = []
        self._size = 0  # characters of data in the pending event
        self._limit = limit  # at most this many characters of data in one event
        self._host = host

    def feed(self, line: str) -> SSEEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            return self.flush()
        if line.startswith(":"):  # a comment, used as a keep-alive
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._size += len(value) + 1
            if self._limit is not None and self._size > self._limit:
                raise _too_large(
                    self._host, "one event of the stream", self._limit, "MINDROUTE_UPSTREAM_MAX_LINE_BYTES"
                )
        return None  # id and retry do not matter to a single request

    def flush(self) -> SSEEvent | None:
        """The pending event, also at the end of a stream that lacks the final blank line."""
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(self._event or "message", "\n".join(self._data))
        self._event, self._data, self._size = "", [], 0
        return event


# --- stream translation ---------------------------------------------------------------------


class StreamTranslator(ABC):
    """One provider's stream events in, text chunks out; keeps the text and usage seen so far."""

    def __init__(self, model: str) -> None:
        self.parts: list[str] = []
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.total_tokens: int | None = None
        self.usage_reported = False
        self.finish_reason: str | None = None
        self.model = model
        self.done = False  # the provider's own end-of-answer marker arrived

    @abstractmethod
    def feed(self, event: SSEEvent) -> list[StreamChunk]:
        """The text in one event; raises a ProviderError for an error event or a chunk we cannot read."""

    def is_complete(self) -> bool:
        return self.done

    def text_chunk(self, text: object) -> list[StreamChunk]:
        if not isinstance(text, str) or not text:
            return []
        self.parts.append(text)
        return [StreamChunk(text)]

    def set_usage(self, prompt: int | None, completion: int | None, total: int | None = None) -> None:
        self.usage_reported = True
        if prompt is not None:
            self.prompt_tokens = prompt
        if completion is not None:
            self.completion_tokens = completion
        if total is not None:
            self.total_tokens = total
        elif self.prompt_tokens is not None and self.completion_tokens is not None:
            self.total_tokens = self.prompt_tokens + self.completion_tokens

    def snapshot(self, finished: bool) -> StreamEnd:
        return StreamEnd(
            text="".join(self.parts),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.total_tokens,
            usage_reported=self.usage_reported,
            finish_reason=self.finish_reason,
            model=self.model,
            finished=finished,
        )

    def finish(self) -> StreamEnd:
        if not self.is_complete():
            raise UpstreamError("The provider's stream ended before the answer was complete")
        return self.snapshot(finished=True)


def load_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise UpstreamError(f"The provider sent a {what} that is not valid JSON") from None


def int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- the shared connection pools ------------------------------------------------------------

# Both paths ask for gzip and deflate only, and decode what they get themselves (aiohttp as the
# body is read, the sync path below), counting the decompressed bytes against the body limit.
ACCEPT_ENCODING = "gzip, deflate"

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
            client = _sync_clients[key] = httpx.Client(
                timeout=DEFAULT_TIMEOUT,
                limits=httpx.Limits(max_connections=limits.connections_per_host, max_keepalive_connections=0),
                headers={"user-agent": USER_AGENT, "accept-encoding": ACCEPT_ENCODING},
                # A cookie one caller's answer set is never sent on another caller's call.
                cookies=http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
            )
            # The playground's Stop ends a call from another thread (mindroute/providers/cancel.py).
            from mindroute.providers.cancel import make_cancellable

            make_cancellable(client)
        return client


def close_shared_client() -> None:
    """Close the sync pools (at shutdown, or in tests); the next call opens new ones."""
    with _sync_clients_lock:
        clients = list(_sync_clients.values())
        _sync_clients.clear()
    for client in clients:
        client.close()


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


# --- adapters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpCall:
    """One provider request, ready to send."""

    url: str
    headers: dict[str, str] = field(repr=False)  # they carry the key
    body: dict[str, Any] = field(repr=False)


def join_url(endpoint: str, path: str, version: str) -> str:
    """`endpoint` + `path`, adding the version segment unless the admin already typed it."""
    base = endpoint.rstrip("/")
    if base.endswith("/" + version):
        return f"{base}/{path}"
    return f"{base}/{version}/{path}"


def _as_timeout(timeout: httpx.Timeout | float | None) -> httpx.Timeout:
    """A caller's timeout: None for the defaults, a number of seconds for all four phases, or an httpx.Timeout."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    return timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc or url
    except ValueError:  # the URL httpx just refused may not parse here either
        return url


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
        return _Destination(url, _host(url), url)
    return _Destination(parsed, _host(url), origin)


def _timeout_seconds(timeout: httpx.Timeout, exc: httpx.TimeoutException) -> float | None:
    if isinstance(exc, httpx.ConnectTimeout):
        return timeout.connect
    if isinstance(exc, httpx.WriteTimeout):
        return timeout.write
    if isinstance(exc, httpx.PoolTimeout):
        return timeout.pool
    return timeout.read


# The typed errors both HTTP layers (httpx, aiohttp) map their failures to: one wording each.


def _connect_timeout(host: str, within: str) -> ProviderError:
    return ProviderTimeout(f"Could not connect to {host}{within}")


def _pool_exhausted(host: str, waited_s: float) -> ProviderError:
    return ProviderTimeout(
        f"Too many calls in flight to {host}: waited {waited_s:.1f} s for a connection "
        "(MINDROUTE_UPSTREAM_CONNECTIONS_PER_HOST sets how many one provider may have)"
    )


def _read_timeout(host: str, within: str, started_answer: bool) -> ProviderError:
    if started_answer:
        return ProviderTimeout(f"{host} stopped sending the answer: nothing more came{within}")
    return ProviderTimeout(f"No answer from {host}{within}")


def _unreachable(host: str, reason: object) -> ProviderError:
    return UpstreamError(f"Could not reach {host}: {reason}")


def _unusable_url(exc: Exception) -> ProviderError:
    return BadRequestError(f"The endpoint URL is not usable: {exc}")


def _unsendable_key() -> ProviderError:
    return AuthenticationError("The API key has characters that cannot be sent in an HTTP header")


def _broken_or_failed(host: str, exc: BaseException, started_answer: bool) -> ProviderError:
    if started_answer:
        return UpstreamError(f"The connection to {host} broke before the answer was complete")
    return UpstreamError(f"Talking to {host} failed: {exc or exc.__class__.__name__}")


def _size(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n:,} bytes"


def _too_large(host: str, what: str, limit: int, setting: str) -> UpstreamTooLarge:
    return UpstreamTooLarge(f"Upstream answer too large: {what} from {host} is over {_size(limit)} ({setting})")


def _body_too_large(host: str, limit: int) -> UpstreamTooLarge:
    return _too_large(host, "the answer", limit, "MINDROUTE_UPSTREAM_MAX_BODY_BYTES")


def _line_too_long(host: str, limit: int) -> UpstreamTooLarge:
    return _too_large(host, "one line of the stream", limit, "MINDROUTE_UPSTREAM_MAX_LINE_BYTES")


def _transport_error(exc: Exception, url: str, timeout: httpx.Timeout, started_answer: bool) -> ProviderError:
    host = _host(url)
    if isinstance(exc, httpx.TimeoutException):
        seconds = _timeout_seconds(timeout, exc)
        within = f" within {seconds:g} s" if seconds is not None else ""
        if isinstance(exc, httpx.ConnectTimeout):
            return _connect_timeout(host, within)
        if isinstance(exc, httpx.PoolTimeout):
            return _pool_exhausted(host, seconds or 0.0)
        return _read_timeout(host, within, started_answer)
    if isinstance(exc, httpx.ConnectError):
        return _unreachable(host, exc or exc.__class__.__name__)
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return _unusable_url(exc)
    if isinstance(exc, UnicodeEncodeError):
        return _unsendable_key()
    broken = isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError) and started_answer
    return _broken_or_failed(host, exc, broken)


# What the HTTP layers turn into typed errors; anything else is a bug and propagates as is.
_TRANSPORT_ERRORS = (httpx.HTTPError, httpx.InvalidURL, UnicodeEncodeError)
_ASYNC_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, UnicodeEncodeError, ValueError)


def _aio_timeout(timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
    """The same limits for aiohttp: waiting for a pooled connection plus connecting, then the
    longest silence while reading (aiohttp has no write timeout of its own). Built once per value."""
    return _aio_timeout_of(timeout.pool, timeout.connect, timeout.read)


@functools.lru_cache(maxsize=64)
def _aio_timeout_of(pool: float | None, connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None, connect=(pool or 0) + (connect or 0) or None, sock_connect=connect, sock_read=read
    )


def _async_transport_error(exc: BaseException, url: str, timeout: httpx.Timeout, started_answer: bool) -> ProviderError:
    host = _host(url)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return _connect_timeout(host, _connect_within(timeout))
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's read timeout (SocketTimeoutError) is one too
        return _read_timeout(host, _read_within(timeout), started_answer)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _unreachable(host, exc.os_error or exc.__class__.__name__)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return _unusable_url(exc)
    if isinstance(exc, UnicodeEncodeError):
        return _unsendable_key()
    if isinstance(exc, ValueError) and not isinstance(exc, aiohttp.ClientError):
        return BadRequestError(f"The request cannot be sent: {exc}")
    return _broken_or_failed(host, exc, started_answer)


def _connect_within(timeout: httpx.Timeout) -> str:
    return f" within {timeout.connect:g} s" if timeout.connect else ""


def _read_within(timeout: httpx.Timeout) -> str:
    return f" within {timeout.read:g} s" if timeout.read is not None else ""


@contextlib.asynccontextmanager
async def _apost(call: HttpCall, timeout: httpx.Timeout) -> AsyncIterator[aiohttp.ClientResponse]:
    """POST the call through the loop's aiohttp session and yield its answer, head arrived.

    Leaving the block before the body was read to its end closes the connection (aiohttp never
    pools a connection with unread or left-over bytes). A wait for a connection that ends in the
    connect timeout while the provider has every connection it may have says so.
    """
    client = _loop_client()
    destination = _destination(call.url)
    origin = destination.origin
    in_flight = client.in_flight
    in_flight[origin] = in_flight.get(origin, 0) + 1
    client.total += 1
    started = time.monotonic()
    try:
        try:
            response = await client.session.post(
                destination.url, headers=call.headers, data=_json_bytes(call.body), timeout=_aio_timeout(timeout)
            )
        except aiohttp.ConnectionTimeoutError:
            if in_flight[origin] > client.limits.connections_per_host or client.total > client.limits.connections_total:
                raise _pool_exhausted(destination.host, time.monotonic() - started) from None
            raise
        try:
            yield response
        except BaseException:
            response.close()  # a half-read connection never goes back to the pool
            raise
        finally:
            response.release()
    finally:
        client.total -= 1
        left = in_flight[origin] - 1
        if left:
            in_flight[origin] = left
        else:
            del in_flight[origin]


async def _aread(response: aiohttp.ClientResponse, limit: int, host: str) -> bytes:
    """The whole body, decompressed, refused as soon as it passes `limit` bytes."""
    length = response.content_length
    if length is not None and hdrs.CONTENT_ENCODING not in response.headers:
        if length > limit:
            raise _body_too_large(host, limit)
        return await response.read()  # framed by its Content-Length: no more can come
    parts: list[bytes] = []
    size = 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if size > limit:
            raise _body_too_large(host, limit)
        parts.append(piece)
    return b"".join(parts)


class _BoundedBody:
    """The sync path's body decoder: gzip or deflate inflated as it arrives, never past `limit` bytes out."""

    def __init__(self, content_encoding: str | None, limit: int, host: str) -> None:
        codings = [
            coding
            for coding in (part.strip().lower() for part in (content_encoding or "").split(","))
            if coding and coding != "identity"
        ]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise UpstreamError(f"{host} answered in a content encoding MindRoute does not read ({content_encoding})")
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
            raise _body_too_large(self._host, self._limit)
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
                raise UpstreamError(f"{self._host} sent a {self._coding} body that does not decompress") from None
            out.append(piece)
            if self._inflater.unconsumed_tail:  # it stopped at the budget: more is to come than the limit
                raise _body_too_large(self._host, self._limit)
            data = b""
            if self._inflater.eof and self._inflater.unused_data:  # another gzip member follows
                data, self._inflater = self._inflater.unused_data, None
        return b"".join(out)


def _read_sync(response: httpx.Response, limit: int, host: str) -> bytes:
    return b"".join(_iter_sync(response, limit, host))


def _iter_sync(response: httpx.Response, limit: int, host: str) -> Iterator[bytes]:
    """The sync answer's body, decompressed, in pieces as they arrive, refused past `limit` bytes."""
    encoding = response.headers.get("content-encoding")
    length = response.headers.get("content-length")
    if not encoding and length and length.isdigit() and int(length) > limit:
        raise _body_too_large(host, limit)
    body = _BoundedBody(encoding, limit, host)
    for raw in response.iter_raw():
        piece = body.feed(raw)
        if piece:
            yield piece


class _LineSplitter:
    """Bytes in, lines out: split at \\n, \\r\\n or \\r only (as SSE and httpx do), each at most `limit` characters."""

    _BREAK = re.compile(r"\r\n|\r|\n")

    def __init__(self, limit: int | None = None, host: str = "the provider") -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._limit = limit
        self._host = host

    def feed(self, data: bytes) -> list[str]:
        pending = self._pending + self._decoder.decode(data)
        # A \r at the very end may be the first half of a \r\n: keep it until the next piece tells.
        carry = "\r" if pending.endswith("\r") else ""
        parts = self._BREAK.split(pending[: len(pending) - len(carry)])
        self._pending = parts.pop() + carry  # the part after the last break: not a whole line yet
        limit = self._limit
        if limit is not None and (len(self._pending) > limit or any(len(line) > limit for line in parts)):
            raise _line_too_long(self._host, limit)
        return parts

    def finish(self) -> list[str]:
        pending = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        if not pending:
            return []
        return self._BREAK.split(pending.removesuffix("\r"))


async def _aiter_lines(
    pieces: AsyncIterator[bytes], limit: int | None = None, host: str = "the provider"
) -> AsyncIterator[str]:
    """The body's lines as they arrive, split at \\n, \\r\\n or \\r only (as SSE and httpx do)."""
    splitter = _LineSplitter(limit, host)
    async for data in pieces:
        for line in splitter.feed(data):
            yield line
    for line in splitter.finish():
        yield line


async def _apieces(response: aiohttp.ClientResponse, limit: int, host: str) -> AsyncIterator[bytes]:
    """The async answer's body in pieces as they arrive, refused past `limit` bytes in all."""
    size = 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if size > limit:
            raise _body_too_large(host, limit)
        yield piece


def _text_of(content: bytes, charset: str | None) -> str:
    try:
        return content.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return content.decode("utf-8", errors="replace")


def _check_headers(headers: Mapping[str, str]) -> None:
    """Refuse, before anything is sent, a header that cannot be sent (a key with an "é") or would split
    the request (a key pasted with a line break)."""
    for name, value in headers.items():
        if not value.isascii():  # the only header of ours that can carry such characters is the key
            raise _unsendable_key()
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise BadRequestError(f"The request cannot be sent: the {name.strip()!r} header has a line break in it")


class ProviderAdapter(ABC):
    """One wire protocol: the translations in and out (in the subclass) and the HTTP calls (here).

    `complete`/`stream` are the sync paths (the playground), `acomplete`/`astream` the async ones
    (the API); all four share the translations. Nothing is retried: a request that may have
    reached the model could cost twice.
    """

    protocol: str = ""
    key_required: bool = True

    # -- the translations, per protocol --

    @abstractmethod
    def build_call(self, request: ChatRequest, endpoint: str, api_key: str | None, *, stream: bool) -> HttpCall:
        """The provider's request for `request`; raises UnsupportedMedia for what it cannot carry."""

    @abstractmethod
    def parse_response(self, body: Any, request: ChatRequest) -> ChatResult:
        """The provider's non-streamed JSON answer as a ChatResult."""

    @abstractmethod
    def stream_translator(self, request: ChatRequest) -> StreamTranslator:
        """A fresh translator for one streamed answer."""

    def error_class(self, status: int, error_type: str | None, body: Any) -> type[ProviderError]:
        """The typed error for an error answer; protocols with their own quirks override it."""
        return error_class_for_status(status)

    def retry_after(self, headers: Mapping[str, str], body: Any) -> float | None:
        return parse_retry_after(headers)

    # -- shared plumbing --

    def prepare(self, request: ChatRequest, endpoint: str, api_key: str | None, *, stream: bool) -> HttpCall:
        """Check what can be checked without the provider, then translate."""
        key = (api_key or "").strip() or None
        if key is None and self.key_required:
            raise AuthenticationError("No API key is set for this provider")
        if not request.messages:
            raise BadRequestError("A chat needs at least one message")
        for message in request.messages:
            if message.role not in ROLES:
                raise BadRequestError(f"Unknown message role {message.role!r}")
            refuse_attachments_outside_user_turns(message)
        call = self.build_call(request, endpoint, key, stream=stream)
        _check_headers(call.headers)
        return call

    def error_from_response(
        self, status: int, headers: Mapping[str, str], content: bytes, reason: str
    ) -> ProviderError:
        text = content[:ERROR_BODY_SCAN_CHARS].decode("utf-8", errors="replace")
        try:
            body: Any = json.loads(content)
        except ValueError:
            body = None
        message, error_type = provider_error_details(body)
        if not message:
            stripped = text.strip()
            # An HTML error page from a proxy says nothing a person can use; its status line does.
            message = stripped if stripped and not stripped.startswith("<") else f"HTTP {status} {reason}".strip()
        return make_error(
            status,
            clip(message),
            error_type=error_type,
            retry_after=self.retry_after(headers, body),
            error_class=self.error_class(status, error_type, body),
        )

    def error_from_event(self, payload: Any, default_status: int = 500) -> ProviderError:
        """An error that arrived inside a stream, after the 200."""
        message, error_type = provider_error_details(payload)
        status = default_status
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict) and isinstance(error.get("code"), int):
            status = error["code"]
        return make_error(
            status,
            clip(message or "The provider reported an error in the middle of the answer"),
            error_type=error_type,
            error_class=self.error_class(status, error_type, payload),
        )

    def _parsed(self, text: str, request: ChatRequest) -> ChatResult:
        body = load_json(text, "response")
        try:
            return self.parse_response(body, request)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise UpstreamError(
                f"The provider answered with JSON that is not a chat response ({self.protocol} protocol)"
            ) from None

    def _feed(self, translator: StreamTranslator, event: SSEEvent) -> list[StreamChunk]:
        try:
            return translator.feed(event)
        except ProviderError:
            raise
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise UpstreamError(
                f"The provider sent a stream event the {self.protocol} protocol does not have"
            ) from None

    # -- sync --

    def complete(
        self, request: ChatRequest, endpoint: str, api_key: str | None, *, timeout: httpx.Timeout | float | None = None
    ) -> ChatResult:
        """The whole answer in one response."""
        call = self.prepare(request, endpoint, api_key, stream=False)
        timeout = _as_timeout(timeout)
        limit, host = get_upstream_limits().max_body_bytes, _host(call.url)
        try:
            with shared_client(call.url).stream(
                "POST", call.url, headers=call.headers, json=call.body, timeout=timeout
            ) as response:
                content = _read_sync(response, limit, host)
            if not response.is_success:
                raise self.error_from_response(response.status_code, response.headers, content, response.reason_phrase)
            return self._parsed(_text_of(content, response.charset_encoding), request)
        except ProviderError as exc:
            exc.redact(api_key)
            raise
        except _TRANSPORT_ERRORS as exc:
            error = _transport_error(exc, call.url, timeout, started_answer=False)
            error.redact(api_key)
            raise error from None

    def stream(
        self, request: ChatRequest, endpoint: str, api_key: str | None, *, timeout: httpx.Timeout | float | None = None
    ) -> ChatStream:
        """StreamChunks as they arrive, then one StreamEnd; nothing is sent until the first next()."""
        call = self.prepare(request, endpoint, api_key, stream=True)  # refusals surface here, not mid-iteration
        translator = self.stream_translator(request)
        return ChatStream(self._stream_events(call, translator, api_key, _as_timeout(timeout)), translator)

    def _stream_events(
        self, call: HttpCall, translator: StreamTranslator, api_key: str | None, timeout: httpx.Timeout
    ) -> Generator[StreamChunk | StreamEnd, None, None]:
        started_answer = False
        limits, host = get_upstream_limits(), _host(call.url)
        try:
            # Leaving this block early (the consumer closed the generator) closes the response
            # unread, which drops the connection: the provider sees the disconnect and stops.
            with shared_client(call.url).stream(
                "POST", call.url, headers=call.headers, json=call.body, timeout=timeout
            ) as response:
                if not response.is_success:
                    content = _read_sync(response, limits.max_body_bytes, host)
                    raise self.error_from_response(
                        response.status_code, response.headers, content, response.reason_phrase
                    )
                started_answer = True
                decoder = SSEDecoder(limits.max_line_bytes, host)
                lines = _LineSplitter(limits.max_line_bytes, host)
                for piece in _iter_sync(response, limits.max_body_bytes, host):
                    for line in lines.feed(piece):
                        event = decoder.feed(line)
                        if event is not None:
                            yield from self._feed(translator, event)
                for line in lines.finish():
                    event = decoder.feed(line)
                    if event is not None:
                        yield from self._feed(translator, event)
                event = decoder.flush()
                if event is not None:
                    yield from self._feed(translator, event)
            yield translator.finish()
        except ProviderError as exc:
            exc.redact(api_key)
            raise
        except _TRANSPORT_ERRORS as exc:
            error = _transport_error(exc, call.url, timeout, started_answer)
            error.redact(api_key)
            raise error from None

    # -- async --

    async def acomplete(
        self, request: ChatRequest, endpoint: str, api_key: str | None, *, timeout: httpx.Timeout | float | None = None
    ) -> ChatResult:
        """The whole answer in one response; a cancelled task closes the request and re-raises."""
        call = self.prepare(request, endpoint, api_key, stream=False)
        timeout = _as_timeout(timeout)
        try:
            async with _apost(call, timeout) as response:
                content = await _aread(response, get_upstream_limits().max_body_bytes, _destination(call.url).host)
            if not 200 <= response.status < 300:
                raise self.error_from_response(response.status, response.headers, content, response.reason or "")
            return self._parsed(_text_of(content, response.charset), request)
        except ProviderError as exc:
            exc.redact(api_key)
            raise
        except _ASYNC_TRANSPORT_ERRORS as exc:
            error = _async_transport_error(exc, call.url, timeout, started_answer=False)
            error.redact(api_key)
            raise error from None

    def astream(
        self, request: ChatRequest, endpoint: str, api_key: str | None, *, timeout: httpx.Timeout | float | None = None
    ) -> AsyncChatStream:
        """StreamChunks as they arrive, then one StreamEnd; `aclose()` stops it and closes the upstream response."""
        call = self.prepare(request, endpoint, api_key, stream=True)
        translator = self.stream_translator(request)
        return AsyncChatStream(self._astream_events(call, translator, api_key, _as_timeout(timeout)), translator)

    async def _astream_events(
        self, call: HttpCall, translator: StreamTranslator, api_key: str | None, timeout: httpx.Timeout
    ) -> AsyncGenerator[StreamChunk | StreamEnd, None]:
        started_answer = False
        limits, host = get_upstream_limits(), _destination(call.url).host
        try:
            # Leaving the block before the body's end (aclose(), a cancelled task) drops the
            # connection, so the provider sees the disconnect and stops generating.
            async with _apost(call, timeout) as response:
                if not 200 <= response.status < 300:
                    content = await _aread(response, limits.max_body_bytes, host)
                    raise self.error_from_response(response.status, response.headers, content, response.reason or "")
                started_answer = True
                decoder = SSEDecoder(limits.max_line_bytes, host)
                pieces = _apieces(response, limits.max_body_bytes, host)
                async for line in _aiter_lines(pieces, limits.max_line_bytes, host):
                    event = decoder.feed(line)
                    if event is not None:
                        for chunk in self._feed(translator, event):
                            yield chunk
                event = decoder.flush()
                if event is not None:
                    for chunk in self._feed(translator, event):
                        yield chunk
            yield translator.finish()
        except ProviderError as exc:
            exc.redact(api_key)
            raise
        except _ASYNC_TRANSPORT_ERRORS as exc:
            error = _async_transport_error(exc, call.url, timeout, started_answer)
            error.redact(api_key)
            raise error from None


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class ChatStream(Iterator[StreamChunk | StreamEnd]):
    """A streamed answer: iterate for StreamChunks and a final StreamEnd; `close()` stops it early.

    Closing (or leaving a `with` block) closes the upstream response, so the provider sees the
    disconnect and the connection is not left half-read in the pool. `so_far()` is the text and
    usage received up to now, for logging a stopped or broken stream.
    """

    def __init__(self, events: Generator[StreamChunk | StreamEnd, None, None], translator: StreamTranslator) -> None:
        self._events = events
        self._translator = translator
        self.closed = False

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> StreamChunk | StreamEnd:
        return next(self._events)

    def close(self) -> None:
        self.closed = True
        self._events.close()

    def so_far(self) -> StreamEnd:
        return self._translator.snapshot(finished=self._translator.is_complete())

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncChatStream(AsyncIterator[StreamChunk | StreamEnd]):
    """The async twin of ChatStream: `async for`, `aclose()`, `so_far()`, `async with`."""

    def __init__(self, events: AsyncGenerator[StreamChunk | StreamEnd, None], translator: StreamTranslator) -> None:
        self._events = events
        self._translator = translator
        self.closed = False

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> StreamChunk | StreamEnd:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        self.closed = True
        await self._events.aclose()

    def so_far(self) -> StreamEnd:
        return self._translator.snapshot(finished=self._translator.is_complete())

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
