"""The async twin of the chat service for the API: the same rules (prepare_call), the same one Logs
row per call (chat._record, write_call_log), with database work in a worker thread so the event
loop never waits on it, and the upstream time measured apart from MindRoute's own."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import queue
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from mindroute import redaction
from mindroute.models import Provider, User, UserProvider
from mindroute.providers.adapter import AsyncChatStream
from mindroute.providers.errors import ProviderError
from mindroute.providers.registry import adapter_for
from mindroute.providers.shapes import ChatRequest, StreamEnd
from mindroute.services.call_log import CallRecord, DatabaseOutage, write_call_log, write_call_logs
from mindroute.services.chat import (
    Caller,
    ChatOutcome,
    ChatRefused,
    PreparedCall,
    finished_call,
)
from mindroute.services.permissions import provider_models, usable_providers
from mindroute.services.providers import read_settings

log = logging.getLogger("mindroute.chat_async")

T = TypeVar("T")
# Database work of the API runs in worker threads, at most this many at once: more threads would
# only queue on the connection pool and take turns at the GIL with the event loop.
DB_THREADS = 8
_db_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = weakref.WeakKeyDictionary()


async def in_db_thread(function: Callable[..., T], *args: Any) -> T:
    """Run blocking database work in a worker thread, DB_THREADS at a time per event loop."""
    loop = asyncio.get_running_loop()
    limiter = _db_limiters.get(loop)
    if limiter is None:
        limiter = _db_limiters[loop] = anyio.CapacityLimiter(DB_THREADS)
    return await anyio.to_thread.run_sync(function, *args, limiter=limiter)


LOG_BATCH_MAX_ROWS = 500
LOG_BATCH_WAIT_S = 0.05
LOG_QUEUE_MAX_ENV = "MINDROUTE_LOG_QUEUE_MAX"
DEFAULT_LOG_QUEUE_MAX = 100_000
LOG_RETRY_MIN_S = 0.1  # the first retry after the database went away; doubled each time, up to:
LOG_RETRY_MAX_S = 5.0
LOG_STOP_RETRY_S = 30.0  # at shutdown, how long to keep retrying a database that is away
LOG_WARN_EVERY_S = 10.0


def log_queue_max() -> int:
    """The most Logs rows the API keeps waiting for the database (MINDROUTE_LOG_QUEUE_MAX, default 100,000)."""
    raw = os.environ.get(LOG_QUEUE_MAX_ENV, "").strip()
    try:
        return max(1, int(raw)) if raw else DEFAULT_LOG_QUEUE_MAX
    except ValueError:
        return DEFAULT_LOG_QUEUE_MAX


class LogWriter:
    """Write-behind for Logs rows: calls hand their record over and answer at once; one thread
    writes what is queued through write_call_logs, in order, up to LOG_BATCH_MAX_ROWS rows per
    transaction, gathering for at most LOG_BATCH_WAIT_S after the first.

    A database that is away (refused connections, a restart, SQLite locked past its busy timeout:
    call_log.is_database_outage) costs no row: the batch is kept and tried again, whole, after
    LOG_RETRY_MIN_S, doubling up to LOG_RETRY_MAX_S, until it goes in. A row the database refuses
    for itself is dropped alone, as before (the batch is tried row by row). While rows wait, at most
    `max_queued` (MINDROUTE_LOG_QUEUE_MAX) are kept; beyond that the NEWEST are dropped, counted in
    `dropped`, with a warning every LOG_WARN_EVERY_S, so that what is kept is the unbroken log from
    the start of the outage. `stop()` writes everything still queued (retrying an absent database
    for up to LOG_STOP_RETRY_S), so a graceful shutdown loses nothing; a crash loses the rows not
    yet committed (the calls of the last ~50 ms, and any backlog of an outage)."""

    def __init__(self, engine: Engine, max_queued: int | None = None) -> None:
        self._engine = engine
        self._max_queued = max_queued or log_queue_max()
        self._queue: queue.SimpleQueue[CallRecord | None] = queue.SimpleQueue()
        self._held = 0  # rows the writer took from the queue and has not written yet
        self._stopping = threading.Event()
        self.dropped = 0
        self.retries = 0
        self._dropped_warned_at = -LOG_WARN_EVERY_S
        self._thread = threading.Thread(target=self._run, name="mindroute-log-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Rows queued or held for a retry, not yet written."""
        return self._queue.qsize() + self._held

    def submit(self, record: CallRecord) -> None:
        if self._queue.qsize() + self._held >= self._max_queued:
            self.dropped += 1
            now = time.monotonic()
            if now - self._dropped_warned_at >= LOG_WARN_EVERY_S:
                self._dropped_warned_at = now
                log.warning(
                    "the Logs queue is full (%d rows waiting for the database): dropped %d new rows so far",
                    self._max_queued,
                    self.dropped,
                )
            return
        self._queue.put(record)

    def stop(self) -> None:
        self._queue.put(None)
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        backlog: collections.deque[CallRecord] = collections.deque()  # taken from the queue, in order
        ended = False  # stop()'s None was taken: nothing comes after it
        stop_asked_at: float | None = None
        delay = LOG_RETRY_MIN_S
        warned_at = -LOG_WARN_EVERY_S
        while True:
            if not backlog and not ended:
                first = self._queue.get()
                if first is None:
                    return
                backlog.append(first)
                self._held = 1
                # Let what arrives in the next few ms queue up too, without waking for each row: one
                # transaction for many rows costs far less than one each, and the writer's CPU is
                # taken from the calls being answered.
                time.sleep(LOG_BATCH_WAIT_S)
            while not ended and len(backlog) < LOG_BATCH_MAX_ROWS:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    ended = True
                else:
                    backlog.append(item)
            batch = [backlog.popleft() for _ in range(min(LOG_BATCH_MAX_ROWS, len(backlog)))]
            self._held = len(backlog) + len(batch)
            written = self._write(batch)
            if written < len(batch):
                backlog.extendleft(reversed(batch[written:]))
                self.retries += 1
                now = time.monotonic()
                if stop_asked_at is None and self._stopping.is_set():
                    stop_asked_at = now
                if stop_asked_at is not None and now - stop_asked_at > LOG_STOP_RETRY_S:
                    lost = self.pending
                    log.error("the database stayed unavailable at shutdown: %d Logs rows were not written", lost)
                    self._held = 0
                    return
                if now - warned_at >= LOG_WARN_EVERY_S:
                    warned_at = now
                    log.warning(
                        "the database is unavailable: %d Logs rows wait (retrying every %.1f s at most)",
                        self.pending,
                        LOG_RETRY_MAX_S,
                    )
                if stop_asked_at is None:
                    self._stopping.wait(delay)  # stop() cuts the wait short
                else:
                    time.sleep(min(delay, 1.0))
                delay = min(delay * 2, LOG_RETRY_MAX_S)
            else:
                delay = LOG_RETRY_MIN_S
            self._held = len(backlog)
            if ended and not backlog:
                return

    def _write(self, records: list[CallRecord]) -> int:
        """How many of `records`, from the first, are done (written, or dropped as bad rows)."""
        try:
            write_call_logs(self._engine, records, defer_on_outage=True)  # logs a bad row's failure itself
        except DatabaseOutage as outage:
            return outage.written
        except Exception:  # never let the writer thread die; the rows are tried again
            log.exception("could not write a batch of %d Logs rows; retrying", len(records))
            return 0
        return len(records)


