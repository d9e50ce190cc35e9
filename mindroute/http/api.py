"""The OpenAI-compatible HTTP API: /v1/chat/completions, /v1/models, /v1/models/{id} and /v1/openapi.json.

Served beside Streamlit by app.py (`ApiFirst`, its first middleware, hands every /v1 request to
`v1_app` before the page middleware), or alone with `uvicorn mindroute.http.api:app --workers N`.
Every rule comes from the services: keys (api_keys), who may call what (prepare_call), the one Logs
row per call (call_log); this module only speaks HTTP and OpenAI's shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import sys
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from mindroute.config import get_settings
from mindroute.db import get_engine, transaction
from mindroute.http import web
from mindroute.http.openai_compat import (
    SSE_DONE,
    InvalidChatRequest,
    ParsedChat,
    chunk_json,
    completion_id,
    completion_json,
    error_body,
    finish_reason,
    parse_chat_request,
    parse_chat_request_off_loop,
    parse_off_loop,
    sse_data,
    usage_chunk_json,
)
from mindroute.models import User
from mindroute.providers.base import aclose_shared_async_client
from mindroute.services import admission, api_keys
from mindroute.services.call_log import is_database_outage
from mindroute.services.chat import Caller, ChatRefused, PreparedCall, apply_route
from mindroute.services.chat_async import (
    ApiOutcome,
    AsyncStreamingChat,
    UpstreamClock,
    acomplete_prepared,
    alog_call,
    api_model_ids,
    in_db_thread,
    refusal_record,
    start_log_writer,
    stop_log_writer,
)

log = logging.getLogger("mindroute.http.api")

MAX_BODY_BYTES_ENV = "MINDROUTE_API_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 25 * 1024 * 1024
OVERHEAD_HEADER = "x-mindroute-overhead-ms"
_KEY_CODES = {
    api_keys.KeyRefusal.UNKNOWN: "invalid_api_key",
    api_keys.KeyRefusal.EXPIRED: "expired_api_key",
    api_keys.KeyRefusal.REVOKED: "revoked_api_key",
    api_keys.KeyRefusal.OWNER_DEACTIVATED: "account_deactivated",
}
_CODES = {
    400: "invalid_request",
    403: "not_allowed",
    404: "model_not_found",
    413: "request_too_large",
    503: "database_unavailable",
}
DATABASE_UNAVAILABLE = "MindRoute's database is unavailable; retry"
RETRY_AFTER_S = "1"
# Worker threads per event loop for parsing big request bodies (CPU work: more would not go faster).
PARSE_THREADS = 2
_parse_limiters: weakref.WeakKeyDictionary[Any, anyio.CapacityLimiter] = weakref.WeakKeyDictionary()


def max_body_bytes() -> int:
    """The largest request body accepted (MINDROUTE_API_MAX_BODY_BYTES, default 25 MB)."""
    raw = os.environ.get(MAX_BODY_BYTES_ENV, "").strip()
    try:
        return int(raw) if raw else DEFAULT_MAX_BODY_BYTES
    except ValueError:
        return DEFAULT_MAX_BODY_BYTES


# --- helpers ------------------------------------------------------------------------------------


class BodyTooLarge(Exception):  # noqa: N818 - reads better at the raise site
    pass


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the first of repeated ones, as Starlette gives)."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


def _caller(scope: Scope, headers: dict[str, str]) -> Caller:
    client = scope.get("client")
    return Caller(
        source="api",
        ip=web.client_address(client[0] if client else None, headers.get("x-forwarded-for")),
        user_agent=headers.get("user-agent"),
        api_key_id=None,
    )


async def _parse(raw: bytes) -> ParsedChat:
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


class ClientGone(Exception):  # noqa: N818 - reads better at the raise site
    """The client disconnected before its request body had arrived."""


async def _read_body(headers: dict[str, str], receive: Receive, limit: int) -> bytes:
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


def _error(
    status: int,
    message: str,
    code: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    body = error_body(status, message, code or _CODES.get(status), param)
    return JSONResponse(body, status_code=status, headers=headers)


def _overhead_ms(started: float, clock: UpstreamClock) -> str:
    return f"{max(0.0, (time.perf_counter() - started - clock.seconds) * 1000):.2f}"


# --- admission: key, body, model, policy in one unit of work --------------------------------------


@dataclass(frozen=True)
class _Admitted:
    prepared: PreparedCall
    caller: Caller
    model_id: str  # "<provider>/<model>", as the answer names it


@dataclass(frozen=True)
class _Refused:
    status: int
    message: str
    code: str | None = None
    param: str | None = None  # the request field at fault, as OpenAI names it


async def _admit(
    engine: Engine,
    presented_key: str | None,
    parsed: ParsedChat | None,
    problem: _Refused | None,
    caller: Caller,
    started: float,
) -> _Admitted | _Refused:
    """Verify the key, then the body, the model and the policy; a refusal writes its Logs row here.
    A database that is away gets a 503, logged (queued) like any refusal."""
    provider_id = user_id = None
    request = parsed.request if parsed is not None else None
    try:
        admitted = await admission.aadmit(engine, presented_key, parsed.model_id if parsed is not None else None)
    except Exception as error:
        if not is_database_outage(error):
            raise
        log.warning("refused an API call: the database is unavailable (%s)", type(error).__name__)
        refusal = _Refused(503, DATABASE_UNAVAILABLE)
    else:
        caller = replace(caller, api_key_id=admitted.key_id)
        user_id = admitted.user_id
        if isinstance(admitted, admission.KeyRefused):
            refusal = _Refused(401, admitted.refusal.message, _KEY_CODES[admitted.refusal])
        elif problem is not None:
            refusal = problem
        elif isinstance(admitted.route, admission.RouteRefusal):
            refusal = _Refused(admitted.route.status, admitted.route.message)
            provider_id = admitted.route.provider_id
        else:
            assert parsed is not None
            route = admitted.route
            provider_id = route.provider_id
            request = replace(parsed.request, model=route.model)
            try:
                prepared = apply_route(route, request)
                return _Admitted(prepared, caller, f"{route.provider_name}/{route.model}")
            except ChatRefused as refused:
                refusal = _Refused(refused.status_code, refused.message)
    extra = {"user": parsed.user} if parsed is not None and parsed.user else None
    model = parsed.model_id if parsed is not None else None
    await alog_call(
        engine,
        refusal_record(user_id, provider_id, request, model, refusal.status, refusal.message, caller, started, extra),
    )
    return refusal


# --- routes -------------------------------------------------------------------------------------


class ChatCompletionsApp:
    """POST /v1/chat/completions as a plain ASGI app: the API's hot path skips the framework's
    request objects and middleware (Starlette's responses are ASGI apps, and are sent as such). An
    instance, not a function, so that a Starlette Route serves it as an ASGI app."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await _chat_completions(scope, receive)
        if response is not None:
            await response(scope, receive, send)


chat_completions_app = ChatCompletionsApp()


async def _chat_completions(scope: Scope, receive: Receive) -> Response | None:
    started = time.perf_counter()
    clock = UpstreamClock()
    engine = get_engine()
    headers = _headers(scope)
    problem: _Refused | None = None
    parsed: ParsedChat | None = None
    limit = max_body_bytes()
    try:
        parsed = await _parse(await _read_body(headers, receive, limit))
    except BodyTooLarge:
        problem = _Refused(413, f"The request body is over the limit of {limit:,} bytes")
    except InvalidChatRequest as exc:
        problem = _Refused(400, exc.message, param=exc.param)
    except ClientGone:
        return None  # nobody to answer, and no call was made
    caller = _caller(scope, headers)
    admitted = await _admit(engine, _bearer(headers.get("authorization")), parsed, problem, caller, started)
    if isinstance(admitted, _Refused):
        answer_headers = {OVERHEAD_HEADER: _overhead_ms(started, clock)}
        if admitted.status == 401:
            answer_headers["www-authenticate"] = "Bearer"
        elif admitted.status == 503:
            answer_headers["retry-after"] = RETRY_AFTER_S
        return _error(admitted.status, admitted.message, admitted.code, headers=answer_headers, param=admitted.param)
    assert parsed is not None
    extra = {"user": parsed.user} if parsed.user else None
    if not parsed.request.stream:
        result = await acomplete_prepared(engine, admitted.prepared, admitted.caller, started, clock, extra)
        answer_headers = {OVERHEAD_HEADER: _overhead_ms(started, clock)}
        if not result.outcome.ok:
            return _failure_response(result, answer_headers)
        return JSONResponse(completion_json(result, admitted.model_id), headers=answer_headers)
    return await _stream(engine, admitted, parsed, started, clock, extra)


def _failure_response(result: ApiOutcome, headers: dict[str, str]) -> JSONResponse:
    outcome = result.outcome
    if outcome.retry_after is not None:
        headers["retry-after"] = str(max(0, round(outcome.retry_after)))
    code = {429: "rate_limit_exceeded", 504: "upstream_timeout"}.get(outcome.status_code, "upstream_error")
    return _error(outcome.status_code, outcome.error or "The provider failed", code, headers=headers)


async def _stream(
    engine: Engine,
    admitted: _Admitted,
    parsed: ParsedChat,
    started: float,
    clock: UpstreamClock,
    extra: dict[str, Any] | None,
) -> Response:
    chat = AsyncStreamingChat(engine, admitted.prepared, admitted.caller, started, clock, extra)
    texts = chat.chunks()
    try:
        # Wait for the first text before answering, so an upstream refusal gets its own status.
        first = await anext(texts, None)
    except BaseException:
        await chat.finish()
        raise
    if first is None and chat.error is not None:
        result = await chat.finish()
        return _failure_response(result, {OVERHEAD_HEADER: _overhead_ms(started, clock)})
    cid, created, model_id = completion_id(), int(time.time()), admitted.model_id
    include_usage = parsed.include_usage

    def chunk(delta: dict[str, Any] | None, reason: str | None = None) -> bytes:
        return sse_data(chunk_json(cid, created, model_id, delta, reason, include_usage=include_usage))

    async def events() -> AsyncIterator[bytes]:
        try:
            yield chunk({"role": "assistant", "content": ""})
            if first is not None:
                yield chunk({"content": first})
            async for text in texts:
                yield chunk({"content": text})
            result = await chat.finish()
            if result.outcome.ok:
                yield chunk({}, finish_reason(result.finish_reason))
                if include_usage:
                    yield sse_data(usage_chunk_json(cid, created, model_id, result))
            else:  # the provider failed after the 200 went out: OpenAI's in-stream error event
                yield sse_data(error_body(result.outcome.status_code, result.outcome.error or "The provider failed"))
            yield SSE_DONE
        finally:
            with anyio.CancelScope(shield=True):
                await texts.aclose()
                await chat.finish()

    headers = {OVERHEAD_HEADER: _overhead_ms(started, clock), "cache-control": "no-cache", "x-accel-buffering": "no"}
    return EventStreamResponse(events(), headers)


class EventStreamResponse(Response):
    """text/event-stream that stops (and closes its source) as soon as the client disconnects,
    whichever ASGI spec version the server speaks."""

    def __init__(self, body: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.raw_headers.append((b"content-type", b"text/event-stream; charset=utf-8"))
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def listen() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(listen)
            try:
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                async for data in self._body:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                with anyio.CancelScope(shield=True):
                    await self._body.aclose()  # type: ignore[attr-defined]
                group.cancel_scope.cancel()


def _database_unavailable(error: BaseException) -> JSONResponse:
    log.warning("refused an API request: the database is unavailable (%s)", type(error).__name__)
    return _error(503, DATABASE_UNAVAILABLE, headers={"retry-after": RETRY_AFTER_S})


async def models_route(request: Request) -> Response:
    try:
        return await _models(request)
    except Exception as error:
        if not is_database_outage(error):
            raise
        return _database_unavailable(error)


async def _models(request: Request) -> Response:
    engine = get_engine()
    admitted = await admission.aadmit(engine, _bearer(request.headers.get("authorization")), None)
    if isinstance(admitted, admission.KeyRefused):
        refusal = admitted.refusal
        return _error(401, refusal.message, _KEY_CODES[refusal], headers={"www-authenticate": "Bearer"})

    def listing() -> list[dict[str, Any]]:
        with transaction(engine) as session:
            user = session.get(User, admitted.user_id)
            assert user is not None
            ids = api_model_ids(session, user)
        return [{"id": model_id, "object": "model", "created": 0, "owned_by": owner} for owner, model_id in ids]

    return JSONResponse({"object": "list", "data": await in_db_thread(listing)})


async def model_route(request: Request, model_id: str) -> Response:
    """GET /v1/models/{id}: OpenAI's model object for an id the key's owner may use, else a 404."""
    listing = await models_route(request)
    if listing.status_code != 200:
        return listing
    for model in json.loads(listing.body)["data"]:
        if model["id"] == model_id:
            return JSONResponse(model)
    return JSONResponse(
        error_body(404, f"The model '{model_id}' does not exist", "model_not_found", "model"), status_code=404
    )


async def openapi_route(_request: Request) -> Response:
    return JSONResponse(OPENAPI)


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
            },
            "required": ["message", "type", "code"],
        }
    },
}


