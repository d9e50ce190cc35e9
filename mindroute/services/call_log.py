"""Logging of every chat call, from the playground and the API alike: one Logs row per call.

What a row holds (the Logs columns of the schema document):

- requestBody: `{"source": "playground"|"api", "api_key_id": …, "model", "temperature", "max_tokens",
  "top_p", "stop", "stream", "tools": [names], "tool_choice", "parallel_tool_calls", "response_format":
  {"type", "name"}, "n", "options": {other Chat Completions fields, clipped}, "messages": [{"role",
  "text", "attachments": [{"name", "type", "size"}], "tool_calls": [{"id", "name", "arguments"}],
  "tool_call_id"}]}` (the optional parts only when set).
  Attachments are described, never included (no data URLs); key-shaped text is redacted. The whole
  body is capped at about REQUEST_BODY_MAX_CHARS: messages are kept from the newest back while they
  fit, and a body that lost some says so: `"truncated": {"messages": total, "kept": n, "chars": size}`.
- responseBody: `{"text", "tool_calls": [{"id", "name", "arguments"}], "other_choices": [{"index",
  "text", "finish_reason", "tool_calls"}], "finish_reason", "usage": {"reported": bool, "prompt",
  "completion", "total"}, "time_to_first_token_ms", "stopped_by_user", "truncated"}`. Text over
  RESPONSE_TEXT_MAX_CHARS is cut, with a marker saying how much.
- promptTokens / completionTokens / tokensUsed: the provider's own counts; NULL when it gave none
  (`usage.reported` is then false). Nothing is estimated.
- statusCode: the HTTP status MindRoute answered with or would have: 200, the upstream's error
  status, 400/403 when refused before any upstream call, and STOPPED_BY_USER_STATUS (499, the
  status nginx uses for "client closed request") when the user stopped a stream.
- duration: milliseconds for the whole call, refused calls included.

The row is written after the call ends, in its own short transaction; a failure to write it is
logged on the server and never reaches the user. `is_database_outage` tells a database that is away
(unreachable, restarting, locked past the busy timeout) from a row it refuses, so that the API's log
writer retries the first later and drops only the second.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Engine, exc, insert
from sqlalchemy.orm import Session

from mindroute import redaction
from mindroute.analytics.rollups import add_logs_to_rollups
from mindroute.db import transaction
from mindroute.models import Log, utcnow
from mindroute.observability import metrics
from mindroute.providers.shapes import ChatRequest, Choice, ToolCall
from mindroute.redaction import redact_secrets
from mindroute.services import budget_alerts, budget_spend
from mindroute.services.limit_charges import Charges

log = logging.getLogger("mindroute.call_log")

REQUEST_TYPE_CHAT = "chat"
REQUEST_TYPE_EMBEDDING = "embedding"
REQUEST_TYPE_COMPLETION = "completion"
STOPPED_BY_USER_STATUS = 499
RESPONSE_TEXT_MAX_CHARS = 32_000
MESSAGE_TEXT_MAX_CHARS = 16_000
ERROR_MESSAGE_MAX_CHARS = 2_000
USER_AGENT_MAX_CHARS = 1_000
# The stored requestBody as a whole (message texts, names and fields), so that a 25 MB body of
# 700,000 tiny messages is not stored whole.
REQUEST_BODY_MAX_CHARS = 64_000
FIELD_MAX_CHARS = 1_000  # model, stop sequences, attachment names, extra string fields
ATTACHMENTS_MAX = 50  # described per message; more are counted
_MESSAGE_OVERHEAD_CHARS = 40  # {"role": "assistant", "text": ""} and its separators
_REDACT_MARGIN_CHARS = 4_096  # redacted past a message's clip: longer than any key
_NO_KEYS = redaction.KeySet()


@dataclass
class CallRecord:
    """Everything known about one call when it ends."""

    user_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    model: str | None
    request: ChatRequest | None
    status_code: int
    duration_ms: int
    source: str = "playground"
    api_key_id: uuid.UUID | None = None
    text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    usage_reported: bool = False
    time_to_first_token_ms: int | None = None
    stopped_by_user: bool = False
    tool_calls: tuple[ToolCall, ...] = ()  # the answer's (first choice's) tool calls
    other_choices: tuple[Choice, ...] = ()  # choices 1..n-1 when n > 1
    error_message: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    ended_at: datetime = field(default_factory=utcnow)  # the row's createdAt, however late it is written
    request_type: str = REQUEST_TYPE_CHAT  # the Logs row's requestType: chat, embedding or completion
    charges: Charges | None = None  # what the call owes its budgets and minute counters (limit_charges)
    cost_usd: float | None = None  # the call's estimated cost (None: unpriced or no tokens)


def _clip(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return text[:limit] + f"\n…[truncated: {len(text) - limit} more characters]", True


def _field(value: Any) -> Any:
    return value[:FIELD_MAX_CHARS] if isinstance(value, str) else value


def _stored_text(text: str, keys: redaction.KeySet) -> str:
    """A message's text as the row stores it: stored keys and key-shaped text redacted, clipped to
    MESSAGE_TEXT_MAX_CHARS. A long text has only a prefix redacted (the clip throws the rest away),
    so a 25 MB message costs what the stored characters cost; the prefix reaches _REDACT_MARGIN_CHARS
    past the clip, so that a key across the clip is redacted whole before the clip."""
    limit = MESSAGE_TEXT_MAX_CHARS
    if len(text) <= limit + _REDACT_MARGIN_CHARS:
        return _clip(redact_secrets(keys.redact(text)), limit)[0]
    prefix = redact_secrets(keys.redact(text[: limit + _REDACT_MARGIN_CHARS]))
    return prefix[:limit] + f"\n…[truncated: {len(text) - limit} more characters]"


def request_body(record: CallRecord, keys: redaction.KeySet | None = None) -> dict[str, Any]:
    """The row's requestBody; the kept messages' texts have `keys` (stored provider keys) redacted."""
    keys = keys if keys is not None else _NO_KEYS
    body: dict[str, Any] = {"source": record.source}
    if record.api_key_id is not None:
        body["api_key_id"] = str(record.api_key_id)
    extra = {name: _field(value) for name, value in record.extra.items()}
    request = record.request
    if request is None:
        return {**body, "model": _field(record.model), **extra}
    # Newest messages first while they fit (the question asked is the last one), then back in order.
    budget = REQUEST_BODY_MAX_CHARS
    messages: list[dict[str, Any]] = []
    for message in reversed(request.messages):
        text = _stored_text(message.text, keys)
        entry: dict[str, Any] = {"role": message.role, "text": text}
        size = len(text) + _MESSAGE_OVERHEAD_CHARS
        if message.attachments:
            entry["attachments"] = [
                {"name": _field(a.label), "type": _field(a.mime_type), "size": a.size}
                for a in message.attachments[:ATTACHMENTS_MAX]
            ]
            if len(message.attachments) > ATTACHMENTS_MAX:
                entry["attachments_total"] = len(message.attachments)
            size += sum(len(a["name"]) + len(a["type"]) + 40 for a in entry["attachments"])
        if message.tool_calls:
            entry["tool_calls"] = _stored_calls(message.tool_calls, keys)
            size += sum(len(c["arguments"]) + len(c["name"]) + len(c["id"]) + 40 for c in entry["tool_calls"])
        if message.tool_call_id is not None:
            entry["tool_call_id"] = _field(message.tool_call_id)
        if size > budget and messages:
            break
        budget -= size
        messages.append(entry)
    messages.reverse()
    stop = [_field(s) for s in request.stop] if request.stop is not None else None
    capped = {
        **body,
        "model": _field(request.model),
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "top_p": request.top_p,
        "stop": stop,
        "stream": request.stream,
        **_request_options(request, keys),
        "messages": messages,
        **extra,
    }
    if len(messages) < len(request.messages):
        total = sum(len(m.text) + _MESSAGE_OVERHEAD_CHARS for m in request.messages)
        capped["truncated"] = {"messages": len(request.messages), "kept": len(messages), "chars": total}
    return capped


TOOLS_MAX = 128  # tool names kept in a requestBody (OpenAI's own limit on tools)


def _stored_calls(calls: Sequence[ToolCall], keys: redaction.KeySet) -> list[dict[str, str]]:
    """Tool calls as a row stores them: id, name, and the arguments redacted and clipped."""
    return [
        {
            "id": _field(call.id),
            "name": _field(call.name),
            "arguments": _clip(redact_secrets(keys.redact(call.arguments)), FIELD_MAX_CHARS)[0],
        }
        for call in calls[:ATTACHMENTS_MAX]
    ]


def _request_options(request: ChatRequest, keys: redaction.KeySet) -> dict[str, Any]:
    """The request's fields besides the sampling ones, when set: the tools' names, the tool choice, the
    response format, n, and the other Chat Completions fields (each value key-redacted and clipped;
    `user` is the row's own field already)."""
    fields: dict[str, Any] = {}
    if request.tools:
        fields["tools"] = [_field(tool.name) for tool in request.tools[:TOOLS_MAX]]
    if request.tool_choice is not None:
        choice = request.tool_choice
        fields["tool_choice"] = _field(choice.name) if choice.mode == "function" else choice.mode
    if request.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = request.parallel_tool_calls
    if request.response_format is not None:
        response_format = request.response_format
        fields["response_format"] = {"type": response_format.type, "name": _field(response_format.name)}
    if request.n is not None:
        fields["n"] = request.n
    if request.options:
        options: dict[str, Any] = {}
        for name, value in list(request.options.items())[:ATTACHMENTS_MAX]:
            if name == "user":
                continue
            if not (isinstance(value, int | float | bool) or value is None):
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                value = _field(redact_secrets(keys.redact(text)))
            options[_field(redact_secrets(keys.redact(name)))] = value
        if options:
            fields["options"] = options
    return fields


def response_body(record: CallRecord, keys: redaction.KeySet | None = None) -> dict[str, Any] | None:
    keys = keys if keys is not None else _NO_KEYS
    if (
        record.text is None
        and not record.usage_reported
        and record.time_to_first_token_ms is None
        and not record.tool_calls
    ):
        return None
    text, truncated = _clip(record.text or "", RESPONSE_TEXT_MAX_CHARS)
    extra: dict[str, Any] = {}
    if record.tool_calls:
        extra["tool_calls"] = _stored_calls(record.tool_calls, keys)
    if record.other_choices:
        extra["other_choices"] = [
            {
                "index": choice.index,
                "text": _clip(redact_secrets(keys.redact(choice.text)), FIELD_MAX_CHARS)[0],
                "finish_reason": choice.finish_reason,
                "tool_calls": _stored_calls(choice.tool_calls, keys),
            }
            for choice in record.other_choices[:ATTACHMENTS_MAX]
        ]
    return {
        "text": text,
        **extra,
        "finish_reason": record.finish_reason,
        "usage": {
            "reported": record.usage_reported,
            "prompt": record.prompt_tokens,
            "completion": record.completion_tokens,
            "total": record.total_tokens,
        },
        "time_to_first_token_ms": record.time_to_first_token_ms,
        "stopped_by_user": record.stopped_by_user,
        "truncated": truncated,
    }


def _tokens_used(record: CallRecord) -> int | None:
    if record.total_tokens is not None:
        return record.total_tokens
    if record.prompt_tokens is not None and record.completion_tokens is not None:
        return record.prompt_tokens + record.completion_tokens
    return None


def log_values(record: CallRecord) -> dict[str, Any]:
    """The call's Logs row as {Log attribute: value}: what to_row builds, without an ORM object."""
    # No stored provider key in the row (issue 13, item 9). The messages are redacted by request_body,
    # only those it keeps: a body of 700,000 messages costs what its stored 64,000 characters cost.
    keys = redaction.stored_keys()
    record = redaction.redact_record(record, keys, messages=False)
    error = redact_secrets(record.error_message)[:ERROR_MESSAGE_MAX_CHARS] if record.error_message else None
    return {
        "id": uuid.uuid4(),
        "created_at": record.ended_at,
        "user_id": record.user_id,
        "provider_id": record.provider_id,
        "model_id": (record.model or None) and record.model[:100],
        "request_type": record.request_type,
        "request_body": request_body(record, keys),
        "response_body": response_body(record, keys),
        "tokens_used": _tokens_used(record),
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "status_code": record.status_code,
        "error_message": error,
        "duration": max(0, record.duration_ms),
        "ip": (record.ip or None) and record.ip[:50],
        "user_agent": (record.user_agent or None) and record.user_agent[:USER_AGENT_MAX_CHARS],
    }


def to_row(record: CallRecord) -> Log:
    return Log(**log_values(record))


_LOG_ATTRIBUTES = (
    "id",
    "created_at",
    "user_id",
    "provider_id",
    "model_id",
    "request_type",
    "request_body",
    "response_body",
    "tokens_used",
    "prompt_tokens",
    "completion_tokens",
    "status_code",
    "error_message",
    "duration",
    "ip",
    "user_agent",
)


@functools.cache
def _log_columns() -> tuple[tuple[str, str], ...]:
    """(attribute, column name) of every Logs column the logger writes."""
    return tuple((a, Log.__mapper__.attrs[a].columns[0].key) for a in _LOG_ATTRIBUTES)


_JSON_ATTRIBUTES = frozenset({"request_body", "response_body"})


def _copy_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """PostgreSQL: the batch through COPY, on the session's connection and so in its transaction. It
    costs a fraction of an executemany INSERT's CPU, in this process and in the server. JSON values
    are written as the Core INSERT writes them (None as JSON null)."""
    columns = _log_columns()
    statement = f"COPY {Log.__table__.name} ({', '.join(c for _, c in columns)}) FROM STDIN"
    dbapi_connection = session.connection().connection.dbapi_connection
    assert dbapi_connection is not None
    with dbapi_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([json.dumps(row[a]) if a in _JSON_ATTRIBUTES else row[a] for a, _ in columns])


# SQLite's result codes that say "not now" (locked past the busy timeout, the file unreadable or the
# disk full for the moment) rather than "never" (SQLITE_ERROR: no such table, a syntax error, ...).
_SQLITE_OUTAGE_CODES = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_FULL",
    "SQLITE_PROTOCOL",
)


