"""OpenAI's Chat Completions request in: the parser that checks a body against the field table
(mindroute.http.chat_fields, REQUEST_FIELDS) and builds MindRoute's ChatRequest. Fields marked `option`
land in ChatRequest.options by their OpenAI names, as sent once checked; a field the table does not
name is kept there as sent too (an openai-compatible server may take it: vLLM's and Ollama's
extensions), and the other protocols' adapters refuse it by name.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from mindroute.config import DEFAULT_API_MAX_MESSAGES
from mindroute.http.chat_fields import (
    IMAGE_DETAILS,
    MESSAGE_ROLES,
    NAME_PATTERN,
    REFUSED_FIELDS,
    REFUSED_REPLACEMENTS,
    REQUEST_FIELDS,
    RequestField,
)
from mindroute.providers.shapes import (
    Attachment,
    ChatMessage,
    ChatRequest,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
    attachment_kind,
)

_NAME = re.compile(NAME_PATTERN)
_FIELDS = {field.name: field for field in REQUEST_FIELDS}
_MESSAGES = _FIELDS["messages"]
_N = _FIELDS["n"]
_STOP = _FIELDS["stop"]
_TEMPERATURE = _FIELDS["temperature"]
_TOP_P = _FIELDS["top_p"]
_TOOLS = _FIELDS["tools"]
_TOOL_CHOICE = _FIELDS["tool_choice"]
_RESPONSE_TYPES = _FIELDS["response_format"].properties[0].enum
# max_completion_tokens (OpenAI's newer name) wins over max_tokens.
_MAX_TOKENS = (_FIELDS["max_completion_tokens"], _FIELDS["max_tokens"])
_OPTIONS = {field.name: field for field in REQUEST_FIELDS if field.option}
# The fields read on every request; any other key of the body is looked at only when present.
_CORE = frozenset({"model", "messages", "stream", "temperature", "top_p", "stop", *(f.name for f in _MAX_TOKENS)})
# The other typed fields (ChatRequest's own), read only when the body has them.
_TYPED = frozenset(field.name for field in REQUEST_FIELDS if not field.option) - _CORE
# The checks' messages say "positive", "between" and "up to": the table's constraints must be those.
assert all(field.minimum == 1 for field in _MAX_TOKENS)
assert None not in (_TEMPERATURE.minimum, _TEMPERATURE.maximum, _TOP_P.minimum, _TOP_P.maximum, _STOP.max_items)
assert None not in (_N.minimum, _N.maximum, _TOOLS.max_items) and not set(REFUSED_FIELDS) & set(_FIELDS)


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


def _json_value(value: Any, where: str) -> Any:
    """A JSON value taken as sent (a schema, an extension field), refused when a string in it is not
    valid Unicode (see _text)."""
    if isinstance(value, str):
        return _text(value, where)
    if isinstance(value, dict | list):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidChatRequest(f"{where} is not valid Unicode: it holds a lone surrogate", where) from None
    return value


def _shown(value: Any) -> str:
    """An untrusted value in a refusal's message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_WORDS = {
    "boolean": "a boolean",
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "object": "an object",
    "array": "an array",
}


def _is_type(value: Any, json_type: str) -> bool:
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "object":
        return isinstance(value, dict)
    return isinstance(value, list)


