"""The I/O-free core of one chat call: its events in, its outcome and its one Logs record out, once.

The playground's sync drivers (services/chat.py) and the API's async ones (services/chat_async.py)
do only the I/O (the upstream call, the threads, writing the row); everything else about a call is
here: when the first token came, the key redaction of the text, what a stop or an error means, the
status answered, the cost, and the record of a call refused before any upstream call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from mindroute import redaction
from mindroute.provider_settings import estimate_cost
from mindroute.providers.errors import (
    AuthenticationError,
    BadRequestError,
    Cancelled,
    NotFoundError,
    ProviderError,
    ProviderPermissionError,
    ProviderTimeout,
    RateLimitedError,
    UnsupportedParameter,
)
from mindroute.providers.shapes import (
    ChatRequest,
    ChatResult,
    Choice,
    StreamChunk,
    StreamEnd,
    ToolCall,
    ToolCallDelta,
)
from mindroute.services.call_log import STOPPED_BY_USER_STATUS, CallRecord
from mindroute.services.limit_charges import Charges

if TYPE_CHECKING:
    from mindroute.providers.adapter import AsyncChatStream, ChatStream
    from mindroute.services.routing import PreparedCall

S = TypeVar("S")  # a stream, sync or async


@dataclass(frozen=True)
class Caller:
    """Where a call comes from, for its log row."""

    source: str = "playground"  # or "api"
    ip: str | None = None
    user_agent: str | None = None
    api_key_id: uuid.UUID | None = None


@dataclass(frozen=True)
class ChatOutcome:
    """What happened, as the user is shown it and as it was logged."""

    text: str
    status_code: int
    error: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    usage_reported: bool
    duration_ms: int
    time_to_first_token_ms: int | None
    cost_usd: float | None
    stopped_by_user: bool = False
    retry_after: float | None = None
    log_id: uuid.UUID | None = None
    param: str | None = None  # the request field a 400 is about, in OpenAI's terms (UnsupportedParameter)
    tool_calls: tuple[ToolCall, ...] = ()  # the first choice's, key-redacted like the text
    other_choices: tuple[Choice, ...] = ()  # choices 1..n-1 (n > 1), key-redacted

    @property
    def ok(self) -> bool:
        return self.status_code == 200


@dataclass(frozen=True)
class ApiOutcome:
    """A ChatOutcome with what the OpenAI shapes need besides it: the answer's end (a whole answer's
    ChatResult or a stream's StreamEnd, with its tool calls and other choices), None when there was none."""

    outcome: ChatOutcome
    finish_reason: str | None
    model: str
    end: ChatResult | StreamEnd | None = None


def ms_since(started: float) -> int:
    """Milliseconds since `started` (a time.perf_counter() reading): the one clock of a call's duration."""
    return int((time.perf_counter() - started) * 1000)


def status_for_error(exc: ProviderError) -> int:
    """The status MindRoute answers with when the upstream call failed."""
    if isinstance(exc, RateLimitedError):
        return 429
    if isinstance(exc, ProviderTimeout):
        return 504
    if isinstance(exc, Cancelled):
        return STOPPED_BY_USER_STATUS
    if isinstance(exc, BadRequestError | NotFoundError):
        return exc.status_code or 400
    if isinstance(exc, AuthenticationError | ProviderPermissionError):
        return 502  # the provider refused MindRoute's key: not the caller's fault
    return 502


def call_record(
    caller: Caller,
    user_id: uuid.UUID | None,
    provider_id: uuid.UUID | None,
    model: str | None,
    request: ChatRequest | None,
    status_code: int,
    duration_ms: int,
    error_message: str | None,
    extra: dict[str, Any] | None,
    **answer: Any,
) -> CallRecord:
    """The Logs row of a call: refused before any upstream call (bad key, body, model, policy,
    limits: no `answer`), or ended upstream (CallTracker.finished, with the answer's fields)."""
    return CallRecord(
        user_id=user_id,
        provider_id=provider_id,
        model=model,
        request=request,
        status_code=status_code,
        duration_ms=duration_ms,
        error_message=None if error_message is None else str(error_message),  # stored as plain English text
        source=caller.source,
        api_key_id=caller.api_key_id,
        ip=caller.ip,
        user_agent=caller.user_agent,
        extra=dict(extra or {}),
        **answer,
    )