def _driver_outage(error: BaseException) -> bool:
    if isinstance(error, sqlite3.Error):
        return (getattr(error, "sqlite_errorname", None) or "").startswith(_SQLITE_OUTAGE_CODES)
    # psycopg: refused or lost connections, a server shutting down, ... (COPY's errors come unwrapped)
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError | OSError)


DATABASE_UNAVAILABLE = "MindRoute's database is unavailable; retry"  # what a call refused for an outage is told


def is_database_outage(error: BaseException) -> bool:
    """Whether `error` says the database is away (unreachable, restarting, its connection lost,
    SQLite locked past the busy timeout) rather than refusing this particular row: the write may
    succeed later, as it is."""
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if error.orig is not None:
            return _driver_outage(error.orig)
        return isinstance(error, exc.OperationalError | exc.InterfaceError)
    if isinstance(error, exc.TimeoutError):  # no pooled connection came free in time
        return True
    return _driver_outage(error)


class DatabaseOutage(Exception):  # noqa: N818 - reads better at the raise site
    """write_call_logs(defer_on_outage=True) found the database away: `records[written:]` were not
    written (the first `written` were) and should be tried again later."""

    def __init__(self, written: int) -> None:
        super().__init__(f"the database is unavailable; {written} row(s) were written before it went away")
        self.written = written


