"""The three rollup levels, the dimensions of a call they keep, and a call's totals summed to them.

- usagerollups (HOURLY): calls per UTC hour and (user, provider, model, source, API key, status code,
  request type);
- usagedailyrollups (DAILY): the same dimensions per UTC day, for the totals of long ranges;
- usagemodelrollups (BY_MODEL): calls per UTC hour and (provider, model, request type) only, for the charts.

A rollup row sums its calls: requests, errors (status >= 400), token sums, duration sum and count,
and a latency histogram (see histograms.py). Every level is derived from the same per-(hour,
dimensions) totals of the calls (`accumulate`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from mindroute.analytics.histograms import encode_histogram, latency_bucket
from mindroute.models import Log, UsageDailyRollup, UsageModelRollup, UsageRollup

ERROR_STATUS_MIN = 400
SOURCE_PLAYGROUND = "playground"
SOURCE_API = "api"
# Logs.requestType of a call: POST /v1/chat/completions (and the playground), /v1/completions, /v1/embeddings.
REQUEST_TYPE_CHAT = "chat"
REQUEST_TYPES = ("chat", "completion", "embedding")  # the filter's choices, with any other type seen


def source_of(request_body: Any) -> str:
    """'playground' for playground calls, 'api' for everything else (API calls, imported rows)."""
    if isinstance(request_body, Mapping) and request_body.get("source") == SOURCE_PLAYGROUND:
        return SOURCE_PLAYGROUND
    return SOURCE_API


def api_key_of(request_body: Any) -> str | None:
    value = request_body.get("api_key_id") if isinstance(request_body, Mapping) else None
    return str(value)[:64] if value else None


@dataclass(frozen=True)
class Dims:
    user_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    model: str | None
    source: str
    api_key_id: str | None
    status_code: int | None
    request_type: str = REQUEST_TYPE_CHAT

    def key(self) -> str:
        cached = self.__dict__.get("_key")
        if cached is None:
            parts = (self.user_id, self.provider_id, self.model, self.source, self.api_key_id, self.status_code)
            cached = _digest(parts, self.request_type)
            object.__setattr__(self, "_key", cached)  # frozen, but the digest is worth keeping
        return cached


def _digest(parts: Sequence[Any], request_type: str = REQUEST_TYPE_CHAT) -> str:
    """The digest of a row's dimensions. The request type (migration 0006) is left out when it is
    "chat", so the rows written before it keep their keys: they were all chat calls' rows."""
    if request_type != REQUEST_TYPE_CHAT:
        parts = (*parts, request_type)
    raw = "\x1f".join("\x00" if p is None else str(p) for p in parts)
    return hashlib.sha256(raw.encode()).hexdigest()


def request_type_of(value: Any) -> str:
    """A Logs row's requestType as the rollups keep it ("chat" when missing)."""
    return str(value)[:50] if value else REQUEST_TYPE_CHAT


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_sum: int = 0
    duration_count: int = 0
    latency: dict[int, int] = field(default_factory=dict)

    def add(
        self, status: int | None, tokens: int | None, prompt: int | None, completion: int | None, ms: int | None
    ) -> None:
        self.requests += 1
        self.errors += 1 if status is not None and status >= ERROR_STATUS_MIN else 0
        self.tokens += tokens or 0
        self.prompt_tokens += prompt or 0
        self.completion_tokens += completion or 0
        if ms is not None:
            self.duration_sum += ms
            self.duration_count += 1
            index = latency_bucket(ms)
            self.latency[index] = self.latency.get(index, 0) + 1

    def merge(self, other: Totals, sign: int = 1) -> None:
        for name in SUM_FIELDS:
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))
        for index, calls in other.latency.items():
            self.latency[index] = self.latency.get(index, 0) + sign * calls


# The counters of Totals, named as the rollup models' attributes.
SUM_FIELDS = ("requests", "errors", "tokens", "prompt_tokens", "completion_tokens", "duration_sum", "duration_count")


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> datetime:
    """The UTC midnight a moment's day starts at."""
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


# --- levels -----------------------------------------------------------------------------------

ALL_DIMS = ("user_id", "provider_id", "model", "source", "api_key_id", "status_code", "request_type")
DIM_ATTRIBUTES = {
    "user_id": "user_id",
    "provider_id": "provider_id",
    "model": "model_id",
    "source": "source",
    "api_key_id": "api_key_id",
    "status_code": "status_code",
    "request_type": "request_type",
}


