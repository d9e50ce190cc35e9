"""The playground's chat calls, sync: thin drivers over the call tracker (services/call_tracker.py)
that add only the I/O: the routing rules in one transaction, the budgets and rate limits (services/limits.py,
counted as for the API), the upstream call (in a worker thread where it must be stoppable) and the one Logs
row, written before the outcome is returned."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

from sqlalchemy import Engine

from mindroute.db import transaction
from mindroute.i18n import _l
from mindroute.models import User
from mindroute.providers.adapter import ChatStream
from mindroute.providers.cancel import CancelScope
from mindroute.providers.errors import ProviderError, UpstreamError
from mindroute.providers.registry import adapter_for

# The playground builds its requests from these shapes; it reaches them here, through the chat service.
from mindroute.providers.shapes import Attachment, ChatMessage, ChatRequest, StreamChunk, attachment_kind  # noqa: F401
from mindroute.services import limits
from mindroute.services.call_log import write_call_log
from mindroute.services.call_tracker import Caller, CallTracker, ChatOutcome, call_record, ms_since
from mindroute.services.limit_rules import LimitRule, rules_for_call
from mindroute.services.routing import ChatRefused, PreparedCall, prepare_call

STREAM_WORKER_JOIN_S = 2.0  # finish() waits this long at most for a stopped stream's reading thread
_STREAM_OVER = object()  # what the reading thread of pieces() sends last

log = logging.getLogger("mindroute.chat")


def _prepare_or_refuse(
    engine: Engine, user: User, provider_id: uuid.UUID, request: ChatRequest, caller: Caller, started: float
) -> CallTracker | ChatOutcome:
    """The routing rules and the rules of the limits the call meets in one transaction, then the limits
    counted for it: the call's tracker (with what it owes them), or its refusal, logged here and returned
    as the outcome (a limit's: status 429 and the message naming the limit and when it resets)."""
    prepared: PreparedCall | None = None
    rules: tuple[LimitRule, ...] = ()
    with transaction(engine) as session:
        try:
            prepared = prepare_call(session, user, provider_id, request)
        except ChatRefused as refused:
            status, message, retry_after = refused.status_code, refused.message, None
        else:
            rules = rules_for_call(session, user.id, None, provider_id)
    if prepared is not None:
        check = limits.check(engine, rules) if rules else limits.NO_LIMITS
        if check.refusal is None:
            return CallTracker(prepared, caller, started, charges=check.charges)
        status, message, retry_after = check.refusal.status, check.refusal.message, check.refusal.retry_after_s
    record = call_record(caller, user.id, provider_id, request.model, request, status, ms_since(started), message, None)
    log_id = write_call_log(engine, record)
    outcome = ChatOutcome("", status, message, None, None, None, False, record.duration_ms, None, None, log_id=log_id)
    return replace(outcome, retry_after=retry_after) if retry_after is not None else outcome


def _logged(engine: Engine, tracker: CallTracker, stop_message: str = "Stopped by the user") -> ChatOutcome:
    record, outcome = tracker.finished(stop_message)
    return replace(outcome, log_id=write_call_log(engine, record))


def complete_chat(
    engine: Engine, user: User, provider_id: uuid.UUID, request: ChatRequest, caller: Caller
) -> ChatOutcome:
    """A whole answer at once; always exactly one Logs row."""
    started = time.perf_counter()
    tracker = _prepare_or_refuse(engine, user, provider_id, request, caller, started)
    if isinstance(tracker, ChatOutcome):
        return tracker
    prepared = tracker.prepared
    route = prepared.route
    try:
        tracker.answered(adapter_for(route.protocol).complete(prepared.request, route.endpoint, route.api_key))
    except ProviderError as exc:
        tracker.failed(exc)
    return _logged(engine, tracker)


class _StoppableChat:
    """What StreamingChat and WholeChat share: the routing rules (a refusal is logged at once and is
    the outcome), the stop, the worker thread and a `finish()` that logs exactly once, from any thread."""

    def __init__(
        self, engine: Engine, user: User, provider_id: uuid.UUID, request: ChatRequest, caller: Caller
    ) -> None:
        self._engine = engine
        started = time.perf_counter()
        self._scope = CancelScope()
        self._worker: threading.Thread | None = None
        self._finish_lock = threading.Lock()
        self._tracker: CallTracker | None = None
        self.outcome: ChatOutcome | None = None
        tracker = _prepare_or_refuse(engine, user, provider_id, request, caller, started)
        if isinstance(tracker, ChatOutcome):
            self.outcome = tracker  # refused and logged already
        else:
            self._tracker = tracker

    @property
    def prepared(self) -> PreparedCall | None:
        return self._tracker.prepared if self._tracker is not None else None

    def stop(self) -> None:
        """End the call now (any thread, idempotent): its upstream I/O fails at once and it reads no more."""
        self._scope.cancel()

    def finish(self) -> ChatOutcome:
        """Log the call (once; any thread; later calls return the same outcome). A call still
        running is stopped first: its text so far, if any, is logged with status 499."""
        with self._finish_lock:
            if self.outcome is None:
                assert self._tracker is not None
                self._settle(self._tracker)
                self.outcome = _logged(self._engine, self._tracker)
            return self.outcome

    def _settle(self, tracker: CallTracker) -> None:
        """Bring the upstream call to its end before it is logged."""
        raise NotImplementedError


class StreamingChat(_StoppableChat):
    """A streamed answer: iterate `chunks()` (or `pieces()`, which reads in a worker thread), then
    call `finish()` (in a `finally`), which logs exactly once: completed, failed, or stopped by the
    user partway (status 499, the text so far, possibly none).

    `stop()` ends the call at once from any thread, also while it waits for the provider's first
    byte: the upstream request's socket is shut down (mindroute/providers/cancel.py), so the
    provider sees the client go away, and `finish()` logs right then."""

    def __init__(
        self, engine: Engine, user: User, provider_id: uuid.UUID, request: ChatRequest, caller: Caller
    ) -> None:
        super().__init__(engine, user, provider_id, request, caller)
        self._stream: ChatStream | None = None
        if self._tracker is not None:
            self._stream = self._tracker.open_stream(adapter_for(self._tracker.prepared.route.protocol).stream)

    def chunks(self) -> Iterator[str]:
        """The answer's text as it arrives (the playground asks for one choice and no tools)."""
        if self._stream is None:
            return
        tracker, stream, scope = self._tracker, self._stream, self._scope
        assert tracker is not None
        try:
            while not scope.cancelled:
                with scope.bound():  # the upstream I/O of this next(), in this thread, can be stopped
                    item = next(stream, None)
                if item is None:
                    break
                for piece in tracker.chunk(item):
                    if isinstance(piece, StreamChunk) and piece.choice == 0 and piece.text:
                        yield piece.text
        except ProviderError as exc:
            if not scope.cancelled:  # a stop makes the read fail: that is no error of the provider's
                tracker.failed(exc)
        for piece in tracker.rest():
            if isinstance(piece, StreamChunk) and piece.choice == 0:
                yield piece.text

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
                if not self._scope.cancelled and self._tracker is not None:
                    self._tracker.failed(
                        UpstreamError(_l("Reading the answer failed ({error})", error=exc.__class__.__name__))
                    )
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

    def _settle(self, tracker: CallTracker) -> None:
        if tracker.end is None and tracker.error is None:
            self.stop()  # the reader went away before the stream ended
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(STREAM_WORKER_JOIN_S)  # a stopped read ends in milliseconds
        still_reading = worker is not None and worker.is_alive()  # e.g. stuck connecting: not waited for
        tracker.ending(self._stream)
        if self._stream is not None and not still_reading:
            self._stream.close()  # releases the upstream connection: the provider sees the disconnect


class WholeChat(_StoppableChat):
    """A whole (not streamed) answer that can be stopped: the upstream call runs in a worker thread
    from the start; iterate `pieces()` (None every `wait_s` until the answer is in), then call
    `finish()` (in a `finally`), which logs exactly once, like StreamingChat's: answered, failed,
    or stopped by the user before the answer came (status 499, no text). `stop()` works from any
    thread and closes the upstream request at once."""

    def __init__(
        self, engine: Engine, user: User, provider_id: uuid.UUID, request: ChatRequest, caller: Caller
    ) -> None:
        super().__init__(engine, user, provider_id, request, caller)
        if self._tracker is not None:
            self._worker = threading.Thread(target=self._call, name="mindroute-chat-whole", daemon=True)
            self._worker.start()

    def _call(self) -> None:
        tracker = self._tracker
        assert tracker is not None
        prepared = tracker.prepared
        route = prepared.route
        try:
            with self._scope.bound():
                result = adapter_for(route.protocol).complete(prepared.request, route.endpoint, route.api_key)
        except ProviderError as exc:
            if not self._scope.cancelled:  # a stop makes the call fail: that is no error of the provider's
                tracker.failed(exc)
        except Exception as exc:  # a bug here must still end the call and write its row
            log.exception("a whole answer failed")
            if not self._scope.cancelled:
                tracker.failed(UpstreamError(_l("Reading the answer failed ({error})", error=exc.__class__.__name__)))
        else:
            tracker.answered(result)  # arrived, even if a stop came a moment later: a full answer is logged

    def pieces(self, wait_s: float) -> Iterator[None]:
        """None after every `wait_s` while the answer is not in: the caller's thread never blocks on
        the provider (see StreamingChat.pieces)."""
        worker = self._worker
        while worker is not None and worker.is_alive():
            worker.join(wait_s)
            if worker.is_alive():
                yield None

    def _settle(self, tracker: CallTracker) -> None:
        worker = self._worker
        if worker is not None and worker.is_alive():
            self.stop()
            worker.join(STREAM_WORKER_JOIN_S)  # a stopped call ends in milliseconds
