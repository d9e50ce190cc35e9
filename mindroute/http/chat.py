"""POST /v1/chat/completions: admission (key, body, model, policy), then the answer whole or as SSE."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import anyio
from sqlalchemy import Engine
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from mindroute.db import get_engine
from mindroute.http.answers import DATABASE_UNAVAILABLE, OVERHEAD_HEADER, RETRY_AFTER_S
from mindroute.http.answers import KEY_CODES as _KEY_CODES
from mindroute.http.answers import error_response as _error
from mindroute.http.answers import overhead_ms as _overhead_ms
from mindroute.http.asgi_request import BodyTooLarge, ClientGone, max_body_bytes
from mindroute.http.asgi_request import api_caller as _caller
from mindroute.http.asgi_request import bearer as _bearer
from mindroute.http.asgi_request import parse_body as _parse
from mindroute.http.asgi_request import read_body as _read_body
from mindroute.http.asgi_request import scope_headers as _headers
from mindroute.http.chat_request import InvalidChatRequest, ParsedChat
from mindroute.http.openai_compat import (
    chunk_json,
    completion_id,
    completion_json,
    error_body,
    finish_reason,
    usage_chunk_json,
)
from mindroute.http.sse import SSE_DONE, EventStreamResponse, sse_data
from mindroute.services import admission
from mindroute.services.call_log import is_database_outage
from mindroute.services.chat import Caller, ChatRefused, PreparedCall, apply_route
from mindroute.services.chat_async import (
    ApiOutcome,
    AsyncStreamingChat,
    UpstreamClock,
    acomplete_prepared,
    alog_call,
    refusal_record,
)

log = logging.getLogger("mindroute.http.api")

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
