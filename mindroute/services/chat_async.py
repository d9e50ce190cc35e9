"""The API's chat calls, async: thin drivers over the call tracker (services/call_tracker.py) that add
only the I/O: the upstream call on the event loop, the time spent waiting on it (UpstreamClock), and
the one Logs row handed to the log writer. Admission (services/api_admission.py) has routed the call."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import anyio
from sqlalchemy import Engine

from mindroute.providers.adapter import AsyncChatStream
from mindroute.providers.errors import ProviderError
from mindroute.providers.registry import adapter_for
from mindroute.providers.sse import StreamItem
from mindroute.services.call_tracker import ApiOutcome, CallTracker
from mindroute.services.log_writer import alog_call


@dataclass
class UpstreamClock:
    """Seconds spent waiting on the provider, so MindRoute's own time can be told apart."""

    seconds: float = 0.0

    def add_since(self, started: float) -> None:
        self.seconds += time.perf_counter() - started


async def acomplete_call(engine: Engine, tracker: CallTracker, clock: UpstreamClock) -> ApiOutcome:
    """A whole answer to an admitted call, always exactly one Logs row."""
    prepared = tracker.prepared
    route = prepared.route
    upstream_started = time.perf_counter()
    try:
        result = await adapter_for(route.protocol).acomplete(prepared.request, route.endpoint, route.api_key)
    except ProviderError as exc:
        result = None
        tracker.failed(exc)
    else:
        tracker.answered(result)
    clock.add_since(upstream_started)
    record, outcome = tracker.finished()
    outcome = replace(outcome, log_id=await alog_call(engine, record))
    model = (result.model if result else None) or prepared.request.model
    return ApiOutcome(outcome, result.finish_reason if result else None, model, result)


class AsyncStreamingChat:
    """A streamed answer to an admitted call: iterate `chunks()`, then await `finish()` (in a
    `finally`), which logs exactly once: completed, failed, or abandoned by the client partway
    (status 499, the text so far). `finish()` shields itself, so it completes in a cancelled task."""

    def __init__(self, engine: Engine, tracker: CallTracker, clock: UpstreamClock) -> None:
        self._engine = engine
        self._clock = clock
        self._tracker = tracker
        self.result: ApiOutcome | None = None
        self._stream: AsyncChatStream | None = tracker.open_stream(adapter_for(tracker.prepared.route.protocol).astream)

    @property
    def error(self) -> ProviderError | None:
        return self._tracker.error

    async def chunks(self) -> AsyncIterator[StreamItem]:
        """The answer's pieces (text, tool-call pieces) as they arrive, key-redacted; a provider error
        ends the iteration and is kept for finish()."""
        if self._stream is None:
            return
        iterator = self._stream.__aiter__()
        tracker, clock = self._tracker, self._clock
        while True:
            waited = time.perf_counter()
            try:
                item = await iterator.__anext__()
            except StopAsyncIteration:
                clock.add_since(waited)
                break
            except ProviderError as exc:
                clock.add_since(waited)
                tracker.failed(exc)
                break
            except BaseException:
                clock.add_since(waited)
                raise
            clock.add_since(waited)
            for piece in tracker.chunk(item):
                yield piece
        for piece in tracker.rest():
            yield piece

    async def finish(self) -> ApiOutcome:
        if self.result is not None:
            return self.result
        with anyio.CancelScope(shield=True):
            return await self._finish()

    async def _finish(self) -> ApiOutcome:
        tracker = self._tracker
        tracker.ending(self._stream)
        if self._stream is not None:
            # Closes the upstream response: the provider sees the disconnect and stops generating.
            await self._stream.aclose()
        record, outcome = tracker.finished("The client closed the connection")
        outcome = replace(outcome, log_id=await alog_call(self._engine, record))
        end = tracker.end
        self.result = ApiOutcome(outcome, end.finish_reason if end else None, tracker.prepared.request.model, end)
        return self.result
