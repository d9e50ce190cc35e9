"""One chat call for a user: the access policy, the token and media limits, the upstream call,
and its one Logs row. The playground calls this; the API will call the same rules."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mindroute import redaction
from mindroute.db import transaction
from mindroute.models import Provider, User
from mindroute.providers.adapter import ChatStream
from mindroute.providers.cancel import CancelScope
from mindroute.providers.errors import (
    AuthenticationError,
    BadRequestError,
    Cancelled,
    NotFoundError,
    ProviderError,
    ProviderPermissionError,
    ProviderTimeout,
    RateLimitedError,
    UpstreamError,
)
from mindroute.providers.media import check_media
from mindroute.providers.registry import adapter_for
from mindroute.providers.shapes import ChatRequest, ChatResult, StreamEnd
from mindroute.security import DecryptionError
from mindroute.services.call_log import STOPPED_BY_USER_STATUS, CallRecord, write_call_log
from mindroute.services.permissions import check_access
from mindroute.services.providers import provider_api_key, provider_endpoint, read_settings

TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are USD per million tokens
STREAM_WORKER_JOIN_S = 2.0  # finish() waits this long at most for a stopped stream's reading thread
_STREAM_OVER = object()  # what the reading thread of pieces() sends last

log = logging.getLogger("mindroute.chat")


@dataclass(frozen=True)
class Caller:
    """Where a call comes from, for its log row."""

    source: str = "playground"  # or "api"
    ip: str | None = None
    user_agent: str | None = None
    api_key_id: uuid.UUID | None = None


class ChatRefused(Exception):  # noqa: N818 - reads better at the raise site
    """Refused before any upstream call; `status_code` is what the API answers."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class PreparedCall:
    user_id: uuid.UUID
    provider_id: uuid.UUID
    provider_name: str
    protocol: str
    endpoint: str
    request: ChatRequest
    prices: dict[str, dict[str, float]]
    effective_max_tokens: int | None
    limit_source: str | None
    api_key: str | None = field(default=None, repr=False)


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

    @property
    def ok(self) -> bool:
        return self.status_code == 200


def estimate_cost(
    prices: dict[str, dict[str, float]], model: str, prompt_tokens: int | None, completion_tokens: int | None
) -> float | None:
    """USD from the provider's per-model prices; None when the model has no price or tokens are unknown."""
    price = prices.get(model)
    if not price or (prompt_tokens is None and completion_tokens is None):
        return None
    return (
        (prompt_tokens or 0) * price.get("input", 0.0) + (completion_tokens or 0) * price.get("output", 0.0)
    ) / TOKENS_PER_PRICE_UNIT


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


@dataclass(frozen=True)
class Route:
    """Where a user's call to one provider and model goes, once the access policy allowed it: what
    prepare_call knows before it looks at the request's own limits (max tokens, media)."""

    user_id: uuid.UUID
    provider_id: uuid.UUID
    provider_name: str
    protocol: str
    endpoint: str
    model: str
    prices: dict[str, dict[str, float]]
    effective_max_tokens: int | None
    limit_source: str | None
    allow_images: bool
    allow_videos: bool
    allow_files: bool
    api_key: str | None = field(default=None, repr=False)


def route_call(session: Session, user: User, provider_id: uuid.UUID, model: str) -> Route:
    """The access policy for (user, provider, model) and the provider's connection; raises ChatRefused."""
    decision = check_access(session, user, provider_id, model)
    if not decision.allowed:
        raise ChatRefused(403, decision.reason)
    provider = session.get(Provider, provider_id)
    assert provider is not None  # check_access refused a missing one
    try:
        api_key = provider_api_key(provider)
    except DecryptionError:
        raise ChatRefused(502, f"{provider.name}'s stored key cannot be used; ask an administrator") from None
    redaction.refresh_stored_keys(session)  # every provider's key, to take out of answers (issue 13, item 9)
    return Route(
        user_id=user.id,
        provider_id=provider.id,
        provider_name=provider.name,
        protocol=provider.protocol,
        endpoint=provider_endpoint(provider),
        model=model,
        prices=read_settings(provider.settings)["prices"],
        effective_max_tokens=decision.effective_max_tokens,
        limit_source=decision.limit_source,
        allow_images=provider.allow_images,
        allow_videos=provider.allow_videos,
        allow_files=provider.allow_files,
        api_key=api_key,
    )


