"""MindRoute's Prometheus metrics, with prometheus-client: every logged call is counted once, from its Logs record.

Several worker processes (`uvicorn --workers N`) each count their own; with `PROMETHEUS_MULTIPROC_DIR` set (an
empty directory, the same for every worker, emptied before they start) prometheus-client's multi-process mode adds
them up, so any worker answers `/metrics` for all. Label values that come from outside (model ids) are capped:
after MAX_LABEL_VALUES distinct values a label reads "other", so a client cannot grow the registry without bound.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess


class CallRecord(Protocol):
    """What a call's Logs record (services/call_log.CallRecord) tells the metrics."""

    provider_id: object
    model: str | None
    status_code: int
    duration_ms: int
    source: str
    request_type: str
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None


MAX_LABEL_VALUES = 200
OTHER = "other"
# Seconds: from a 1 ms cache hit to a long generation.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)

CALL_LABELS = ("source", "request_type", "provider", "model", "status")

REQUESTS = Counter("mindroute_requests", "Calls answered (every Logs row), by outcome", CALL_LABELS)
ERRORS = Counter("mindroute_errors", "Calls that ended with an HTTP status of 400 or more", CALL_LABELS)
LATENCY = Histogram(
    "mindroute_request_duration_seconds",
    "Time from the request to the end of the answer",
    ("source", "request_type", "provider", "model"),
    buckets=LATENCY_BUCKETS_S,
)
OVERHEAD = Histogram(
    "mindroute_overhead_seconds",
    "Time MindRoute adds to an answered API call: its duration minus the time spent waiting for the provider",
    ("source",),
    buckets=OVERHEAD_BUCKETS_S,
)
TOKENS = Counter("mindroute_tokens", "Tokens used", ("provider", "model", "kind"))
COST = Counter("mindroute_cost_usd", "Estimated cost of priced calls, in US dollars", ("provider", "model"))
UNPRICED = Counter("mindroute_unpriced_calls", "Calls with tokens but no price for their model", ("provider", "model"))
LIMIT_REFUSALS = Counter("mindroute_limit_refusals", "Calls refused by a rate limit or a spent budget", ("kind",))
DB_READS = Counter("mindroute_database_reads", "Database reads on the API's call path", ("what",))
LOG_QUEUE = Gauge(
    "mindroute_log_writer_queue_rows",
    "Logs rows waiting to be written",
    multiprocess_mode="livesum",
)
LOG_LAG = Gauge(
    "mindroute_log_writer_lag_seconds",
    "Age of the oldest Logs row still waiting to be written",
    multiprocess_mode="livemax",
)


class _BoundedLabel:
    """The first MAX_LABEL_VALUES distinct values of a label as they are; every later one as "other"."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: object) -> str:
        text = "" if value is None else str(value)[:100]
        if text in self._seen:
            return text
        with self._lock:
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(text)
        return text


_provider_label = _BoundedLabel()
_model_label = _BoundedLabel()
_provider_names: Callable[[object], str | None] | None = None


def name_providers_with(lookup: Callable[[object], str | None]) -> None:
    """How a provider id becomes its label (a cached name lookup); without one, the id itself."""
    global _provider_names
    _provider_names = lookup


def _provider(provider_id: object) -> str:
    if provider_id is None:
        return ""
    name = _provider_names(provider_id) if _provider_names is not None else None
    return _provider_label(name or provider_id)


def observe_call(record: CallRecord) -> None:
    """Count one call from the record its Logs row is written from (so metrics and Logs agree)."""
    provider = _provider(record.provider_id)
    model = _model_label(record.model)
    status = str(record.status_code)
    labels = (record.source, record.request_type, provider, model, status)
    REQUESTS.labels(*labels).inc()
    if record.status_code >= 400:
        ERRORS.labels(*labels).inc()
    LATENCY.labels(record.source, record.request_type, provider, model).observe(record.duration_ms / 1000)
    if record.prompt_tokens:
        TOKENS.labels(provider, model, "prompt").inc(record.prompt_tokens)
    if record.completion_tokens:
        TOKENS.labels(provider, model, "completion").inc(record.completion_tokens)
    if record.cost_usd is not None:
        COST.labels(provider, model).inc(record.cost_usd)
    elif record.total_tokens:
        UNPRICED.labels(provider, model).inc()


def observe_overhead(seconds: float, source: str = "api") -> None:
    OVERHEAD.labels(source).observe(max(seconds, 0.0))


def count_limit_refusal(kind: str) -> None:
    """`kind`: "requests", "tokens" (a rate limit) or "budget"."""
    LIMIT_REFUSALS.labels(kind).inc()


def count_database_read(what: str) -> None:
    DB_READS.labels(what).inc()


def set_log_writer_state(queued_rows: int, oldest_age_s: float) -> None:
    LOG_QUEUE.set(queued_rows)
    LOG_LAG.set(oldest_age_s)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render() -> tuple[bytes, str]:
    """The exposition text and its content type: this process's metrics, or every worker's in multi-process mode."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """For a process manager's child-exit hook in multi-process mode (live gauges of a dead worker are dropped)."""
    if multiprocess_dir():
        prometheus_multiprocess.mark_process_dead(pid)
