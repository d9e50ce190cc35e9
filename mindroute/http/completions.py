"""POST /v1/completions (OpenAI's legacy text completions): passed through to OpenAI-protocol providers
only, whole or as SSE, with the model renamed to the id the client used, under the budgets and rate limits
(services/limits.py, checked last before the upstream call; every answer sends their x-ratelimit-* headers),
and one Logs row (request_type "completion") with the provider's token counts, the cost and the charges."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from sqlalchemy import Engine
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope

from mindroute import redaction
from mindroute.db import get_engine
from mindroute.http.answers import OVERHEAD_HEADER, overhead_ms
from mindroute.http.asgi_request import AnswerApp, ClientGone
from mindroute.http.asgi_request import scope_headers as _headers
from mindroute.http.embeddings import (
    InvalidBody,
    Refused,
    RoutedCall,
    admit_limits,
    admit_route,
    failure_response,
    failure_status,
    log_row,
    model_of,
    read_json_object,
    refuse_routed,
)
from mindroute.http.openai_compat import error_body
from mindroute.http.sse import SSE_DONE, EventStreamResponse, sse_data
from mindroute.providers.adapter import ProviderAdapter
from mindroute.providers.embeddings import protocol_label
from mindroute.providers.errors import ProviderError, UpstreamError
from mindroute.providers.registry import adapter_for
from mindroute.providers.shapes import HttpCall
from mindroute.providers.sse import SSEDecoder, int_or_none
from mindroute.providers.transport import as_timeout, check_headers
from mindroute.providers.transport_aiohttp import AIOHTTP, AiohttpAnswer
from mindroute.redaction import redact_secrets
from mindroute.services.call_log import REQUEST_TYPE_COMPLETION, STOPPED_BY_USER_STATUS
from mindroute.services.call_tracker import ms_since
from mindroute.services.chat_async import UpstreamClock

COMPLETION_PROTOCOLS = ("openai", "openai-compatible")
PROMPT_LOG_CHARS = 1_000  # of the first prompt, in the Logs row


def _check_body(body: dict[str, Any]) -> str:
    model = model_of(body)
    for name in ("max_tokens",):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidBody(f"{name} must be a non-negative integer", name)
    if body.get("stream") not in (None, True, False):
        raise InvalidBody("stream must be a boolean", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidBody("stream_options must be an object", "stream_options")
    return model


def _summary(body: dict[str, Any] | None) -> dict[str, Any]:
    """What the Logs row keeps of the request: at most PROMPT_LOG_CHARS of the first prompt (redacted),
    how many prompts, and the sampling fields as sent."""
    if body is None:
        return {}
    summary: dict[str, Any] = {}
    prompt = body.get("prompt")
    first = prompt[0] if isinstance(prompt, list) and prompt else prompt
    if isinstance(prompt, list):
        summary["prompt_count"] = len(prompt)
    if isinstance(first, str):
        summary["prompt"] = redact_secrets(first[: PROMPT_LOG_CHARS + 200])[:PROMPT_LOG_CHARS]
    for name in ("max_tokens", "temperature", "top_p", "n", "stream", "user"):
        value = body.get(name)
        if isinstance(value, int | float | str | bool):
            summary[name] = value
    return summary


async def _completions(scope: Scope, receive: Receive) -> Response | None:
    started = time.perf_counter()
    engine = get_engine()
    headers = _headers(scope)
    problem: Refused | None = None
    body: dict[str, Any] | None = None
    model_id: str | None = None
    try:
        body = await read_json_object(headers, receive)
        model_id = _check_body(body)
    except InvalidBody as exc:
        problem = Refused(exc.status, exc.message, exc.param)
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            model_id = body["model"].strip() or None
    except ClientGone:
        return None
    extra = _summary(body)
    routed = await admit_route(engine, scope, headers, model_id, problem, started, extra, REQUEST_TYPE_COMPLETION)
    if isinstance(routed, Response):
        return routed
    assert body is not None and model_id is not None
    route = routed.route
    if route.protocol not in COMPLETION_PROTOCOLS:
        message = (
            f"The {protocol_label(route.protocol)} protocol has no legacy completions: "
            "use /v1/chat/completions for this model"
        )
        return await refuse_routed(
            engine, routed, REQUEST_TYPE_COMPLETION, started, extra, Refused(400, message, "model")
        )
    upstream = {**body, "model": route.model}
    limit = route.effective_max_tokens
    if limit is not None:
        asked = body.get("max_tokens")
        if asked is not None and asked > limit:
            message = f"max tokens {asked:,} is over the limit of {limit:,} ({route.limit_source})"
            refusal = Refused(400, message, "max_tokens")
            return await refuse_routed(engine, routed, REQUEST_TYPE_COMPLETION, started, extra, refusal)
        if asked is None:
            upstream["max_tokens"] = limit
    checked = await admit_limits(engine, routed, REQUEST_TYPE_COMPLETION, started, extra)
    if isinstance(checked, Response):
        return checked
    routed = checked
    stream = body.get("stream") is True
    include_usage = False
    if stream:
        options = body.get("stream_options") or {}
        include_usage = options.get("include_usage") is True
        # Forced on upstream, so that the Logs row has the token counts; the client sees them if it asked.
        upstream["stream_options"] = {**options, "include_usage": True}
    adapter = adapter_for(route.protocol)
    key = (route.api_key or "").strip() or None
    call = HttpCall(
        url=route.endpoint.rstrip("/") + "/completions",
        headers=adapter.request_headers(key, stream=stream),
        body=upstream,
    )
    clock = UpstreamClock()
    if stream:
        return await _stream(engine, routed, call, key, model_id, include_usage, started, clock, extra)
    return await _whole(engine, routed, call, key, model_id, started, clock, extra)


def _usage(payload: dict[str, Any]) -> tuple[int | None, int | None, int | None] | None:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    counts = tuple(int_or_none(usage.get(n)) for n in ("prompt_tokens", "completion_tokens", "total_tokens"))
    return counts if any(c is not None for c in counts) else None  # type: ignore[return-value]


def _redacted_choices(payload: dict[str, Any], keys: redaction.KeySet) -> str:
    """The first choice's text (for the log), with keys taken out of every choice's text in place."""
    text = ""
    choices = payload.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and isinstance(choice.get("text"), str):
            choice["text"] = keys.redact(choice["text"])
            if choice.get("index", 0) == 0:
                text += choice["text"]
    return text


def _stream_redacted_choices(
    payload: dict[str, Any], redactors: dict[int, redaction.StreamRedactor], keys: redaction.KeySet
) -> str:
    """_redacted_choices for a stream: each choice's text through its own StreamRedactor, so that a key
    split across two chunks is held back until it can be told apart (flushed by `_held_chunk`)."""
    text = ""
    choices = payload.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and isinstance(choice.get("text"), str):
            index = choice.get("index", 0) if isinstance(choice.get("index", 0), int) else 0
            redactor = redactors.get(index)
            if redactor is None:
                redactor = redactors[index] = keys.stream()
            choice["text"] = redactor.feed(choice["text"])
            if index == 0:
                text += choice["text"]
    return text


def _held_chunk(redactors: dict[int, redaction.StreamRedactor]) -> tuple[str, dict[str, Any] | None]:
    """The text the stream redactors still hold at the end, as one last chunk's choices (None: nothing held),
    and choice 0's part of it (for the log)."""
    choices = [{"index": i, "text": held, "finish_reason": None} for i, r in redactors.items() if (held := r.flush())]
    first = "".join(c["text"] for c in choices if c["index"] == 0)
    return first, ({"object": "text_completion", "choices": choices} if choices else None)


