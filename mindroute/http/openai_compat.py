"""OpenAI's Chat Completions shapes in and out: request JSON to a ChatRequest, outcomes to response
JSON and SSE chunks, and OpenAI-style error bodies."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from mindroute.config import DEFAULT_API_MAX_MESSAGES
from mindroute.providers.base import Attachment, ChatMessage, ChatRequest, attachment_kind, redact_secrets
from mindroute.services.chat_async import ApiOutcome

# OpenAI's own error types, by the status MindRoute answers with.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    499: "client_closed_request",
    500: "server_error",
    502: "upstream_error",
    503: "server_error",
    504: "upstream_timeout",
}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# The provider's finish words in OpenAI's vocabulary.
_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "STOP": "stop",
    "length": "length",
    "max_tokens": "length",
    "MAX_TOKENS": "length",
    "content_filter": "content_filter",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "refusal": "content_filter",
}
_UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call", "audio", "prediction")


class InvalidChatRequest(ValueError):  # noqa: N818 - reads better at the raise site
    """The body is not a chat request MindRoute can carry: answered with 400 and this message."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class ParsedChat:
    """What the API needs from an OpenAI request body."""

    model_id: str  # as the client wrote it: "<provider>/<model>" or a bare model
    request: ChatRequest  # its `model` is filled in once the model id is resolved
    include_usage: bool
    user: str | None


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """{"error": {"message", "type", "code", "param"}} with anything key-shaped redacted."""
    return {
        "error": {
            "message": redact_secrets(message),
            "type": _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
            "code": code,
            "param": param,
        }
    }


