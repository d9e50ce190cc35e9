"""A wire protocol's adapter: the checks before a call, the error answers, and one call loop per transport.

A protocol module (openai.py, anthropic.py, google.py) subclasses `ProviderAdapter` with its
translations both ways, its headers and its model list; everything here is the same for all of them.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from typing import Any

import httpx

from mindroute.i18n import _l
from mindroute.providers.errors import (
    ERROR_BODY_SCAN_CHARS,
    AuthenticationError,
    BadRequestError,
    ProviderError,
    UpstreamError,
    clip,
    error_class_for_status,
    make_error,
    parse_retry_after,
    provider_error_details,
)
from mindroute.providers.media import refuse_attachments_outside_user_turns
from mindroute.providers.shapes import ROLES, ChatRequest, ChatResult, HttpCall, StreamEnd
from mindroute.providers.sse import SSEDecoder, SSEEvent, StreamItem, StreamTranslator, load_json
from mindroute.providers.transport import AsyncTransport, SyncTransport, as_timeout, check_headers
from mindroute.providers.transport_aiohttp import AIOHTTP
from mindroute.providers.transport_httpx import HTTPX


def join_url(endpoint: str, path: str, version: str) -> str:
    """`endpoint` + `path`, adding the version segment unless the admin already typed it."""
    base = endpoint.rstrip("/")
    if base.endswith("/" + version):
        return f"{base}/{path}"
    return f"{base}/{version}/{path}"


def sampling(
    request: ChatRequest, *, temperature: str, max_tokens: str | None, top_p: str, stop: str
) -> dict[str, Any]:
    """The caller's sampling settings under a protocol's own field names; unset ones are left out."""
    fields: dict[str, Any] = {}
    if request.temperature is not None:
        fields[temperature] = request.temperature
    if max_tokens is not None and request.max_tokens is not None:
        fields[max_tokens] = request.max_tokens
    if request.top_p is not None:
        fields[top_p] = request.top_p
    if request.stop:
        fields[stop] = list(request.stop)
    return fields


class ProviderAdapter(ABC):
    """One wire protocol: the translations in and out (in the subclass) and the HTTP calls (here).

    `complete`/`stream` are the sync paths (the playground), `acomplete`/`astream` the async ones
    (the API): one call loop per transport (`_exchange`, `_aexchange`), both over the same I/O-free
    translations, and neither knowing which HTTP stack carries it. Nothing is retried: a request that
    may have reached the model could cost twice.
    """

    protocol: str = ""
    key_required: bool = True
    sync_transport: SyncTransport = HTTPX
    async_transport: AsyncTransport = AIOHTTP

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

    def request_headers(self, api_key: str | None, *, stream: bool) -> dict[str, str]:
        """A chat call's headers: JSON in, the key, and an event stream asked for when streaming."""
        headers = {"content-type": "application/json", **self.auth_headers(api_key)}
        if stream:
            headers["accept"] = "text/event-stream"
        return headers

    # -- the model list, per protocol --

    @abstractmethod
    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        """The headers that carry the key (and any version the protocol pins), for chat calls and model lists."""

    @abstractmethod
    def models_url(self, endpoint: str) -> str:
        """The model-list URL for an endpoint, tolerating a version segment the admin already typed."""

    @abstractmethod
    def models_page(self, body: Any) -> tuple[list[str], dict[str, str] | None]:
        """The model ids on one page of the model list, and the query for the next page (None: the last)."""

    def models_first_query(self) -> dict[str, str]:
        """The query of the model list's first page (a page size, for the protocols that page)."""
        return {}

    # -- shared plumbing --

    def prepare(self, request: ChatRequest, endpoint: str, api_key: str | None, *, stream: bool) -> HttpCall:
        """Check what can be checked without the provider, then translate."""
        key = (api_key or "").strip() or None
        if key is None and self.key_required:
            raise AuthenticationError(_l("No API key is set for this provider"))
        if not request.messages:
            raise BadRequestError(_l("A chat needs at least one message"))
        for message in request.messages:
            if message.role not in ROLES:
                raise BadRequestError(_l("Unknown message role {role}", role=repr(message.role)))
            refuse_attachments_outside_user_turns(message)
        call = self.build_call(request, endpoint, key, stream=stream)
        check_headers(call.headers)
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
            clip(message) if message else _l("The provider reported an error in the middle of the answer"),
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

    def _feed(self, translator: StreamTranslator, event: SSEEvent) -> list[StreamItem]:
        try:
            return translator.feed(event)
        except ProviderError:
            raise
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise UpstreamError(
                f"The provider sent a stream event the {self.protocol} protocol does not have"
            ) from None

    # -- sync (the playground) --

    def complete(
        self, request: ChatRequest, endpoint: str, api_key: str | None, *, timeout: httpx.Timeout | float | None = None
    ) -> ChatResult:
        """The whole answer in one response."""
        call = self.prepare(request, endpoint, api_key, stream=False)
        exchange = self._exchange(call, request, None, api_key, as_timeout(timeout))
        try:
            result = next(exchange)
        finally:
            exchange.close()
        assert isinstance(result, ChatResult)
        return result

    def stream(
        self, request: ChatRequest, endpoint: str, api_key: str | None, *, timeout: httpx.Timeout | float | None = None
    ) -> ChatStream:
        """StreamChunks as they arrive, then one StreamEnd; nothing is sent until the first next()."""
        call = self.prepare(request, endpoint, api_key, stream=True)  # refusals surface here, not mid-iteration
        translator = self.stream_translator(request)
        return ChatStream(self._exchange(call, request, translator, api_key, as_timeout(timeout)), translator)

    def _exchange(
        self,
        call: HttpCall,
        request: ChatRequest,
        translator: StreamTranslator | None,
        api_key: str | None,
        timeout: httpx.Timeout,
    ) -> Generator[StreamItem | StreamEnd | ChatResult, None, None]:
        """The sync call loop: a ChatResult without a translator, else StreamChunks and a StreamEnd."""
        try:
            with self.sync_transport.post(call, timeout, stream=translator is not None) as answer:
                if not answer.ok:
                    raise self.error_from_response(answer.status, answer.headers, answer.read(), answer.reason)
                if translator is None:
                    content = answer.read()
                else:
                    decoder = SSEDecoder(answer.line_limit, answer.host)
                    for line in answer.lines():
                        event = decoder.feed(line)
                        if event is not None:
                            yield from self._feed(translator, event)
                    event = decoder.flush()
                    if event is not None:
                        yield from self._feed(translator, event)
            # After the block: the connection is closed before the caller sees the end.
            yield self._parsed(answer.text(content), request) if translator is None else translator.finish()
        except ProviderError as exc:
            exc.redact(api_key)
            raise

    # -- async (the API) --

    async def acomplete(
        self, request: ChatRequest, endpoint: str, api_key: str | None, *, timeout: httpx.Timeout | float | None = None
    ) -> ChatResult:
        """The whole answer in one response; a cancelled task closes the request and re-raises."""
        call = self.prepare(request, endpoint, api_key, stream=False)
        exchange = self._aexchange(call, request, None, api_key, as_timeout(timeout))
        try:
            result = await exchange.__anext__()
        finally:
            await exchange.aclose()
        assert isinstance(result, ChatResult)
        return result

    def astream(
        self, request: ChatRequest, endpoint: str, api_key: str | None, *, timeout: httpx.Timeout | float | None = None
    ) -> AsyncChatStream:
        """StreamChunks as they arrive, then one StreamEnd; `aclose()` stops it and closes the upstream response."""
        call = self.prepare(request, endpoint, api_key, stream=True)
        translator = self.stream_translator(request)
        return AsyncChatStream(self._aexchange(call, request, translator, api_key, as_timeout(timeout)), translator)

    async def _aexchange(
        self,
        call: HttpCall,
        request: ChatRequest,
        translator: StreamTranslator | None,
        api_key: str | None,
        timeout: httpx.Timeout,
    ) -> AsyncGenerator[StreamItem | StreamEnd | ChatResult, None]:
        """The async call loop, step for step the sync one's."""
        try:
            async with self.async_transport.post(call, timeout, stream=translator is not None) as answer:
                if not answer.ok:
                    raise self.error_from_response(answer.status, answer.headers, await answer.read(), answer.reason)
                if translator is None:
                    content = await answer.read()
                else:
                    decoder = SSEDecoder(answer.line_limit, answer.host)
                    async for lines in answer.line_batches():
                        for line in lines:
                            event = decoder.feed(line)
                            if event is not None:
                                for chunk in self._feed(translator, event):
                                    yield chunk
                    event = decoder.flush()
                    if event is not None:
                        for chunk in self._feed(translator, event):
                            yield chunk
            yield self._parsed(answer.text(content), request) if translator is None else translator.finish()
        except ProviderError as exc:
            exc.redact(api_key)
            raise


class ChatStream(Iterator[StreamItem | StreamEnd]):
    """A streamed answer: iterate for StreamChunks and a final StreamEnd; `close()` stops it early.

    Closing (or leaving a `with` block) closes the upstream response, so the provider sees the
    disconnect and the connection is not left half-read in the pool. `so_far()` is the text and
    usage received up to now, for logging a stopped or broken stream.
    """

    def __init__(self, events: Generator[StreamItem | StreamEnd, None, None], translator: StreamTranslator) -> None:
        self._events = events
        self._translator = translator
        self.closed = False

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> StreamItem | StreamEnd:
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


class AsyncChatStream(AsyncIterator[StreamItem | StreamEnd]):
    """The async twin of ChatStream: `async for`, `aclose()`, `so_far()`, `async with`."""

    def __init__(self, events: AsyncGenerator[StreamItem | StreamEnd, None], translator: StreamTranslator) -> None:
        self._events = events
        self._translator = translator
        self.closed = False

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> StreamItem | StreamEnd:
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