def _finish_reason(payload: dict[str, Any]) -> str | None:
    choices = payload.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and choice.get("index", 0) == 0 and isinstance(choice.get("finish_reason"), str):
            return choice["finish_reason"]
    return None


async def _log_failure(
    engine: Engine,
    routed: RoutedCall,
    error: ProviderError,
    key: str | None,
    started: float,
    clock: UpstreamClock,
    extra: dict[str, Any],
) -> Response:
    error.redact(key)
    status, message, headers = failure_status(error, routed.route.api_key)
    route = routed.route
    await log_row(
        engine, REQUEST_TYPE_COMPLETION, routed.caller, routed.user_id, route.provider_id, route.model,
        status, started, message, extra, charges=routed.limits.charges,
    )  # fmt: skip
    headers = {**routed.headers, **headers, OVERHEAD_HEADER: overhead_ms(started, clock)}
    return failure_response(status, message, headers)


async def _whole(
    engine: Engine,
    routed: RoutedCall,
    call: HttpCall,
    key: str | None,
    model_id: str,
    started: float,
    clock: UpstreamClock,
    extra: dict[str, Any],
) -> Response:
    route = routed.route
    adapter = adapter_for(route.protocol)
    upstream_started = time.perf_counter()
    try:
        check_headers(call.headers)
        async with AIOHTTP.post(call, as_timeout(None), stream=False) as answer:
            content = await answer.read()
            if not answer.ok:
                raise adapter.error_from_response(answer.status, answer.headers, content, answer.reason)
            text = answer.text(content)
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise UpstreamError("The provider answered with JSON that is not a completions response")
    except ProviderError as exc:
        clock.add_since(upstream_started)
        return await _log_failure(engine, routed, exc, key, started, clock, extra)
    clock.add_since(upstream_started)
    keys = redaction.answer_keys(route.api_key)
    answer_text = _redacted_choices(payload, keys)
    usage = _usage(payload)
    prompt, completion, total = usage or (None, None, None)
    await log_row(
        engine, REQUEST_TYPE_COMPLETION, routed.caller, routed.user_id, route.provider_id, route.model,
        200, started, None, extra,
        text=answer_text, finish_reason=_finish_reason(payload), prompt_tokens=prompt, completion_tokens=completion,
        total_tokens=total, usage_reported=usage is not None, **routed.accounted(prompt, completion),
    )  # fmt: skip
    payload["model"] = model_id
    return JSONResponse(payload, headers={**routed.headers, OVERHEAD_HEADER: overhead_ms(started, clock)})