@dataclass(frozen=True)
class Level:
    """One rollup table: its period (an hour or a UTC day) and the dimensions of a call it keeps."""

    name: str
    model: type
    daily: bool
    dims: tuple[str, ...]

    @property
    def table(self) -> Any:
        return self.model.__table__

    def bucket(self, hour: datetime) -> datetime:
        return day_of(hour) if self.daily else hour

    def key(self, dims: Dims) -> str:
        if self.dims == ALL_DIMS:
            return dims.key()
        return _digest([getattr(dims, d) for d in self.dims if d != "request_type"], dims.request_type)

    @cached_property
    def dim_columns(self) -> tuple[tuple[str, str], ...]:
        """(Dims field, column name) of the dimensions kept."""
        return tuple((dim, self.model.__mapper__.attrs[DIM_ATTRIBUTES[dim]].columns[0].key) for dim in self.dims)

    def row(self, bucket: datetime, dims: Dims, totals: Totals | None) -> dict[str, Any]:
        """The row's values as column names."""
        t = totals or Totals()
        row: dict[str, Any] = {"bucket": bucket, "dimkey": self.key(dims)}
        for dim, column in self.dim_columns:
            row[column] = getattr(dims, dim)
        for name, column in zip(SUM_FIELDS, SUM_COLUMNS, strict=True):
            row[column] = getattr(t, name)
        row["latency"] = encode_histogram(t.latency)
        return row


def column_name(attribute: str) -> str:
    return UsageRollup.__mapper__.attrs[attribute].columns[0].key


SUM_COLUMNS = tuple(column_name(name) for name in SUM_FIELDS)


HOURLY = Level("hourly", UsageRollup, False, ALL_DIMS)
DAILY = Level("daily", UsageDailyRollup, True, ALL_DIMS)
BY_MODEL = Level("by_model", UsageModelRollup, False, ("provider_id", "model", "request_type"))
LEVELS = (HOURLY, DAILY, BY_MODEL)  # also the order writers lock their rows in


def call_columns() -> list[Any]:
    """What a call was, as read from Logs: model, source and API key (out of requestBody in SQL),
    status, token counts and duration (shared with the log explorer's rows)."""
    return [
        Log.model_id,
        Log.request_body["source"].as_string(),
        Log.request_body["api_key_id"].as_string(),
        Log.status_code,
        Log.tokens_used,
        Log.prompt_tokens,
        Log.completion_tokens,
        Log.duration,
    ]


def fact_columns() -> list[Any]:
    """Columns read from Logs to roll a row up: when, whose, which provider, call_columns(), and
    the request type (last)."""
    return [Log.created_at, Log.user_id, Log.provider_id, *call_columns(), Log.request_type]


def accumulate(rows: Iterable[Any]) -> dict[tuple[datetime, Dims], Totals]:
    """Sum rows of fact_columns() per (hour, dims)."""
    out: dict[tuple[datetime, Dims], Totals] = {}
    for created, user, provider, model, source, api_key, status, tokens, prompt, completion, ms, kind in rows:
        dims = Dims(
            user,
            provider,
            model,
            SOURCE_PLAYGROUND if source == SOURCE_PLAYGROUND else SOURCE_API,
            str(api_key)[:64] if api_key else None,
            status,
            request_type_of(kind),
        )
        key = (hour_of(created), dims)
        totals = out.get(key)
        if totals is None:
            totals = out[key] = Totals()
        totals.add(status, tokens, prompt, completion, ms)
    return out


Rolled = dict[tuple[datetime, str], tuple[Dims, Totals]]


def add_to(rolled: Rolled, level: Level, hour: datetime, dims: Dims, totals: Totals) -> None:
    """Add one hour's totals of `dims` to their row of a level."""
    key = (level.bucket(hour), level.key(dims))
    entry = rolled.get(key)
    if entry is None:
        entry = rolled[key] = (dims, Totals())
    entry[1].merge(totals)


def roll_up(level: Level, totals_by_key: Mapping[tuple[datetime, Dims], Totals]) -> Rolled:
    """Per-(hour, dims) totals summed to a level's rows: {(bucket, dimkey): (dims, totals)}."""
    if level is HOURLY:
        return {(hour, dims.key()): (dims, totals) for (hour, dims), totals in totals_by_key.items()}
    out: Rolled = {}
    for (hour, dims), totals in totals_by_key.items():
        add_to(out, level, hour, dims, totals)
    return out