def apply_route(route: Route, request: ChatRequest) -> PreparedCall:
    """The request's own rules on an allowed route (token limit, media); raises ChatRefused(400)."""
    limit = route.effective_max_tokens
    if limit is not None:
        if request.max_tokens is not None and request.max_tokens > limit:
            raise ChatRefused(
                400, f"max tokens {request.max_tokens:,} is over the limit of {limit:,} ({route.limit_source})"
            )
        if request.max_tokens is None:
            request = replace(request, max_tokens=limit)
    try:
        check_media(request, route.allow_images, route.allow_videos, route.allow_files)
    except ProviderError as exc:
        raise ChatRefused(400, exc.message) from None
    return PreparedCall(
        user_id=route.user_id,
        provider_id=route.provider_id,
        provider_name=route.provider_name,
        protocol=route.protocol,
        endpoint=route.endpoint,
        request=request,
        prices=route.prices,
        effective_max_tokens=limit,
        limit_source=route.limit_source,
        api_key=route.api_key,
    )


def prepare_call(session: Session, user: User, provider_id: uuid.UUID, request: ChatRequest) -> PreparedCall:
    """Apply every rule before the upstream call; raises ChatRefused with the status to answer."""
    return apply_route(route_call(session, user, provider_id, request.model), request)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _log_refusal(
    engine: Engine,
    user: User,
    provider_id: uuid.UUID,
    request: ChatRequest,
    refused: ChatRefused,
    caller: Caller,
    started: float,
) -> ChatOutcome:
    duration = _ms_since(started)
    log_id = write_call_log(
        engine,
        CallRecord(
            user_id=user.id,
            provider_id=provider_id,
            model=request.model,
            request=request,
            status_code=refused.status_code,
            duration_ms=duration,
            error_message=refused.message,
            source=caller.source,
            api_key_id=caller.api_key_id,
            ip=caller.ip,
            user_agent=caller.user_agent,
        ),
    )
    return ChatOutcome(
        "", refused.status_code, refused.message, None, None, None, False, duration, None, None, log_id=log_id
    )


def _prepare_or_refuse(
    engine: Engine, user: User, provider_id: uuid.UUID, request: ChatRequest, caller: Caller, started: float
) -> PreparedCall | ChatOutcome:
    with transaction(engine) as session:
        try:
            return prepare_call(session, user, provider_id, request)
        except ChatRefused as refused:
            refusal = refused
    return _log_refusal(engine, user, provider_id, request, refusal, caller, started)


def _record(prepared: PreparedCall, caller: Caller, **values: Any) -> CallRecord:
    return CallRecord(
        user_id=prepared.user_id,
        provider_id=prepared.provider_id,
        model=prepared.request.model,
        request=prepared.request,
        source=caller.source,
        api_key_id=caller.api_key_id,
        ip=caller.ip,
        user_agent=caller.user_agent,
        **values,
    )


def complete_chat(
    engine: Engine, user: User, provider_id: uuid.UUID, request: ChatRequest, caller: Caller
) -> ChatOutcome:
    """A whole answer at once; always exactly one Logs row."""
    started = time.perf_counter()
    prepared = _prepare_or_refuse(engine, user, provider_id, request, caller, started)
    if isinstance(prepared, ChatOutcome):
        return prepared
    try:
        result, error = (
            adapter_for(prepared.protocol).complete(prepared.request, prepared.endpoint, prepared.api_key),
            None,
        )
    except ProviderError as exc:
        result, error = None, exc
    record, outcome = finished_call(prepared, caller, end=result, error=error, duration_ms=_ms_since(started))
    return replace(outcome, log_id=write_call_log(engine, record))