async def _upstream_lines(adapter: ProviderAdapter, call: HttpCall) -> AsyncGenerator[AiohttpAnswer | str, None]:
    """The provider's answer (its head arrived, a 2xx), then its body's lines: read inside the transport's
    block, so that its failures come out as ProviderErrors, as in the adapters' own call loop."""
    check_headers(call.headers)
    async with AIOHTTP.post(call, as_timeout(None), stream=True) as answer:
        if not answer.ok:
            raise adapter.error_from_response(answer.status, answer.headers, await answer.read(), answer.reason)
        yield answer
        async for line in answer.lines():
            yield line


async def _stream(
    engine: Engine,
    routed: RoutedCall,
    call: HttpCall,
    key: str | None,
    model_id: str,
    include_usage: bool,
    started: float,
    clock: UpstreamClock,
    extra: dict[str, Any],
) -> Response:
    route = routed.route
    adapter = adapter_for(route.protocol)
    lines = _upstream_lines(adapter, call)
    upstream_started = time.perf_counter()
    try:
        answer = await anext(lines)
    except ProviderError as exc:
        await lines.aclose()
        clock.add_since(upstream_started)
        return await _log_failure(engine, routed, exc, key, started, clock, extra)
    except BaseException:
        await lines.aclose()
        raise
    assert isinstance(answer, AiohttpAnswer)
    clock.add_since(upstream_started)
    keys = redaction.answer_keys(route.api_key)
    redactors: dict[int, redaction.StreamRedactor] = {}
    state: dict[str, Any] = {"text": [], "usage": None, "finish": None, "first_ms": None, "logged": False}

    def relay(data: str) -> bytes | None:
        """One upstream event as the client gets it (None: not passed on)."""
        try:
            payload = json.loads(data)
        except ValueError:
            raise UpstreamError("The provider sent a stream chunk that is not valid JSON") from None
        if not isinstance(payload, dict):
            raise UpstreamError("The provider sent a stream chunk that is not an object")
        if "error" in payload and "choices" not in payload:
            raise adapter.error_from_event(payload, 502)
        if (text := _stream_redacted_choices(payload, redactors, keys)) and state["first_ms"] is None:
            state["first_ms"] = ms_since(started)
        state["text"].append(text)
        state["finish"] = _finish_reason(payload) or state["finish"]
        usage = _usage(payload)
        if usage is not None:
            state["usage"] = usage
        if not include_usage:
            payload.pop("usage", None)
            if usage is not None and not payload.get("choices"):
                return None  # the usage chunk MindRoute asked for, not the client
        payload["model"] = model_id
        return sse_data(payload)

    async def finish(status: int, message: str | None) -> None:
        """Close the upstream response and queue the Logs row, once (shielded: also in a cancelled task)."""
        if state["logged"]:
            return
        state["logged"] = True
        with anyio.CancelScope(shield=True):
            await lines.aclose()  # closes the upstream response: the provider stops generating
            prompt, completion, total = state["usage"] or (None, None, None)
            await log_row(
                engine, REQUEST_TYPE_COMPLETION, routed.caller, routed.user_id, route.provider_id, route.model,
                status, started, message, extra,
                text="".join(state["text"]), finish_reason=state["finish"], prompt_tokens=prompt,
                completion_tokens=completion, total_tokens=total, usage_reported=state["usage"] is not None,
                time_to_first_token_ms=state["first_ms"], stopped_by_user=status == STOPPED_BY_USER_STATUS,
                **routed.accounted(prompt, completion),
            )  # fmt: skip

    async def events() -> AsyncIterator[bytes]:
        status, message = STOPPED_BY_USER_STATUS, "The client closed the connection"
        done = False
        try:
            decoder = SSEDecoder(answer.line_limit, answer.host)
            try:
                waited = time.perf_counter()
                async for line in lines:
                    assert isinstance(line, str)
                    clock.add_since(waited)
                    event = decoder.feed(line)
                    if event is not None and event.data.strip() == "[DONE]":
                        done = True
                    elif event is not None and (out := relay(event.data)) is not None:
                        yield out
                    waited = time.perf_counter()
                event = decoder.flush()
                if event is not None and event.data.strip() == "[DONE]":
                    done = True
                elif event is not None and (out := relay(event.data)) is not None:
                    yield out
                if not done and state["finish"] is None:
                    raise UpstreamError(f"The connection to {answer.host} ended before the answer was complete")
                held_text, held = _held_chunk(redactors)
                if held is not None:
                    state["text"].append(held_text)
                    yield sse_data({**held, "model": model_id})
            except ProviderError as exc:
                exc.redact(key)
                status, message, _ = failure_status(exc, route.api_key)
                yield sse_data(error_body(status, message))  # OpenAI's in-stream error event
                yield SSE_DONE
                return
            status, message = 200, None
            yield SSE_DONE
        finally:
            await finish(status, message)

    body = _Relay(events(), finish)
    headers = {
        **routed.headers,
        OVERHEAD_HEADER: overhead_ms(started, clock),
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
    }
    return EventStreamResponse(body, headers)


class _Relay:
    """The relayed events, whose `aclose()` also settles a stream the client left before its first
    event (an async generator never started runs no `finally`): the upstream response closed, the
    Logs row written."""

    def __init__(self, events: AsyncIterator[bytes], finish: Callable[[int, str | None], Awaitable[None]]) -> None:
        self._events = events
        self._finish = finish

    def __aiter__(self) -> _Relay:
        return self

    async def __anext__(self) -> bytes:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()  # type: ignore[attr-defined]
        await self._finish(STOPPED_BY_USER_STATUS, "The client closed the connection")


# The route as a plain ASGI app (see AnswerApp).
completions_app = AnswerApp(_completions)