_log_writer: LogWriter | None = None


def start_log_writer(engine: Engine) -> LogWriter:
    """Route this process's API Logs rows through a write-behind LogWriter (the API's lifespan)."""
    global _log_writer
    _log_writer = LogWriter(engine)
    return _log_writer


def stop_log_writer() -> None:
    """Write every queued row, then go back to writing each row before answering."""
    global _log_writer
    writer, _log_writer = _log_writer, None
    if writer is not None:
        writer.stop()


async def alog_call(engine: Engine, record: CallRecord) -> uuid.UUID | None:
    """Queue the row when a LogWriter runs (the id is then not known yet: None), else write it now
    in a worker thread."""
    writer = _log_writer
    if writer is not None and writer._engine is engine:
        writer.submit(record)
        return None
    return await in_db_thread(write_call_log, engine, record)


@dataclass
class UpstreamClock:
    """Seconds spent waiting on the provider, so MindRoute's own time can be told apart."""

    seconds: float = 0.0

    def add_since(self, started: float) -> None:
        self.seconds += time.perf_counter() - started


@dataclass(frozen=True)
class ApiOutcome:
    """A ChatOutcome with what the OpenAI shapes need besides it."""

    outcome: ChatOutcome
    finish_reason: str | None
    model: str


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


# --- model ids --------------------------------------------------------------------------------