def finished_call(
    prepared: PreparedCall,
    caller: Caller,
    *,
    end: StreamEnd | ChatResult | None,
    error: ProviderError | None,
    duration_ms: int,
    stopped: bool = False,
    stop_message: str = "",
    first_token_ms: int | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[CallRecord, ChatOutcome]:
    """The log record and the outcome of a call that went upstream and ended: a whole answer, a
    stream that completed, failed or was stopped by its reader, or an upstream error. Shared by the
    playground's sync path and the API's async one; the caller writes the record and fills in the
    outcome's log_id."""
    if stopped:
        status, message = STOPPED_BY_USER_STATUS, stop_message
    elif error is not None:
        status, message = status_for_error(error), error.message
    else:
        status, message = 200, None
    keys = redaction.answer_keys(prepared.api_key)  # no provider key in the answer or the error (issue 13, item 9)
    message = keys.redact(message) if message else message
    text = keys.redact(end.text) if end else ""
    prompt = end.prompt_tokens if end else None
    completion = end.completion_tokens if end else None
    total = end.total_tokens if end else None
    reported = bool(end and end.usage_reported)
    record = _record(
        prepared,
        caller,
        status_code=status,
        duration_ms=duration_ms,
        text=text if end else None,  # no answer at all: no response body in the log
        finish_reason=end.finish_reason if end else None,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        usage_reported=reported,
        time_to_first_token_ms=first_token_ms,
        stopped_by_user=stopped,
        error_message=message,
        extra=dict(extra or {}),
    )
    outcome = ChatOutcome(
        text=text,
        status_code=status,
        error=message,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        usage_reported=reported,
        duration_ms=duration_ms,
        time_to_first_token_ms=first_token_ms,
        cost_usd=estimate_cost(prepared.prices, prepared.request.model, prompt, completion),
        stopped_by_user=stopped,
        retry_after=error.retry_after if isinstance(error, RateLimitedError) else None,
    )
    return record, outcome


class StreamingChat:
    """A streamed answer: iterate `chunks()` (or `pieces()`, which reads in a worker thread), then
    call `finish()` (in a `finally`), which logs exactly once: completed, failed, or stopped by the
    user partway (status 499, the text so far, possibly none).

    `stop()` ends the call at once from any thread, also while it waits for the provider's first
    byte: the upstream request's socket is shut down (mindroute/providers/cancel.py), so the
    provider sees the client go away, and `finish()` logs right then."""

    def __init__(
        self, engine: Engine, user: User, provider_id: uuid.UUID, request: ChatRequest, caller: Caller
    ) -> None:
        self._engine = engine
        self._caller = caller
        self._started = time.perf_counter()
        self._first_token_ms: int | None = None
        self._end: StreamEnd | None = None
        self._error: ProviderError | None = None
        self._stream: ChatStream | None = None
        self._scope = CancelScope()
        self._worker: threading.Thread | None = None
        self._finish_lock = threading.Lock()
        self.outcome: ChatOutcome | None = None
        prepared = _prepare_or_refuse(engine, user, provider_id, request, caller, self._started)
        if isinstance(prepared, ChatOutcome):
            self.outcome = prepared  # refused and logged already
            self._prepared = None
            return
        self._prepared = prepared
        try:
            self._stream = adapter_for(prepared.protocol).stream(prepared.request, prepared.endpoint, prepared.api_key)
        except ProviderError as exc:  # refused by the adapter before anything was sent
            self._error = exc

    @property
    def prepared(self) -> PreparedCall | None:
        return self._prepared

    def stop(self) -> None:
        """End the call now (any thread, idempotent): its upstream I/O fails at once and it reads no more."""
        self._scope.cancel()

    def chunks(self) -> Iterator[str]:
        if self._stream is None:
            return
        assert self._prepared is not None
        redactor = redaction.answer_keys(self._prepared.api_key).stream()  # a key split across pieces too
        stream, scope = self._stream, self._scope
        try:
            while not scope.cancelled:
                with scope.bound():  # the upstream I/O of this next(), in this thread, can be stopped
                    item = next(stream, None)
                if item is None:
                    break
                if isinstance(item, StreamEnd):
                    self._end = item
                elif item.text:
                    if self._first_token_ms is None:
                        self._first_token_ms = _ms_since(self._started)
                    if text := redactor.feed(item.text):
                        yield text
        except ProviderError as exc:
            if not scope.cancelled:  # a stop makes the read fail: that is no error of the provider's
                self._error = exc
        if rest := redactor.flush():
            yield rest

    def pieces(self, wait_s: float) -> Iterator[str | None]:
        """`chunks()` read by a worker thread, with None after every `wait_s` without text: the
        caller's thread never blocks on the provider, so it can notice it should stop (Streamlit
        interrupts a script only at its next st call) and call `finish()`."""
        if self._stream is None:
            return
        arrived: queue.SimpleQueue[object] = queue.SimpleQueue()

        def read() -> None:
            try:
                for text in self.chunks():
                    arrived.put(text)
            except Exception as exc:  # a bug here must still end the call and write its row
                log.exception("reading a streamed answer failed")
                if not self._scope.cancelled:
                    self._error = UpstreamError(f"Reading the answer failed ({exc.__class__.__name__})")
            finally:
                arrived.put(_STREAM_OVER)

        self._worker = threading.Thread(target=read, name="mindroute-chat-stream", daemon=True)
        self._worker.start()
        while True:
            try:
                item = arrived.get(timeout=wait_s)
            except queue.Empty:
                yield None
                continue
            if item is _STREAM_OVER:
                return
            assert isinstance(item, str)
            yield item

    def finish(self) -> ChatOutcome:
        """Log the call (once; any thread; later calls return the same outcome). A call still
        running is stopped first: its text so far is logged with status 499."""
        with self._finish_lock:
            if self.outcome is not None:
                return self.outcome
            prepared = self._prepared
            assert prepared is not None
            if self._end is None and self._error is None:
                self.stop()  # the reader went away before the stream ended
            worker = self._worker
            if worker is not None and worker is not threading.current_thread():
                worker.join(STREAM_WORKER_JOIN_S)  # a stopped read ends in milliseconds
            still_reading = worker is not None and worker.is_alive()  # e.g. stuck connecting: not waited for
            # No end and no error: the reader went away before the stream ended.
            stopped = self._end is None and self._error is None and self._stream is not None
            end = self._stream.so_far() if self._stream is not None and self._end is None else self._end
            if self._stream is not None and not still_reading:
                self._stream.close()  # releases the upstream connection: the provider sees the disconnect
            record, outcome = finished_call(
                prepared,
                self._caller,
                end=end,
                error=self._error,
                stopped=stopped,
                stop_message="Stopped by the user",
                first_token_ms=self._first_token_ms,
                duration_ms=_ms_since(self._started),
            )
            self.outcome = replace(outcome, log_id=write_call_log(self._engine, record))
            return self.outcome


class WholeChat:
    """A whole (not streamed) answer that can be stopped: the upstream call runs in a worker thread
    from the start; iterate `pieces()` (None every `wait_s` until the answer is in), then call
    `finish()` (in a `finally`), which logs exactly once, like StreamingChat's: answered, failed,
    or stopped by the user before the answer came (status 499, no text). `stop()` works from any
    thread and closes the upstream request at once."""

    def __init__(
        self, engine: Engine, user: User, provider_id: uuid.UUID, request: ChatRequest, caller: Caller
    ) -> None:
        self._engine = engine
        self._caller = caller
        self._started = time.perf_counter()
        self._result: ChatResult | None = None
        self._error: ProviderError | None = None
        self._scope = CancelScope()
        self._worker: threading.Thread | None = None
        self._finish_lock = threading.Lock()
        self.outcome: ChatOutcome | None = None
        prepared = _prepare_or_refuse(engine, user, provider_id, request, caller, self._started)
        if isinstance(prepared, ChatOutcome):
            self.outcome = prepared  # refused and logged already
            self._prepared = None
            return
        self._prepared = prepared
        self._worker = threading.Thread(target=self._call, name="mindroute-chat-whole", daemon=True)
        self._worker.start()

    @property
    def prepared(self) -> PreparedCall | None:
        return self._prepared

    def _call(self) -> None:
        prepared = self._prepared
        assert prepared is not None
        try:
            with self._scope.bound():
                result = adapter_for(prepared.protocol).complete(prepared.request, prepared.endpoint, prepared.api_key)
        except ProviderError as exc:
            if not self._scope.cancelled:  # a stop makes the call fail: that is no error of the provider's
                self._error = exc
        except Exception as exc:  # a bug here must still end the call and write its row
            log.exception("a whole answer failed")
            if not self._scope.cancelled:
                self._error = UpstreamError(f"Reading the answer failed ({exc.__class__.__name__})")
        else:
            self._result = result  # arrived, even if a stop came a moment later: a full answer is logged

    def stop(self) -> None:
        """End the call now (any thread, idempotent): the upstream request is closed."""
        self._scope.cancel()

    def pieces(self, wait_s: float) -> Iterator[None]:
        """None after every `wait_s` while the answer is not in: the caller's thread never blocks on
        the provider (see StreamingChat.pieces)."""
        worker = self._worker
        while worker is not None and worker.is_alive():
            worker.join(wait_s)
            if worker.is_alive():
                yield None

    def finish(self) -> ChatOutcome:
        """Log the call (once; any thread). A call still waiting for its answer is stopped first."""
        with self._finish_lock:
            if self.outcome is not None:
                return self.outcome
            prepared = self._prepared
            assert prepared is not None
            worker = self._worker
            if worker is not None and worker.is_alive():
                self.stop()
                worker.join(STREAM_WORKER_JOIN_S)  # a stopped call ends in milliseconds
            result, error = self._result, self._error
            record, outcome = finished_call(
                prepared,
                self._caller,
                end=result,
                error=error,
                stopped=result is None and error is None,
                stop_message="Stopped by the user",
                duration_ms=_ms_since(self._started),
            )
            self.outcome = replace(outcome, log_id=write_call_log(self._engine, record))
            return self.outcome
