"""What the API reads from a raw ASGI request, with no framework objects: its headers, the bearer key,
the caller, and the body (refused over its size limit) parsed as a chat request."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mindroute.config import get_settings
from mindroute.http.chat_request import (
    InvalidChatRequest,
    ParsedChat,
    parse_chat_request,
    parse_chat_request_off_loop,
    parse_off_loop,
)
from mindroute.http.origins import client_address
from mindroute.services.call_tracker import Caller


class AnswerApp:
    """A route's handler, `(scope, receive) -> Response or None` (None: the client left, nobody to answer), as
    a plain ASGI app: the API's routes skip the framework's request objects and middleware (Starlette's
    responses are ASGI apps, and are sent as such). An instance, so that a Starlette Route serves it as an
    ASGI app."""

    def __init__(self, handler: Callable[[Scope, Receive], Awaitable[Response | None]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._handler(scope, receive)
        if response is not None:
            await response(scope, receive, send)


MAX_BODY_BYTES_ENV = "MINDROUTE_API_MAX_BODY_BYTES"
# Worker threads per event loop for parsing big request bodies (CPU work: more would not go faster).
PARSE_THREADS = 2
_parse_limiters: weakref.WeakKeyDictionary[Any, anyio.CapacityLimiter] = weakref.WeakKeyDictionary()


def max_body_bytes() -> int:
    """The largest request body accepted (MINDROUTE_API_MAX_BODY_BYTES, default 25 MB)."""
    return get_settings().api_max_body_bytes


class BodyTooLarge(Exception):  # noqa: N818 - reads better at the raise site
    """The body is over max_body_bytes (by its Content-Length, or as it arrived)."""


class ClientGone(Exception):  # noqa: N818 - reads better at the raise site
    """The client disconnected before its request body had arrived."""


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def scope_headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the first of repeated ones, as Starlette gives)."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


def api_caller(scope: Scope, headers: dict[str, str]) -> Caller:
    """Who is calling, for the Logs row: address (see origins.client_address) and user agent; the key comes later."""
    client = scope.get("client")
    return Caller(
        source="api",
        ip=client_address(client[0] if client else None, headers.get("x-forwarded-for")),
        user_agent=headers.get("user-agent"),
        api_key_id=None,
    )


async def read_body(headers: dict[str, str], receive: Receive, limit: int) -> bytes:
    """The body, refused (BodyTooLarge) by its Content-Length or once more than `limit` bytes arrived."""
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def parse_body(raw: bytes) -> ParsedChat:
    """The body as a chat request: on the event loop when that is cheap (under ~1 ms), else in a
    worker thread, so that a 25 MB body of tiny messages does not hold up every other call."""
    max_messages = get_settings().api_max_messages
    if not parse_off_loop(raw):
        return parse_chat_request(raw, max_messages)
    loop = asyncio.get_running_loop()
    limiter = _parse_limiters.get(loop)
    if limiter is None:
        limiter = _parse_limiters[loop] = anyio.CapacityLimiter(PARSE_THREADS)
    parsed = await anyio.to_thread.run_sync(parse_chat_request_off_loop, raw, max_messages, limiter=limiter)
    if isinstance(parsed, InvalidChatRequest):
        raise parsed
    return parsed
