"""The API's Logs rows written behind the answers: one thread batches them into write_call_logs and
keeps them through a database outage; alog_call hands a row to it (or writes it now, in a thread).

A committed batch's budget alerts go to the webhook (budget_alerts) in a daemon thread of their own,
started by write_call_logs after its commit: the writer never waits for a webhook. Starting the writer
also posts the alerts an earlier process left 'pending'; stopping it waits (a few seconds at most) for
the posts under way."""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import uuid

from sqlalchemy import Engine

from mindroute.config import get_settings
from mindroute.models import utcnow
from mindroute.observability import metrics
from mindroute.services import budget_alerts
from mindroute.services.call_log import CallRecord, DatabaseOutage, write_call_log, write_call_logs
from mindroute.services.db_threads import in_db_thread

log = logging.getLogger("mindroute.log_writer")

LOG_BATCH_MAX_ROWS = 500
LOG_BATCH_WAIT_S = 0.05
LOG_QUEUE_MAX_ENV = "MINDROUTE_LOG_QUEUE_MAX"
LOG_RETRY_MIN_S = 0.1  # the first retry after the database went away; doubled each time, up to:
LOG_RETRY_MAX_S = 5.0
LOG_STOP_RETRY_S = 30.0  # at shutdown, how long to keep retrying a database that is away
LOG_WARN_EVERY_S = 10.0


def log_queue_max() -> int:
    """The most Logs rows the API keeps waiting for the database (MINDROUTE_LOG_QUEUE_MAX, default 100,000)."""
    return get_settings().log_queue_max


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
    def max_queued(self) -> int:
        return self._max_queued

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
            oldest = min(record.ended_at for record in batch)
            metrics.set_log_writer_state(len(backlog) + self._queue.qsize(), (utcnow() - oldest).total_seconds())
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


def current_log_writer() -> LogWriter | None:
    """This process's Logs writer, or None while rows are written before answering (no server running)."""
    return _log_writer


def start_log_writer(engine: Engine) -> LogWriter:
    """Route this process's API Logs rows through a write-behind LogWriter (the API's lifespan)."""
    global _log_writer
    _log_writer = LogWriter(engine)
    budget_alerts.resume_pending(engine)
    return _log_writer


def stop_log_writer() -> None:
    """Write every queued row, then go back to writing each row before answering."""
    global _log_writer
    writer, _log_writer = _log_writer, None
    if writer is not None:
        writer.stop()
        budget_alerts.wait_for_deliveries()


async def alog_call(engine: Engine, record: CallRecord) -> uuid.UUID | None:
    """Queue the row when a LogWriter runs (the id is then not known yet: None), else write it now
    in a worker thread."""
    writer = _log_writer
    if writer is not None and writer._engine is engine:
        writer.submit(record)
        return None
    return await in_db_thread(write_call_log, engine, record)