def _errors(*statuses: int) -> dict[str, Any]:
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {str(s): {"description": _STATUS_TEXT[s], **ref} for s in statuses}


_STATUS_TEXT = {
    400: "Invalid request (more than MINDROUTE_API_MAX_MESSAGES messages among others), over the token limit, "
    "media not allowed, or an ambiguous bare model",
    401: "Unknown, expired or revoked key, or its owner is deactivated",
    403: "A provider granted to you is inactive, or the model is not allowed",
    404: "The model exists nowhere, or only on providers not granted to you; or an unknown URL (code unknown_url)",
    413: "Body over MINDROUTE_API_MAX_BODY_BYTES",
    429: "The provider's rate limit (retry-after passed on)",
    502: "The provider failed",
    503: "MindRoute's database is unavailable; retry (retry-after given)",
    504: "The provider did not answer in time",
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "MindRoute OpenAI-compatible API", "version": "1.0.0"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A MindRoute key (mr-...)"}},
        "schemas": {"Error": _ERROR_SCHEMA},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/chat/completions": {
            "post": {
                "summary": "Create a chat completion (OpenAI's request and response shapes; stream with SSE)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["model", "messages"],
                                "properties": {
                                    "model": {
                                        "type": "string",
                                        "description": "<provider name>/<model>, or a bare model",
                                    },
                                    "messages": {"type": "array", "items": {"type": "object"}},
                                    "stream": {"type": "boolean"},
                                    "stream_options": {
                                        "type": "object",
                                        "properties": {"include_usage": {"type": "boolean"}},
                                    },
                                    "max_tokens": {"type": "integer", "minimum": 1},
                                    "max_completion_tokens": {"type": "integer", "minimum": 1},
                                    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                                    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                                    "stop": {
                                        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
                                    },
                                    "user": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "A chat.completion, or chat.completion.chunk events ending with data: [DONE]",
                        "headers": {OVERHEAD_HEADER: {"schema": {"type": "number"}}},
                        "content": {"application/json": {}, "text/event-stream": {}},
                    },
                    **_errors(400, 401, 403, 404, 413, 429, 502, 503, 504),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The models the key's owner may use, as <provider name>/<model>",
                "responses": {"200": {"description": "OpenAI's model list"}, **_errors(401, 503)},
            }
        },
        "/v1/models/{model}": {
            "get": {
                "summary": "One model the key's owner may use, by its id (<provider name>/<model>; the id's / as is)",
                "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OpenAI's model object"}, **_errors(401, 404, 503)},
            }
        },
        "/v1/openapi.json": {
            "get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}
        },
    },
}


