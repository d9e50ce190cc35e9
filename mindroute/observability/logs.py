"""The process's log lines: configured once at start, to stdout, as plain text or JSON lines, each carrying the
request id of the API call it belongs to, with anything shaped like a key redacted.

`MINDROUTE_LOG_FORMAT` chooses `plain` (the default) or `json`; `MINDROUTE_LOG_LEVEL` the level (`info`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

from mindroute.redaction import redact_secrets

LOG_FORMATS = ("plain", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
REQUEST_ID_MAX_CHARS = 128  # a client-sent id longer than this, or with other characters, is replaced
_REQUEST_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("mindroute_request_id", default=None)
_HANDLER_NAME = "mindroute"


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(sent: str | None) -> str:
    """The client's `x-request-id` when it is a sane token (kept, so a client can follow its call), else a new one.
    An id is echoed in a header and written to logs: nothing but letters, digits and -_.: and at most 128 chars."""
    if sent and len(sent) <= REQUEST_ID_MAX_CHARS and set(sent) <= _REQUEST_ID_CHARS:
        return sent
    return new_request_id()


def set_request_id(value: str | None) -> contextvars.Token[str | None]:
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def current_request_id() -> str | None:
    return _request_id.get()


class _RequestIdFilter(logging.Filter):
    """Puts the current request id on every record and redacts key-shaped text from the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad %-format in someone's log call: keep it as it is
            return True
        cleaned = redact_secrets(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request_part)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.request_part = f" [{rid}]" if rid else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO-8601), level, logger, message, request_id, and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exception"] = redact_secrets(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is when a record comes (a test runner's capture may replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure(log_format: str = "plain", level: str = "info", stream: TextIO | None = None) -> None:
    """Send every logger's records (MindRoute's, uvicorn's, Streamlit's) to one stdout handler. Idempotent:
    calling it again replaces MindRoute's handler, never adds a second."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}")
    handler: logging.StreamHandler = logging.StreamHandler(stream) if stream is not None else _StdoutHandler()  # type: ignore[type-arg]
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format == "json" else PlainFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Other libraries speak up from warnings on (httpx would log every request at info); MindRoute, the server
    # and Streamlit at the level asked for.
    root.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    logging.getLogger("mindroute").setLevel(level.upper())
    # uvicorn's and Streamlit's own loggers carry their own handlers: let them reach ours instead, in one format.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "streamlit"):
        named = logging.getLogger(name)
        named.handlers = []
        named.propagate = True
        named.setLevel(level.upper())