def _text(value: str, where: str) -> str:
    """`value`, refused when it cannot be sent as UTF-8: JSON's \\ud800-style escapes can give lone
    surrogates, which no provider (and no database) accepts."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(value[error.start])
        raise InvalidChatRequest(
            f"{where} is not valid Unicode: it holds a lone surrogate (\\u{code:04x}) at character {error.start}",
            where,
        ) from None
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidChatRequest(f"{name} must be a number", name)
    if not low <= value <= high:
        raise InvalidChatRequest(f"{name} must be between {low:g} and {high:g}", name)
    return float(value)


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidChatRequest(f"{name} must be a positive integer", name)
        return value
    return None


def _stop(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [_text(stop, "stop")]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        return [_text(s, f"stop[{i}]") for i, s in enumerate(stop)] or None
    raise InvalidChatRequest("stop must be a string or a list of up to 4 strings", "stop")


def _decode_data_url(url: str, where: str) -> tuple[str, bytes]:
    _text(url, where)
    if not url.startswith("data:"):
        raise InvalidChatRequest(
            f"{where}: MindRoute does not fetch remote URLs; send the content as a base64 data URL", where
        )
    header, sep, payload = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise InvalidChatRequest(f"{where}: expected a base64 data URL (data:<type>;base64,...)", where)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidChatRequest(f"{where}: the data URL is not valid base64", where) from None
    return header.removesuffix(";base64").split(";")[0] or "application/octet-stream", data


def _part(part: Any, role: str, where: str) -> tuple[str, Attachment | None]:
    if not isinstance(part, dict):
        raise InvalidChatRequest(f"{where} must be an object", where)
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise InvalidChatRequest(f"{where}.text must be a string", where)
        return _text(part["text"], f"{where}.text"), None
    if kind in ("image_url", "file") and role != "user":
        raise InvalidChatRequest(f"{where}: {kind} parts are only allowed in user messages", where)
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise InvalidChatRequest(f"{where}.image_url.url must be a string", where)
        mime, data = _decode_data_url(url, f"{where}.image_url.url")
        if not mime.startswith("image/"):
            raise InvalidChatRequest(f"{where}.image_url.url: expected an image data URL, got {mime}", where)
        return "", Attachment("image", mime, data)
    if kind == "file":
        file = part.get("file")
        if not isinstance(file, dict) or not isinstance(file.get("file_data"), str):
            raise InvalidChatRequest(
                f"{where}.file: send file_data as a base64 data URL (file ids are not kept)", where
            )
        mime, data = _decode_data_url(file["file_data"], f"{where}.file.file_data")
        filename = _text(file["filename"], f"{where}.file.filename") if isinstance(file.get("filename"), str) else ""
        return "", Attachment(attachment_kind(mime), mime, data, filename)
    raise InvalidChatRequest(f"{where}: content parts of type {kind!r} are not supported", where)


def _message(raw: Any, index: int) -> ChatMessage:
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise InvalidChatRequest(f"{where} must be an object", where)
    role = _ROLES.get(raw.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise InvalidChatRequest(
            f"{where}.role {raw.get('role')!r} is not supported: use system, developer, user or assistant", where
        )
    content = raw.get("content")
    if content is None and role == "assistant":
        content = ""
    if isinstance(content, str):
        return ChatMessage(role, _text(content, f"{where}.content"))  # type: ignore[arg-type]
    if not isinstance(content, list):
        raise InvalidChatRequest(f"{where}.content must be a string or a list of content parts", where)
    texts, attachments = [], []
    for j, part in enumerate(content):
        text, attachment = _part(part, role, f"{where}.content[{j}]")
        if text:
            texts.append(text)
        if attachment is not None:
            attachments.append(attachment)
    return ChatMessage(role, "\n".join(texts), attachments)  # type: ignore[arg-type]


# Bodies parsed in a worker thread rather than on the event loop (parse_off_loop): parsing costs about
# 3 µs per message object and 0.4 ms per 256 KB of text, a thread hop about 0.25 ms of latency.
OFF_LOOP_MIN_BYTES = 256 * 1024
OFF_LOOP_MIN_OBJECTS = 256  # about 1 ms of parsing and building
_OFF_LOOP_COUNT_FROM_BYTES = 4096  # a smaller body cannot hold that many objects worth a thread


def parse_off_loop(raw: bytes) -> bool:
    """Whether parsing `raw` costs enough (over ~1 ms) to be done in a worker thread: a body over
    OFF_LOOP_MIN_BYTES, or one with more than OFF_LOOP_MIN_OBJECTS "{" (each about one object)."""
    size = len(raw)
    if size > OFF_LOOP_MIN_BYTES:
        return True
    return size > _OFF_LOOP_COUNT_FROM_BYTES and raw.count(b"{") > OFF_LOOP_MIN_OBJECTS


class _TooManyMessagesError(Exception):
    pass


def _too_many_messages(max_messages: int, count: int | None = None) -> InvalidChatRequest:
    found = f"this one has {count:,}" if count is not None else "this one has more"
    return InvalidChatRequest(
        f"messages: at most {max_messages:,} messages are accepted in one request; {found}", "messages"
    )


def _counting_hook(max_messages: int) -> Any:
    """A json object_hook that stops the parse once more than `max_messages` objects with a "role"
    (messages, as far as the parser can tell) were built. Being Python, it also lets the interpreter
    switch threads between objects: parsed in a worker thread, a big body no longer holds up the
    event loop for the whole parse (plain json.loads keeps the interpreter lock until it is done)."""
    count = 0

    def hook(obj: dict[str, Any]) -> dict[str, Any]:
        nonlocal count
        if "role" in obj:
            count += 1
            if count > max_messages:
                raise _TooManyMessagesError
        return obj

    return hook


def _loads(raw: bytes, max_messages: int, counting: bool) -> Any:
    try:
        return json.loads(raw, object_hook=_counting_hook(max_messages)) if counting else json.loads(raw)
    except _TooManyMessagesError:
        raise _too_many_messages(max_messages) from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidChatRequest("The request body is not valid JSON") from None
    except RecursionError:  # the parser's own guard against deep nesting ([[[[...: 100,000 deep)
        raise InvalidChatRequest("The request body is nested too deeply to be a chat request") from None


def parse_chat_request_off_loop(
    raw: bytes, max_messages: int = DEFAULT_API_MAX_MESSAGES
) -> ParsedChat | InvalidChatRequest:
    """parse_chat_request for a worker thread: the refusal is returned, not raised, with no traceback,
    so that everything parsed so far is freed in the thread rather than on the event loop; and the
    parse stops as soon as the body holds too many messages."""
    try:
        return parse_chat_request(raw, max_messages, counting=True)
    except InvalidChatRequest as refusal:
        refusal.__context__ = None
        return refusal.with_traceback(None)


def parse_chat_request(
    raw: bytes, max_messages: int = DEFAULT_API_MAX_MESSAGES, *, counting: bool = False
) -> ParsedChat:
    """An OpenAI Chat Completions body as MindRoute's request; InvalidChatRequest says what is wrong.
    More than `max_messages` messages are refused before any of them is built (with `counting`,
    while the JSON is parsed)."""
    body = _loads(raw, max_messages, counting)
    if not isinstance(body, dict):
        raise InvalidChatRequest("The request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidChatRequest("model is required: use an id from GET /v1/models", "model")
    _text(model, "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidChatRequest("messages must be a non-empty list", "messages")
    if len(messages) > max_messages:
        raise _too_many_messages(max_messages, len(messages))
    for name in _UNSUPPORTED:
        if body.get(name) is not None:
            raise InvalidChatRequest(f"{name} is not supported by MindRoute", name)
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidChatRequest("n must be 1: MindRoute returns one choice", "n")
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    user = _text(body["user"], "user") if isinstance(body.get("user"), str) else None
    request = ChatRequest(
        model=model.strip(),
        messages=[_message(m, i) for i, m in enumerate(messages)],
        temperature=_number(body, "temperature", 0, 2),
        max_tokens=_max_tokens(body),
        top_p=_number(body, "top_p", 0, 1),
        stop=_stop(body),
        stream=stream,
    )
    return ParsedChat(model.strip(), request, include_usage, user)


# --- responses ----------------------------------------------------------------------------------


# A random prefix per process and a counter: unique ids without a random draw (a system call) per answer.
_ID_PREFIX = "chatcmpl-" + uuid.uuid4().hex[:16]
_id_counter = itertools.count(1)


def completion_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):x}"


def finish_reason(provider_reason: str | None) -> str:
    return _FINISH_REASONS.get(provider_reason or "stop", "stop")


def usage(result: ApiOutcome) -> dict[str, int] | None:
    """OpenAI's usage object, from the provider's own counts; None when it reported none."""
    outcome = result.outcome
    if not outcome.usage_reported:
        return None
    prompt, completion = outcome.prompt_tokens or 0, outcome.completion_tokens or 0
    total = outcome.total_tokens if outcome.total_tokens is not None else prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def completion_json(result: ApiOutcome, model_id: str, cid: str | None = None) -> dict[str, Any]:
    """A `chat.completion` object for a successful answer."""
    return {
        "id": cid or completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.outcome.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(result.finish_reason),
            }
        ],
        "usage": usage(result),
    }


def sse_data(payload: dict[str, Any] | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


SSE_DONE = sse_data("[DONE]")


def chunk_json(
    cid: str,
    created: int,
    model_id: str,
    delta: dict[str, Any] | None,
    reason: str | None = None,
    *,
    include_usage: bool = False,
) -> dict[str, Any]:
    """A `chat.completion.chunk`; with include_usage, `usage` is null on every chunk but the last."""
    chunk: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model_id,
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


def usage_chunk_json(cid: str, created: int, model_id: str, result: ApiOutcome) -> dict[str, Any]:
    """The last chunk when stream_options.include_usage: no choices, the usage (zeros when unreported)."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model_id,
        "choices": [],
        "usage": usage(result) or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