def _bound(value: float) -> str:
    """A range's end as written: an integer exactly (a 64-bit seed's end is not 9.22337e+18), a float short."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _range_words(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {_bound(low)} and {_bound(high)}"
    return f"at least {_bound(low)}" if low is not None else f"at most {_bound(high)}"


def _checked(value: Any, field: RequestField, where: str) -> Any:
    """`value` checked against its table entry (type, range, enum, lengths, items and values), as sent."""
    types = (field.json_type,) if isinstance(field.json_type, str) else field.json_type
    kind = next((t for t in types if _is_type(value, t)), None)
    if kind is None:
        raise InvalidChatRequest(f"{where} must be " + " or ".join(_TYPE_WORDS[t] for t in types), where)
    if kind in ("integer", "number"):
        low, high = field.minimum, field.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            raise InvalidChatRequest(f"{where} must be {_range_words(low, high)}", where)
    elif kind == "string":
        if field.enum is not None and value not in field.enum:
            raise InvalidChatRequest(f"{where} must be one of {', '.join(field.enum)}, not {_shown(value)}", where)
        if field.max_length is not None and len(value) > field.max_length:
            raise InvalidChatRequest(f"{where} must be at most {field.max_length} characters", where)
        _text(value, where)
    elif kind == "array":
        if field.max_items is not None and len(value) > field.max_items:
            raise InvalidChatRequest(f"{where} must have at most {field.max_items} items", where)
        if isinstance(field.items, RequestField):
            for i, item in enumerate(value):
                _checked(item, field.items, f"{where}[{i}]")
        else:
            _json_value(value, where)
    elif kind == "object":
        if field.max_properties is not None and len(value) > field.max_properties:
            raise InvalidChatRequest(f"{where} must have at most {field.max_properties} entries", where)
        if field.values is not None:
            for key, item in value.items():
                _checked(item, field.values, f"{where}.{key}" if key.isascii() else where)
        else:
            _json_value(value, where)
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


def _string(raw: dict[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    """raw[key]: a string (None when absent and not required)."""
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        word = "is required and must be" if value is None else "must be"
        raise InvalidChatRequest(f"{where}.{key} {word} a string", f"{where}.{key}")
    return _text(value, f"{where}.{key}")


def _object(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidChatRequest(f"{where} must be an object", where)
    return raw


def _part(part: Any, role: str, where: str) -> str | Attachment:
    """One content part: its text, or its attachment."""
    kind = _object(part, where).get("type")
    if kind == "text":
        return _string(part, "text", where, required=True)  # type: ignore[return-value]
    if kind == "refusal" and role == "assistant":
        return _string(part, "refusal", where, required=True)  # type: ignore[return-value]
    if kind in ("image_url", "file", "input_audio") and role != "user":
        raise InvalidChatRequest(f"{where}: {kind} parts are only allowed in user messages", f"{where}.type")
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise InvalidChatRequest(f"{where}.image_url.url must be a string", f"{where}.image_url.url")
        mime, data = _decode_data_url(url, f"{where}.image_url.url")
        if not mime.startswith("image/"):
            raise InvalidChatRequest(
                f"{where}.image_url.url: expected an image data URL, got {_shown(mime)}", f"{where}.image_url.url"
            )
        detail = image.get("detail") if isinstance(image, dict) else None
        if detail is not None and detail not in IMAGE_DETAILS:
            raise InvalidChatRequest(
                f"{where}.image_url.detail must be one of {', '.join(IMAGE_DETAILS)}, not {_shown(detail)}",
                f"{where}.image_url.detail",
            )
        return Attachment("image", mime, data, detail=detail)
    if kind == "file":
        file = part.get("file")
        if not isinstance(file, dict) or not isinstance(file.get("file_data"), str):
            raise InvalidChatRequest(
                f"{where}.file: send file_data as a base64 data URL (file ids are not kept)", f"{where}.file"
            )
        mime, data = _decode_data_url(file["file_data"], f"{where}.file.file_data")
        filename = _text(file["filename"], f"{where}.file.filename") if isinstance(file.get("filename"), str) else ""
        return Attachment(attachment_kind(mime), mime, data, filename)
    if kind == "input_audio":
        raise InvalidChatRequest(
            f"{where}: input_audio parts are not supported: MindRoute carries text, images and files", f"{where}.type"
        )
    raise InvalidChatRequest(f"{where}: content parts of type {_shown(kind)} are not supported", f"{where}.type")


def _tool_calls(raw: Any, where: str) -> tuple[ToolCall, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidChatRequest(f"{where} must be a non-empty array of tool calls", where)
    calls = []
    for j, item in enumerate(raw):
        at = f"{where}[{j}]"
        _object(item, at)
        if item.get("type") != "function":
            raise InvalidChatRequest(f"{at}.type must be 'function'", f"{at}.type")
        function = _object(item.get("function"), f"{at}.function")
        call_id = _string(item, "id", at, required=True)
        name = _string(function, "name", f"{at}.function", required=True)
        arguments = _string(function, "arguments", f"{at}.function", required=True)
        calls.append(ToolCall(call_id, name, arguments))  # type: ignore[arg-type]
    return tuple(calls)


def _message(raw: Any, index: int) -> ChatMessage:
    where = f"messages[{index}]"
    role = MESSAGE_ROLES.get(_object(raw, where).get("role"))  # type: ignore[arg-type]
    if role is None:
        given = raw.get("role")
        advice = "use tool messages (with tool_call_id)" if given == "function" else "use " + ", ".join(MESSAGE_ROLES)
        raise InvalidChatRequest(f"{where}.role {_shown(given)} is not supported: {advice}", f"{where}.role")
    name = _string(raw, "name", where) if "name" in raw else None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id = None
    if role == "tool":
        tool_call_id = _string(raw, "tool_call_id", where, required=True)
    elif role == "assistant" and raw.get("tool_calls") is not None:
        tool_calls = _tool_calls(raw["tool_calls"], f"{where}.tool_calls")
    content = raw.get("content")
    if content is None and role == "assistant":
        content = ""
    if isinstance(content, str):
        text = _text(content, f"{where}.content")
        return ChatMessage(role, text, name=name, tool_calls=tool_calls, tool_call_id=tool_call_id)  # type: ignore[arg-type]
    if not isinstance(content, list):
        raise InvalidChatRequest(f"{where}.content must be a string or a list of content parts", f"{where}.content")
    parts = tuple(_part(part, role, f"{where}.content[{j}]") for j, part in enumerate(content))
    text = "\n".join(part for part in parts if isinstance(part, str) and part)
    attachments = [part for part in parts if isinstance(part, Attachment)]
    return ChatMessage(
        role,  # type: ignore[arg-type]
        text,
        attachments,
        parts=parts,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id,
        name=name,
    )


def _messages(raw: list[Any]) -> list[ChatMessage]:
    """The messages, with OpenAI's rule for tool calls: an assistant message's calls are each answered by
    the tool messages right after it, and a tool message answers one of them."""
    messages = [_message(m, i) for i, m in enumerate(raw)]
    pending: dict[str, str] = {}  # the calls of the last assistant message not answered yet: id -> name
    for i, message in enumerate(messages):
        if message.role == "tool":
            name = pending.pop(message.tool_call_id, None)  # type: ignore[arg-type]
            if name is None:
                raise InvalidChatRequest(
                    f"messages[{i}]: a tool message must answer a tool call of the assistant message before it "
                    f"(no unanswered call has the id {_shown(message.tool_call_id)})",
                    f"messages[{i}].tool_call_id",
                )
            if message.name is None:  # the function's name, which Gemini's functionResponse needs
                messages[i] = _with_name(message, name)
            continue
        if pending:
            raise _unanswered(pending, f"messages[{i}]")
        if message.tool_calls:
            pending = {call.id: call.name for call in message.tool_calls}
    if pending:
        raise _unanswered(pending, "messages")
    return messages


def _with_name(message: ChatMessage, name: str) -> ChatMessage:
    return ChatMessage(
        message.role,
        message.text,
        message.attachments,
        message.parts,
        message.tool_calls,
        message.tool_call_id,
        name,
    )


def _unanswered(pending: dict[str, str], param: str) -> InvalidChatRequest:
    ids = ", ".join(_shown(call_id) for call_id in pending)
    return InvalidChatRequest(
        "An assistant message with tool_calls must be followed by tool messages answering each tool_call_id; "
        f"not answered: {ids}",
        param,
    )


def _tools(raw: Any) -> tuple[ToolSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidChatRequest("tools must be a non-empty array of tools", "tools")
    if len(raw) > _TOOLS.max_items:  # type: ignore[operator]
        raise InvalidChatRequest(
            f"tools: at most {_TOOLS.max_items} tools are accepted; this one has {len(raw)}", "tools"
        )
    specs: list[ToolSpec] = []
    names: set[str] = set()
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if _object(tool, where).get("type") != "function":
            raise InvalidChatRequest(
                f"{where}.type {_shown(tool.get('type'))} is not supported: only function tools", f"{where}.type"
            )
        function = _object(tool.get("function"), f"{where}.function")
        at = f"{where}.function"
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidChatRequest(
                f"{at}.name must be 1 to 64 letters, digits, underscores or dashes, not {_shown(name)}", f"{at}.name"
            )
        if name in names:
            raise InvalidChatRequest(f"{at}.name {name!r}: two tools have this name", f"{at}.name")
        names.add(name)
        parameters = function.get("parameters")
        if parameters is not None:
            _json_value(_object(parameters, f"{at}.parameters"), f"{at}.parameters")
        strict = function.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise InvalidChatRequest(f"{at}.strict must be a boolean", f"{at}.strict")
        specs.append(ToolSpec(name, _string(function, "description", at), parameters, strict))
    return tuple(specs)


def _tool_choice(raw: Any, tools: tuple[ToolSpec, ...]) -> ToolChoice | None:
    if isinstance(raw, str):
        if raw not in _TOOL_CHOICE.enum:  # type: ignore[operator]
            raise InvalidChatRequest(
                f"tool_choice must be none, auto, required or a function, not {_shown(raw)}", "tool_choice"
            )
        if not tools:
            if raw == "required":
                raise InvalidChatRequest("tool_choice is only allowed when tools are specified", "tool_choice")
            return None  # none and auto without tools: what the model does anyway
        return ToolChoice(raw)  # type: ignore[arg-type]
    if not isinstance(raw, dict):
        raise InvalidChatRequest("tool_choice must be a string or an object", "tool_choice")
    if raw.get("type") != "function":
        raise InvalidChatRequest(
            f"tool_choice.type {_shown(raw.get('type'))} is not supported: only function", "tool_choice.type"
        )
    name = _string(_object(raw.get("function"), "tool_choice.function"), "name", "tool_choice.function", required=True)
    if not tools:
        raise InvalidChatRequest("tool_choice is only allowed when tools are specified", "tool_choice")
    if all(tool.name != name for tool in tools):
        raise InvalidChatRequest(
            f"tool_choice.function.name {_shown(name)} is not one of the tools' names", "tool_choice.function.name"
        )
    return ToolChoice("function", name)


def _response_format(raw: Any) -> ResponseFormat:
    kind = _object(raw, "response_format").get("type")
    if kind not in _RESPONSE_TYPES:  # type: ignore[operator]
        raise InvalidChatRequest(
            f"response_format.type must be text, json_object or json_schema, not {_shown(kind)}",
            "response_format.type",
        )
    if kind != "json_schema":
        return ResponseFormat(kind)
    where = "response_format.json_schema"
    spec = raw.get("json_schema")
    if spec is None:
        raise InvalidChatRequest(f"{where} is required with type json_schema", where)
    _object(spec, where)
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidChatRequest(
            f"{where}.name must be 1 to 64 letters, digits, underscores or dashes, not {_shown(name)}", f"{where}.name"
        )
    schema = spec.get("schema")
    if schema is not None:
        _json_value(_object(schema, f"{where}.schema"), f"{where}.schema")
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise InvalidChatRequest(f"{where}.strict must be a boolean", f"{where}.strict")
    return ResponseFormat("json_schema", name, schema, strict, _string(spec, "description", where))


def _options(body: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The body's other fields (not null), checked by their table entries; fields the table does not
    name are kept as sent."""
    options: dict[str, Any] = {}
    for name in [name for name in body if name in names]:  # in the body's order
        value = body[name]
        if value is None:
            continue
        if name in REFUSED_REPLACEMENTS:
            raise InvalidChatRequest(
                f"{name} is deprecated and not supported by MindRoute: use {REFUSED_REPLACEMENTS[name]}", name
            )
        field = _OPTIONS.get(name)
        if field is None:
            if not name.isascii() and not name.isprintable():
                raise InvalidChatRequest("The request body has a field whose name is not printable text")
            options[name] = _json_value(value, name)
            continue
        options[name] = _checked(value, field, name)
    if "logit_bias" in options:
        for key in options["logit_bias"]:
            if not key.isdigit() or not key.isascii():
                raise InvalidChatRequest(f"logit_bias keys must be token ids (digits), not {_shown(key)}", "logit_bias")
    if "metadata" in options:
        for key in options["metadata"]:
            if len(_text(key, "metadata")) > 64:
                raise InvalidChatRequest("metadata keys must be at most 64 characters", "metadata")
    if "top_logprobs" in options and options.get("logprobs") is not True:
        raise InvalidChatRequest("top_logprobs needs logprobs set to true", "top_logprobs")
    return options


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
    """A decoded request body (a JSON object) as MindRoute's request: the fields of REQUEST_FIELDS checked
    and typed (the `option` ones in ChatRequest.options), REFUSED_FIELDS refused, any other kept in
    options as sent. A null field is the same as an absent one."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidChatRequest("model is required: use an id from GET /v1/models", "model")
    _text(model, "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or len(messages) < (_MESSAGES.min_items or 0):
        raise InvalidChatRequest("messages must be a non-empty list", "messages")
    if len(messages) > max_messages:
        raise _too_many_messages(max_messages, len(messages))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidChatRequest("stream must be a boolean", "stream")
    tools: tuple[ToolSpec, ...] = ()
    tool_choice = parallel = response_format = n = None
    include_usage = False
    options: dict[str, Any] = {}
    rest = body.keys() - _CORE  # most bodies: empty or a field or two
    if rest:
        if (stream_options := body.get("stream_options")) is not None:
            if stream is not True:
                raise InvalidChatRequest(
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
                )
            usage = _object(stream_options, "stream_options").get("include_usage")
            if usage is not None and not isinstance(usage, bool):
                raise InvalidChatRequest(
                    "stream_options.include_usage must be a boolean", "stream_options.include_usage"
                )
            include_usage = usage is True
        if (raw_tools := body.get("tools")) is not None:
            tools = _tools(raw_tools)
        if (raw_choice := body.get("tool_choice")) is not None:
            tool_choice = _tool_choice(raw_choice, tools)
        if (parallel := body.get("parallel_tool_calls")) is not None:
            if not isinstance(parallel, bool):
                raise InvalidChatRequest("parallel_tool_calls must be a boolean", "parallel_tool_calls")
            if not tools:
                parallel = None  # it says nothing without tools (OpenAI refuses it there: not passed on)
        if (raw_format := body.get("response_format")) is not None:
            response_format = _response_format(raw_format)
        if (n := body.get("n")) is not None:
            _checked(n, _N, "n")
        rest -= _TYPED
        if rest:
            options = _options(body, rest)
    user = options.get("user")
    request = ChatRequest(
        model=model.strip(),
        messages=_messages(messages),
        temperature=_number(body, _TEMPERATURE),
        max_tokens=_max_tokens(body),
        top_p=_number(body, _TOP_P),
        stop=_stop(body),
        stream=stream is True,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=response_format,
        n=n,
        options=options,
    )
    return ParsedChat(model.strip(), request, include_usage, user)
