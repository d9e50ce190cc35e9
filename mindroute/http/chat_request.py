"""OpenAI's Chat Completions request in: the table of the body's fields and the parser that checks them.

REQUEST_FIELDS is the one description of what a request may hold (name, JSON type, constraints, meaning):
the parser below reads its constraints, and the OpenAPI document (mindroute.http.openapi) is generated
from it, so the two cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from mindroute.config import DEFAULT_API_MAX_MESSAGES
from mindroute.providers.shapes import Attachment, ChatMessage, ChatRequest, attachment_kind

# The roles a message may have, and MindRoute's role for each.
MESSAGE_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# Fields OpenAI defines that MindRoute cannot carry: a request that sets one (to anything but null) is refused.
REFUSED_FIELDS = ("tools", "functions", "tool_choice", "function_call", "audio", "prediction")


@dataclass(frozen=True)
class RequestField:
    """One field of the request body, as JSON Schema sees it; None means "no such constraint"."""

    name: str
    json_type: str | tuple[str, ...]  # several: any one of them (stop: a string or a list of strings)
    description: str
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    items: str | None = None  # the JSON type of an array's items
    const: Any = None  # the only value accepted
    properties: tuple[RequestField, ...] = ()  # an object's own fields


REQUEST_FIELDS: tuple[RequestField, ...] = (
    RequestField("model", "string", "<provider name>/<model>, or a bare model", required=True),
    RequestField(
        "messages",
        "array",
        "The conversation: objects with a role (" + ", ".join(MESSAGE_ROLES) + ") and a content, a string or "
        "a list of parts (text; image_url and file as base64 data URLs, in user messages); at most "
        f"MINDROUTE_API_MAX_MESSAGES (default {DEFAULT_API_MAX_MESSAGES:,}) messages",
        required=True,
        min_items=1,
        items="object",
    ),
    RequestField("stream", "boolean", "Answer with chat.completion.chunk events (SSE) ending with data: [DONE]"),
    RequestField(
        "stream_options",
        "object",
        "Options of a streamed answer",
        properties=(RequestField("include_usage", "boolean", "A last chunk with the call's usage"),),
    ),
    RequestField("max_tokens", "integer", "The most tokens to generate (max_completion_tokens wins)", minimum=1),
    RequestField("max_completion_tokens", "integer", "The most tokens to generate", minimum=1),
    RequestField("temperature", "number", "Sampling temperature", minimum=0, maximum=2),
    RequestField("top_p", "number", "Nucleus sampling", minimum=0, maximum=1),
    RequestField("stop", ("string", "array"), "Where the answer stops", max_items=4, items="string"),
    RequestField("n", "integer", "How many choices: MindRoute returns one", const=1),
    RequestField("user", "string", "Your own id for the end user, kept with the call's Logs row"),
)
_FIELDS = {field.name: field for field in REQUEST_FIELDS}
_MESSAGES = _FIELDS["messages"]
_N = _FIELDS["n"]
_STOP = _FIELDS["stop"]
_TEMPERATURE = _FIELDS["temperature"]
_TOP_P = _FIELDS["top_p"]
# max_completion_tokens (OpenAI's newer name) wins over max_tokens.
_MAX_TOKENS = (_FIELDS["max_completion_tokens"], _FIELDS["max_tokens"])
# The checks' messages say "positive", "between" and "up to": the table's constraints must be those.
assert all(field.minimum == 1 for field in _MAX_TOKENS)
assert None not in (_TEMPERATURE.minimum, _TEMPERATURE.maximum, _TOP_P.minimum, _TOP_P.maximum, _STOP.max_items)


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


def _number(body: dict[str, Any], field: RequestField) -> float | None:
    name = field.name
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidChatRequest(f"{name} must be a number", name)
    low, high = field.minimum, field.maximum
    if not low <= value <= high:
        raise InvalidChatRequest(f"{name} must be between {low:g} and {high:g}", name)
    return float(value)


def _max_tokens(body: dict[str, Any]) -> int | None:
    for field in _MAX_TOKENS:
        name = field.name
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < field.minimum:
            raise InvalidChatRequest(f"{name} must be a positive integer", name)
        return value
    return None


def _stop(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [_text(stop, "stop")]
    most = _STOP.max_items
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= most:
        return [_text(s, f"stop[{i}]") for i, s in enumerate(stop)] or None
    raise InvalidChatRequest(f"stop must be a string or a list of up to {most} strings", "stop")


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
    role = MESSAGE_ROLES.get(raw.get("role"))  # type: ignore[arg-type]
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
    return chat_from_body(body, max_messages)


def chat_from_body(body: dict[str, Any], max_messages: int = DEFAULT_API_MAX_MESSAGES) -> ParsedChat:
    """A decoded request body (a JSON object) as MindRoute's request; the fields it reads are
    REQUEST_FIELDS and REFUSED_FIELDS, no others."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidChatRequest("model is required: use an id from GET /v1/models", "model")
    _text(model, "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or len(messages) < (_MESSAGES.min_items or 0):
        raise InvalidChatRequest("messages must be a non-empty list", "messages")
    if len(messages) > max_messages:
        raise _too_many_messages(max_messages, len(messages))
    for name in REFUSED_FIELDS:
        if body.get(name) is not None:
            raise InvalidChatRequest(f"{name} is not supported by MindRoute", name)
    n = body.get("n")
    if n is not None and n != _N.const:
        raise InvalidChatRequest(f"n must be {_N.const}: MindRoute returns one choice", "n")
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    user = _text(body["user"], "user") if isinstance(body.get("user"), str) else None
    request = ChatRequest(
        model=model.strip(),
        messages=[_message(m, i) for i, m in enumerate(messages)],
        temperature=_number(body, _TEMPERATURE),
        max_tokens=_max_tokens(body),
        top_p=_number(body, _TOP_P),
        stop=_stop(body),
        stream=stream,
    )
    return ParsedChat(model.strip(), request, include_usage, user)