def _offers(models: tuple[str, ...], default_model: str | None, model: str) -> bool:
    # A provider with no model list offers its default model by name (it may accept others, unnamed).
    return model in models if models else model == default_model


def _granted_provider_ids(session: Session, user: User) -> set[uuid.UUID] | None:
    """The providers the user holds an allowed grant on; None for an admin, who may see them all."""
    if user.role == "admin":
        return None
    allowed = select(UserProvider.provider_id).where(UserProvider.user_id == user.id, UserProvider.allowed.is_(True))
    return set(session.scalars(allowed))


def resolve_model_id(session: Session, user: User, model_id: str) -> tuple[uuid.UUID, str]:
    """(provider id, model) for an API model id: "<provider name>/<model>", or a bare model that
    exactly one provider the user may use offers. Raises ChatRefused: 400 ambiguous, 403 not
    allowed, 404 exists nowhere. Whether the call is allowed is prepare_call's decision.

    A provider the user holds no allowed grant on (admins: every provider) is treated as if it did
    not exist: the same 404 as for an unknown model, so 403-vs-404 does not tell which providers
    exist. 403 is kept for what the user may already see: a granted provider that is deactivated, a
    model outside the grant's list or the provider's."""
    model_id = model_id.strip()
    if not model_id:
        raise ChatRefused(400, "model is required: use an id from GET /v1/models")
    unknown = ChatRefused(404, f"The model {model_id} does not exist")
    granted = _granted_provider_ids(session, user)
    providers = [p for p in session.scalars(select(Provider)) if granted is None or p.id in granted]
    named = sorted(
        (p for p in providers if model_id.startswith(p.name + "/") and len(model_id) > len(p.name) + 1),
        key=lambda p: -len(p.name),
    )
    if named:
        provider = named[0]
        model = model_id[len(provider.name) + 1 :]
        offered = provider_models(provider)
        if offered and model not in offered and not any(model in provider_models(p) for p in providers):
            raise unknown
        return provider.id, model
    offering = [p for p in usable_providers(session, user) if _offers(p.models, p.default_model, model_id)]
    if len(offering) == 1:
        return offering[0].id, model_id
    if offering:
        choices = ", ".join(f"{p.name}/{model_id}" for p in offering)
        raise ChatRefused(400, f"The model {model_id} is offered by several providers; choose one of: {choices}")
    exists = any(_offers(provider_models(p), read_settings(p.settings)["default_model"], model_id) for p in providers)
    if exists:
        raise ChatRefused(403, f"You may not use the model {model_id}")
    raise unknown


def api_model_ids(session: Session, user: User) -> list[tuple[str, str]]:
    """(provider name, "<provider name>/<model>") for each model the user may call; a provider
    that lists no models contributes its default model, if it has one."""
    ids = []
    for provider in usable_providers(session, user):
        models = provider.models or ((provider.default_model,) if provider.default_model else ())
        ids += [(provider.name, f"{provider.name}/{model}") for model in models]
    return ids


# --- the calls --------------------------------------------------------------------------------


async def acomplete_prepared(
    engine: Engine,
    prepared: PreparedCall,
    caller: Caller,
    started: float,
    clock: UpstreamClock,
    extra: dict[str, Any] | None = None,
) -> ApiOutcome:
    """The async complete_chat after prepare_call: a whole answer, always exactly one Logs row."""
    upstream_started = time.perf_counter()
    try:
        result = await adapter_for(prepared.protocol).acomplete(prepared.request, prepared.endpoint, prepared.api_key)
        error = None
    except ProviderError as exc:
        result, error = None, exc
    clock.add_since(upstream_started)
    record, outcome = finished_call(
        prepared, caller, end=result, error=error, duration_ms=_ms_since(started), extra=extra
    )
    outcome = replace(outcome, log_id=await alog_call(engine, record))
    model = (result.model if result else None) or prepared.request.model
    return ApiOutcome(outcome, result.finish_reason if result else None, model)