def write_call_logs(
    engine: Engine, records: Sequence[CallRecord], *, defer_on_outage: bool = False
) -> list[uuid.UUID | None]:
    """Write the calls' Logs rows, count them in the rollups and charge them to their budgets
    (budget_spend.apply_charges), in one transaction; the ids, in order (None for a row that could
    not be written). The budget alerts the batch raised are posted to the webhook after the commit,
    in a daemon thread. If the batch fails, each row is tried alone, so one bad row does not cost the
    others; a failure is logged on the server. Never raises, unless
    `defer_on_outage`: then a database that is away (is_database_outage) raises DatabaseOutage
    instead of costing the rows, for the caller to try them again later."""
    if not records:
        return []
    redaction.refresh_stored_keys(engine)  # the providers' keys as they are now, for log_values; never raises
    charged = [record for record in records if record.charges is not None]
    try:
        if charged:
            budget_alerts.webhook_url()  # checked once per process (a DNS lookup), before any lock is held
        rows = [log_values(record) for record in records]
        with transaction(engine) as session:
            if engine.dialect.name == "postgresql":
                _copy_rows(session, rows)
            else:  # a Core INSERT of the whole batch (one executemany), not the ORM's unit of work
                columns = _log_columns()
                session.execute(insert(Log.__table__), [{c: row[a] for a, c in columns} for row in rows])
            add_logs_to_rollups(session, rows)  # the usage rollups stay in step with Logs
            alert_ids = budget_spend.apply_charges(session, charged) if charged else []
        if charged:
            budget_spend.count_minute_tokens(engine, charged)
        budget_alerts.deliver_in_background(engine, alert_ids)  # committed: post the new alerts, never waiting
        for record in records:  # counted once each, as written: the metrics and Logs agree
            metrics.observe_call(record)
        return [row["id"] for row in rows]
    except Exception as error:  # logging must never break the user's answer
        if defer_on_outage and is_database_outage(error):
            raise DatabaseOutage(0) from error
        if len(records) > 1:
            log.warning("could not write a batch of %d log rows; writing them one by one", len(records))
            ids: list[uuid.UUID | None] = []
            for index, record in enumerate(records):
                try:
                    ids.append(write_call_logs(engine, [record], defer_on_outage=defer_on_outage)[0])
                except DatabaseOutage:
                    raise DatabaseOutage(index) from None
            return ids
        record = records[0]
        if record.charges is not None:  # the row matters more than its spend: written without its charges
            log.exception("could not charge a %s call to its budgets; writing its log row alone", record.source)
            return write_call_logs(engine, [replace(record, charges=None)], defer_on_outage=defer_on_outage)
        log.exception("could not write the log row of a %s call (status %s)", record.source, record.status_code)
        return [None]


def write_call_log(engine: Engine, record: CallRecord) -> uuid.UUID | None:
    """Write the call's one Logs row in its own transaction; never raises (a failure is logged)."""
    return write_call_logs(engine, [record])[0]
