"""POST /v1/chat/completions: the body read and parsed, admission (services/api_admission.py: the key, the
model, the policy, the budgets and rate limits), then the answer whole or as SSE; every answer of an admitted
call carries its x-ratelimit-* headers, a limit's refusal is OpenAI's 429."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from sqlalchemy import Engine
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope

from mindroute.db import get_engine
from mindroute.http.answers import KEY_CODES as _KEY_CODES
from mindroute.http.answers import OVERHEAD_HEADER, RETRY_AFTER_S, limit_refusal_response
from mindroute.http.answers import error_response as _error
from mindroute.http.answers import overhead_ms as _overhead_ms
from mindroute.http.asgi_request import AnswerApp, BodyTooLarge, ClientGone, max_body_bytes
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
    tool_delta_json,
    usage_chunk_json,
)
from mindroute.http.sse import SSE_DONE, EventStreamResponse, sse_data
from mindroute.providers.shapes import ToolCallDelta
from mindroute.providers.sse import StreamItem
from mindroute.services.api_admission import AdmittedCall, CallRefusal, admit_call
from mindroute.services.call_tracker import ApiOutcome, CallTracker
from mindroute.services.chat_async import AsyncStreamingChat, UpstreamClock, acomplete_call

log = logging.getLogger("mindroute.http.api")

# --- routes -------------------------------------------------------------------------------------


async def _chat_completions(scope: Scope, receive: Receive) -> Response | None:
    started = time.perf_counter()
    clock = UpstreamClock()
    engine = get_engine()
    headers = _headers(scope)
    problem: CallRefusal | None = None
    parsed: ParsedChat | None = None
    limit = max_body_bytes()
    try:
        parsed = await _parse(await _read_body(headers, receive, limit))
    except BodyTooLarge:
        problem = CallRefusal(413, f"The request body is over the limit of {limit:,} bytes")
    except InvalidChatRequest as exc:
        problem = CallRefusal(400, exc.message, param=exc.param)
    except ClientGone:
        return None  # nobody to answer, and no call was made
    caller = _caller(scope, headers)
    request, model_id = (parsed.request, parsed.model_id) if parsed is not None else (None, None)
    extra = {"user": parsed.user} if parsed is not None and parsed.user else None
    presented = _bearer(headers.get("authorization"))
    admitted = await admit_call(engine, presented, model_id, request, problem, caller, started, extra)
    if isinstance(admitted, CallRefusal):
        answer_headers = {OVERHEAD_HEADER: _overhead_ms(started, clock)}
        if admitted.limit is not None:
            return limit_refusal_response(admitted.limit, {**admitted.headers, **answer_headers})
        if admitted.status == 401:
            answer_headers["www-authenticate"] = "Bearer"
        elif admitted.status == 503:
            answer_headers["retry-after"] = RETRY_AFTER_S
        code = _KEY_CODES[admitted.key_refusal] if admitted.key_refusal is not None else None
        return _error(admitted.status, admitted.message, code, headers=answer_headers, param=admitted.param)
    assert parsed is not None
    if not parsed.request.stream:
        tracker = CallTracker(admitted.prepared, admitted.caller, started, extra, admitted.limits.charges)
        result = await acomplete_call(engine, tracker, clock)
        answer_headers = {**admitted.limits.headers, OVERHEAD_HEADER: _overhead_ms(started, clock)}
        if not result.outcome.ok:
            return _failure_response(result, answer_headers)
        return JSONResponse(completion_json(result, admitted.model_id), headers=answer_headers)
    return await _stream(engine, admitted, parsed, started, clock, extra)


def _failure_response(result: ApiOutcome, headers: dict[str, str]) -> JSONResponse:
    outcome = result.outcome
    if outcome.retry_after is not None:
        headers["retry-after"] = str(max(0, round(outcome.retry_after)))
    if outcome.param is not None:  # refused by the protocol's adapter before any upstream call
        message = outcome.error or "This parameter is not supported"
        return _error(outcome.status_code, message, "unsupported_parameter", headers=headers, param=outcome.param)
    code = {429: "rate_limit_exceeded", 504: "upstream_timeout"}.get(outcome.status_code, "upstream_error")
    return _error(outcome.status_code, outcome.error or "The provider failed", code, headers=headers)


async def _stream(
    engine: Engine,
    admitted: AdmittedCall,
    parsed: ParsedChat,
    started: float,
    clock: UpstreamClock,
    extra: dict[str, Any] | None,
) -> Response:
    tracker = CallTracker(admitted.prepared, admitted.caller, started, extra, admitted.limits.charges)
    chat = AsyncStreamingChat(engine, tracker, clock)
    texts = chat.chunks()
    try:
        # Wait for the first text before answering, so an upstream refusal gets its own status.
        first = await anext(texts, None)
    except BaseException:
        await chat.finish()
        raise
    if first is None and chat.error is not None:
        result = await chat.finish()
        return _failure_response(result, {**admitted.limits.headers, OVERHEAD_HEADER: _overhead_ms(started, clock)})
    cid, created, model_id = completion_id(), int(time.time()), admitted.model_id
    include_usage = parsed.include_usage
    choices = parsed.request.n or 1

    def chunk(delta: dict[str, Any] | None, reason: str | None = None, index: int = 0, logprobs: Any = None) -> bytes:
        return sse_data(
            chunk_json(
                cid, created, model_id, delta, reason, include_usage=include_usage, index=index, logprobs=logprobs
            )
        )

    def piece(item: StreamItem) -> bytes:
        if isinstance(item, ToolCallDelta):
            return chunk({"tool_calls": [tool_delta_json(item)]}, index=item.choice)
        return chunk({"content": item.text}, index=item.choice, logprobs=item.logprobs)

    async def events() -> AsyncIterator[bytes]:
        try:
            for index in range(choices):
                yield chunk({"role": "assistant", "content": ""}, index=index)
            if first is not None:
                yield piece(first)
            async for item in texts:
                yield piece(item)
            result = await chat.finish()
            if result.outcome.ok:
                outcome = result.outcome
                yield chunk({}, finish_reason(result.finish_reason, bool(outcome.tool_calls)))
                for other in outcome.other_choices:
                    yield chunk({}, finish_reason(other.finish_reason, bool(other.tool_calls)), index=other.index)
                if include_usage:
                    yield sse_data(usage_chunk_json(cid, created, model_id, result))
            else:  # the provider failed after the 200 went out: OpenAI's in-stream error event
                yield sse_data(error_body(result.outcome.status_code, result.outcome.error or "The provider failed"))
            yield SSE_DONE
        finally:
            with anyio.CancelScope(shield=True):
                await texts.aclose()
                await chat.finish()

    headers = {
        **admitted.limits.headers,
        OVERHEAD_HEADER: _overhead_ms(started, clock),
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
    }
    return EventStreamResponse(events(), headers)


# The route as a plain ASGI app (see AnswerApp).
chat_completions_app = AnswerApp(_chat_completions)