# --- the app ------------------------------------------------------------------------------------


GC_THRESHOLDS = (10_000, 20, 20)
GIL_SWITCH_INTERVAL_S = 0.0005
_runtime_settled = False


def _settle_runtime() -> None:
    """Tune the interpreter for a long-running server, once per process.

    - Everything allocated at startup (modules, metadata, compiled statements) is moved out of the
      cyclic garbage collector's reach with gc.freeze(), and the young-generation threshold goes
      from 700 to 10,000 allocations. Without this, a full collection walks all of startup's
      objects and holds up every call in flight for tens of ms (the API's p99 went from about
      85 ms to under 25 ms). Calls allocate few long-lived cycles, so collecting less often costs
      little memory.
    - The GIL switch interval goes from 5 ms to 0.5 ms. The event loop's thread lets the GIL go
      for each socket, libpq or SQLite call and then waits for the log writer's thread to hand it
      back, for up to the switch interval; on PostgreSQL that wait was a visible part of the p50.
    """
    global _runtime_settled
    if _runtime_settled:
        return
    _runtime_settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """The web lifespan (schema up to date) and the Logs write-behind; at shutdown, close the
    provider connection pool and write every queued Logs row."""
    async with web.lifespan(app):
        _settle_runtime()
        start_log_writer(get_engine())
        try:
            yield
        finally:
            await aclose_shared_async_client()
            await admission.aclose_async_readers()
            # After uvicorn has finished every request: the queued Logs rows are written before exit.
            await run_in_threadpool(stop_log_writer)
            admission.dispose_read_engines()