class CallTracker:
    """One call that went upstream, as events: `chunk()` for each item of a stream (text or its
    end), `answered()` for a whole answer, `failed()` for a provider error, `ending()` when a stream
    is closed (before its end, that is a stop by the reader), then `finished()` for the record and
    the outcome. No I/O, no locks: the drivers own the threads and the writing of the row.

    `charges` (from the limits check that admitted the call) go on the record with the call's cost, so
    that writing its row counts its tokens and spend against its budgets and minute counters."""

    __slots__ = (
        "_redactors",
        "caller",
        "charges",
        "end",
        "error",
        "extra",
        "first_token_ms",
        "prepared",
        "started",
        "stopped",
    )

    def __init__(
        self,
        prepared: PreparedCall,
        caller: Caller,
        started: float,
        extra: dict[str, Any] | None = None,
        charges: Charges | None = None,
    ) -> None:
        self.prepared = prepared
        self.caller = caller
        self.started = started
        self.extra = extra
        self.charges = charges
        self.first_token_ms: int | None = None
        self.end: StreamEnd | ChatResult | None = None
        self.error: ProviderError | None = None
        self.stopped = False
        # One per text that streams: ("text", choice) and ("tool", choice, position); made at the first piece.
        self._redactors: dict[tuple[Any, ...], redaction.StreamRedactor] | None = None

    def open_stream(self, start: Callable[[ChatRequest, str, str | None], S]) -> S | None:
        """The stream `start` (an adapter's stream or astream) opens for this call; None when the
        adapter refused the call before anything was sent (kept as the call's error)."""
        prepared = self.prepared
        try:
            return start(prepared.request, prepared.route.endpoint, prepared.route.api_key)
        except ProviderError as exc:
            self.error = exc
            return None

    def chunk(self, item: StreamChunk | ToolCallDelta | StreamEnd) -> list[StreamChunk | ToolCallDelta]:
        """One item of a stream; returns what to pass on now, with the provider's key redacted (a piece
        of text or of a tool call's arguments may come back shorter, or not at all: a key split across
        pieces is held back until it can be told apart)."""
        if isinstance(item, StreamEnd):
            self.end = item
            return []
        tool = isinstance(item, ToolCallDelta)
        text = item.arguments if tool else item.text  # type: ignore[union-attr]
        if not text and (not tool and item.logprobs is None):  # type: ignore[union-attr]
            return []
        redactors = self._redactors
        if redactors is None:  # the first piece of the answer
            self.first_token_ms = ms_since(self.started)
            redactors = self._redactors = {}
        key = ("tool", item.choice, item.position) if tool else ("text", item.choice)  # type: ignore[union-attr]
        redactor = redactors.get(key)
        if redactor is None:
            redactor = redactors[key] = redaction.answer_keys(self.prepared.route.api_key).stream()
        passed = redactor.feed(text) if text else ""
        if passed == text:
            return [item]
        if tool:
            return [replace(item, arguments=passed)]  # type: ignore[type-var]
        return [replace(item, text=passed)] if passed or item.logprobs is not None else []  # type: ignore[union-attr]

    def rest(self) -> list[StreamChunk | ToolCallDelta]:
        """What was held back at the end of a stream, as pieces of the texts it belongs to."""
        held: list[StreamChunk | ToolCallDelta] = []
        for key, redactor in (self._redactors or {}).items():
            text = redactor.flush()
            if text:
                held.append(
                    StreamChunk(text, key[1]) if key[0] == "text" else ToolCallDelta(key[2], None, None, text, key[1])
                )
        return held

    def answered(self, result: ChatResult) -> None:
        self.end = result

    def failed(self, error: ProviderError) -> None:
        self.error = error

    def ending(self, stream: ChatStream | AsyncChatStream | None) -> None:
        """Call before closing the stream: one that has not ended keeps its text so far, and was
        stopped by its reader unless the provider failed."""
        if stream is not None and self.end is None:
            self.stopped = self.error is None
            self.end = stream.so_far()

    def finished(self, stop_message: str = "Stopped by the user") -> tuple[CallRecord, ChatOutcome]:
        """The log record and the outcome (without its log_id, which the writer fills in): a whole
        answer, a stream that completed, failed or was stopped, an upstream error, or a whole answer
        that never came (stopped)."""
        end, error, prepared, caller = self.end, self.error, self.prepared, self.caller
        stopped = self.stopped or (end is None and error is None)
        if stopped:
            status, message = STOPPED_BY_USER_STATUS, stop_message
        elif error is not None:
            status, message = status_for_error(error), error.message
        else:
            status, message = 200, None
        route, request, first = prepared.route, prepared.request, self.first_token_ms
        keys = redaction.answer_keys(route.api_key)  # no provider key in the answer or the error (issue 13, item 9)
        if message:
            scrubbed = keys.redact(message)
            message = (
                message if scrubbed == message else scrubbed
            )  # a Message of ours stays one (translated when shown)
        text = keys.redact(end.text) if end else ""
        tool_calls = _redacted_calls(end.tool_calls, keys) if end else ()
        others = (
            tuple(
                replace(c, text=keys.redact(c.text), tool_calls=_redacted_calls(c.tool_calls, keys))
                for c in end.other_choices
            )
            if end and end.other_choices
            else ()
        )
        prompt = end.prompt_tokens if end else None
        completion = end.completion_tokens if end else None
        total = end.total_tokens if end else None
        reported = bool(end and end.usage_reported)
        duration_ms = ms_since(self.started)
        cost = estimate_cost(
            route.prices, request.model, prompt, completion, protocol=route.protocol, endpoint_url=route.endpoint
        )
        record = call_record(
            caller,
            route.user_id,
            route.provider_id,
            request.model,
            request,
            status,
            duration_ms,
            message,
            self.extra,
            text=text if end else None,  # no answer at all: no response body in the log
            finish_reason=end.finish_reason if end else None,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            usage_reported=reported,
            time_to_first_token_ms=first,
            stopped_by_user=stopped,
            tool_calls=tool_calls,
            other_choices=others,
            charges=self.charges,
            cost_usd=cost,
        )
        retry_after = error.retry_after if isinstance(error, RateLimitedError) else None
        param = error.param if isinstance(error, UnsupportedParameter) else None
        # ChatOutcome's fields in their order: the text, status and error, the tokens, the times, the cost, ...
        outcome = ChatOutcome(
            text, status, message, prompt, completion, total, reported, duration_ms, first, cost, stopped, retry_after
        )
        if param is not None or tool_calls or others:
            outcome = replace(outcome, param=param, tool_calls=tool_calls, other_choices=others)
        return record, outcome


def _redacted_calls(calls: tuple[ToolCall, ...], keys: redaction.KeySet) -> tuple[ToolCall, ...]:
    """Tool calls with the provider's key redacted from their arguments (a model may write anything)."""
    if not calls:
        return calls
    return tuple(replace(call, arguments=keys.redact(call.arguments)) for call in calls)