class AsyncStreamingChat:
    """The async StreamingChat after prepare_call: iterate `chunks()`, then await `finish()` (in a
    `finally`), which logs exactly once: completed, failed, or abandoned by the client partway
    (status 499, the text so far). `finish()` shields itself, so it completes in a cancelled task."""

    def __init__(
        self,
        engine: Engine,
        prepared: PreparedCall,
        caller: Caller,
        started: float,
        clock: UpstreamClock,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._engine = engine
        self._prepared = prepared
        self._caller = caller
        self._started = started
        self._clock = clock
        self._extra = extra or {}
        self._first_token_ms: int | None = None
        self._end: StreamEnd | None = None
        self._error: ProviderError | None = None
        self._stream: AsyncChatStream | None = None
        self.result: ApiOutcome | None = None
        try:
            self._stream = adapter_for(prepared.protocol).astream(prepared.request, prepared.endpoint, prepared.api_key)
        except ProviderError as exc:  # refused by the adapter before anything was sent
            self._error = exc

    @property
    def error(self) -> ProviderError | None:
        return self._error

    async def chunks(self) -> AsyncIterator[str]:
        """Answer text as it arrives; a provider error ends the iteration and is kept for finish()."""
        if self._stream is None:
            return
        iterator = self._stream.__aiter__()
        redactor = redaction.answer_keys(self._prepared.api_key).stream()  # a key split across pieces too
        while True:
            waited = time.perf_counter()
            try:
                item = await iterator.__anext__()
            except StopAsyncIteration:
                self._clock.add_since(waited)
                break
            except ProviderError as exc:
                self._clock.add_since(waited)
                self._error = exc
                break
            except BaseException:
                self._clock.add_since(waited)
                raise
            self._clock.add_since(waited)
            if isinstance(item, StreamEnd):
                self._end = item
            elif item.text:
                if self._first_token_ms is None:
                    self._first_token_ms = _ms_since(self._started)
                if text := redactor.feed(item.text):
                    yield text
        if rest := redactor.flush():
            yield rest

    async def finish(self) -> ApiOutcome:
        if self.result is not None:
            return self.result
        with anyio.CancelScope(shield=True):
            return await self._finish()

    async def _finish(self) -> ApiOutcome:
        prepared = self._prepared
        stopped = self._end is None and self._error is None and self._stream is not None
        end = self._stream.so_far() if self._stream is not None and self._end is None else self._end
        if self._stream is not None:
            # Closes the upstream response: the provider sees the disconnect and stops generating.
            await self._stream.aclose()
        record, outcome = finished_call(
            prepared,
            self._caller,
            end=end,
            error=self._error,
            stopped=stopped,
            stop_message="The client closed the connection",
            first_token_ms=self._first_token_ms,
            duration_ms=_ms_since(self._started),
            extra=self._extra,
        )
        outcome = replace(outcome, log_id=await alog_call(self._engine, record))
        self.result = ApiOutcome(outcome, end.finish_reason if end else None, prepared.request.model)
        return self.result


def refusal_record(
    user_id: uuid.UUID | None,
    provider_id: uuid.UUID | None,
    request: ChatRequest | None,
    model: str | None,
    status_code: int,
    message: str,
    caller: Caller,
    started: float,
    extra: dict[str, Any] | None = None,
) -> CallRecord:
    """The Logs row of an API call refused before any upstream call (bad key, body, model, policy)."""
    return CallRecord(
        user_id=user_id,
        provider_id=provider_id,
        model=request.model if request is not None else model,
        request=request,
        status_code=status_code,
        duration_ms=_ms_since(started),
        error_message=message,
        source=caller.source,
        api_key_id=caller.api_key_id,
        ip=caller.ip,
        user_agent=caller.user_agent,
        extra=extra or {},
    )