def is_api_path(path: str) -> bool:
    """Whether a request path belongs to the API (/v1 and below), which answers every one of them."""
    return path.startswith("/v1/") or path == "/v1"


async def _unknown_url(scope: Scope, receive: Receive, send: Send) -> None:
    method, path = scope.get("method", "GET"), scope["path"]
    shown = path if len(path) <= 200 else path[:200] + "…"
    message = f"Unknown request URL: {method} {shown}. See /v1/openapi.json for the routes MindRoute serves."
    await _error(404, message, "unknown_url")(scope, receive, send)


_MODEL_PREFIX = "/v1/models/"


class V1App:
    """Every /v1 request as a plain ASGI app, with no framework router or middleware in front:
    POST /v1/chat/completions, GET /v1/models, GET /v1/models/{id} (ids contain "/"),
    GET /v1/openapi.json; any other path or method gets OpenAI's JSON 404 (code "unknown_url")."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._dispatch(scope, receive, tracking_send)
        except Exception:
            log.exception("the API failed on %s %s", scope.get("method"), scope["path"][:200])
            if started:
                raise  # the answer is under way: the server can only close the connection
            body = error_body(500, "MindRoute failed to answer this request; the error is in its server log")
            await JSONResponse(body, status_code=500)(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope.get("method")
        if path == "/v1/chat/completions" and method == "POST":
            await chat_completions_app(scope, receive, send)
            return
        if method in ("GET", "HEAD"):
            if path == "/v1/models":
                response = await models_route(Request(scope, receive))
            elif path.startswith(_MODEL_PREFIX) and len(path) > len(_MODEL_PREFIX):
                response = await model_route(Request(scope, receive), path[len(_MODEL_PREFIX) :])
            elif path == "/v1/openapi.json":
                response = await openapi_route(Request(scope, receive))
            else:
                response = None
            if response is not None:
                await response(scope, receive, send)
                return
        await _unknown_url(scope, receive, send)


v1_app = V1App()


class ApiFirst:
    """ASGI middleware that hands every /v1 request to the API before any middleware after it runs:
    app.py puts it first in the st.App's middleware, so API calls skip Streamlit's and MindRoute's
    page middleware (session cookie, path security, sessions, gzip)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_api_path(scope["path"]):
            await v1_app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def routes() -> list[BaseRoute]:
    """The API as routes, for mounting in another Starlette app: every /v1 path goes to V1App."""
    return [Route("/v1", v1_app), Route("/v1/{rest:path}", v1_app)]


def _standalone_routes() -> list[BaseRoute]:
    health: Callable[[Request], Awaitable[Response]] = web.healthz_route
    return [Route("/healthz", health, methods=["GET"])]


class _Api:
    """The standalone API: /v1 straight to V1App, everything else (/healthz, lifespan) through
    Starlette."""

    def __init__(self) -> None:
        self.starlette = Starlette(routes=_standalone_routes(), lifespan=lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_api_path(scope["path"]):
            await v1_app(scope, receive, send)
        else:
            await self.starlette(scope, receive, send)


app = _Api()
