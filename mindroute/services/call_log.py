"""Logging of every chat call, from the playground and the API alike: one Logs row per call.

What a row holds (the Logs columns of the schema document):

- requestBody: `{"source": "playground"|"api", "api_key_id": …, "model", "temperature", "max_tokens",
  "top_p", "stop", "stream", "messages": [{"role", "text", "attachments": [{"name", "type", "size"}]}]}`.
  Attachments are described, never included (no data URLs); key-shaped text is redacted.
- responseBody: `{"text", "finish_reason", "usage": {"reported": bool, "prompt", "completion", "total"},
  "time_to_first_token_ms", "stopped_by_user", "truncated"}`. Text over RESPONSE_TEXT_MAX_CHARS is
  cut, with a marker saying how much.
- promptTokens / completionTokens / tokensUsed: the provider's own counts; NULL when it gave none
  (`usage.reported` is then false). Nothing is estimated.
- statusCode: the HTTP status MindRoute answered with or would have: 200, the upstream's error
  status, 400/403 when refused before any upstream call, and STOPPED_BY_USER_STATUS (499, the
  status nginx uses for "client closed request") when the user stopped a stream.
- duration: milliseconds for the whole call, refused calls included.

The row is written after the call ends, in its own short transaction; a failure to write it is
logged on the server and never reaches the user.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from mindroute import redaction
from mindroute.db import transaction
from mindroute.models import Log, utcnow
from mindroute.providers.base import ChatRequest, redact_secrets
from mindroute.services.rollups import add_logs_to_rollups

log = logging.getLogger("mindroute.call_log")

REQUEST_TYPE_CHAT = "chat"
STOPPED_BY_USER_STATUS = 499
RESPONSE_TEXT_MAX_CHARS = 32_000
MESSAGE_TEXT_MAX_CHARS = 16_000
ERROR_MESSAGE_MAX_CHARS = 2_000
USER_AGENT_MAX_CHARS = 1_000


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
    error_message: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    ended_at: datetime = field(default_factory=utcnow)  # the row's createdAt, however late it is written


def _clip(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return text[:limit] + f"\n…[truncated: {len(text) - limit} more characters]", True


def request_body(record: CallRecord) -> dict[str, Any]:
    body: dict[str, Any] = {"source": record.source}
    if record.api_key_id is not None:
        body["api_key_id"] = str(record.api_key_id)
    request = record.request
    if request is None:
        return {**body, "model": record.model, **record.extra}
    messages = []
    for message in request.messages:
        text, _ = _clip(redact_secrets(message.text), MESSAGE_TEXT_MAX_CHARS)
        entry: dict[str, Any] = {"role": message.role, "text": text}
        if message.attachments:
            entry["attachments"] = [{"name": a.label, "type": a.mime_type, "size": a.size} for a in message.attachments]
        messages.append(entry)
    return {
        **body,
        "model": request.model,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "top_p": request.top_p,
        "stop": request.stop,
        "stream": request.stream,
        "messages": messages,
        **record.extra,
    }


def response_body(record: CallRecord) -> dict[str, Any] | None:
    if record.text is None and not record.usage_reported and record.time_to_first_token_ms is None:
        return None
    text, truncated = _clip(record.text or "", RESPONSE_TEXT_MAX_CHARS)
    return {
        "text": text,
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
    record = redaction.redact_record(record)  # no stored provider key in the row (issue 13, item 9)
    error = redact_secrets(record.error_message)[:ERROR_MESSAGE_MAX_CHARS] if record.error_message else None
    return {
        "id": uuid.uuid4(),
        "created_at": record.ended_at,
        "user_id": record.user_id,
        "provider_id": record.provider_id,
        "model_id": (record.model or None) and record.model[:100],
        "request_type": REQUEST_TYPE_CHAT,
        "request_body": request_body(record),
        "response_body": response_body(record),
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


def write_call_logs(engine: Engine, records: Sequence[CallRecord]) -> list[uuid.UUID | None]:
    """Write the calls' Logs rows, and count them in the rollups, in one transaction; the ids, in
    order (None for a row that could not be written). Never raises: if the batch fails, each row is
    tried alone, so one bad row does not cost the others; a failure is logged on the server."""
    if not records:
        return []
    redaction.refresh_stored_keys(engine)  # the providers' keys as they are now, for log_values; never raises
    try:
        rows = [log_values(record) for record in records]
        with transaction(engine) as session:
            if engine.dialect.name == "postgresql":
                _copy_rows(session, rows)
            else:  # a Core INSERT of the whole batch (one executemany), not the ORM's unit of work
                columns = _log_columns()
                session.execute(insert(Log.__table__), [{c: row[a] for a, c in columns} for row in rows])
            add_logs_to_rollups(session, rows)  # the usage rollups stay in step with Logs
        return [row["id"] for row in rows]
    except Exception:  # logging must never break the user's answer
        if len(records) > 1:
            log.warning("could not write a batch of %d log rows; writing them one by one", len(records))
            return [write_call_logs(engine, [record])[0] for record in records]
        record = records[0]
        log.exception("could not write the log row of a %s call (status %s)", record.source, record.status_code)
        return [None]


def write_call_log(engine: Engine, record: CallRecord) -> uuid.UUID | None:
    """Write the call's one Logs row in its own transaction; never raises (a failure is logged)."""
    return write_call_logs(engine, [record])[0]
