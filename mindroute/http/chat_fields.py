"""The table of OpenAI's Chat Completions request fields: name, JSON type, constraints and meaning.

REQUEST_FIELDS is the one description of what a request may hold: the parser (mindroute.http.chat_request)
reads its constraints, and the OpenAPI document (mindroute.http.openapi) is generated from it, so the two
cannot drift apart. Fields marked `option` land in ChatRequest.options by their OpenAI names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mindroute.config import DEFAULT_API_MAX_MESSAGES

# The roles a message may have, and MindRoute's role for each.
MESSAGE_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
# Fields OpenAI defines that MindRoute refuses (to anything but null): deprecated, with a replacement.
REFUSED_FIELDS = ("functions", "function_call")
REFUSED_REPLACEMENTS = {"functions": "tools", "function_call": "tool_choice"}
# A function's name (tools, tool_choice, response_format.json_schema.name), as OpenAI checks it.
NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
IMAGE_DETAILS = ("auto", "low", "high")


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
    items: str | RequestField | None = None  # an array's items: a JSON type, or a field describing them
    const: Any = None  # the only value accepted
    properties: tuple[RequestField, ...] = ()  # an object's own fields
    enum: tuple[Any, ...] | None = None  # the values accepted (for the field's string type, when several)
    pattern: str | None = None  # a string's regular expression
    max_length: int | None = None  # a string's most characters
    max_properties: int | None = None  # an object's most keys
    values: RequestField | None = None  # an object with free keys: what each value is
    option: bool = False  # lands in ChatRequest.options, checked from this entry


def _f(name: str, json_type: str | tuple[str, ...], description: str, **constraints: Any) -> RequestField:
    return RequestField(name, json_type, description, **constraints)


def _opt(name: str, json_type: str | tuple[str, ...], description: str, **constraints: Any) -> RequestField:
    return RequestField(name, json_type, description, option=True, **constraints)


_TOOL_CALL = _f(
    "tool_call",
    "object",
    "A function call the model made",
    properties=(
        _f("id", "string", "The call's id, which the tool message answering it names", required=True),
        _f("type", "string", "Always function", const="function", required=True),
        _f(
            "function",
            "object",
            "The function and its arguments",
            required=True,
            properties=(
                _f("name", "string", "The function's name", required=True),
                _f("arguments", "string", "The arguments, a JSON text as the model wrote it", required=True),
            ),
        ),
    ),
)
_MESSAGE = _f(
    "message",
    "object",
    "A message. system/developer and assistant content: a string or text parts (assistant: refusal parts "
    "too; null when tool_calls is given); user content: a string or parts (text, image_url with a base64 "
    "data URL and an optional detail auto/low/high, file with file_data as a base64 data URL); tool "
    "content: a string or text parts, answering the call tool_call_id of an earlier assistant message",
    properties=(
        _f("role", "string", "Who wrote it (developer is system)", required=True, enum=tuple(MESSAGE_ROLES)),
        _f("content", ("string", "array", "null"), "The text, or the parts in order", items="object"),
        _f("name", "string", "The participant's name"),
        _f("tool_calls", "array", "An assistant message's function calls", min_items=1, items=_TOOL_CALL),
        _f("tool_call_id", "string", "A tool message: the id of the call it answers"),
    ),
)
_TOOL = _f(
    "tool",
    "object",
    "A function the model may call",
    properties=(
        _f("type", "string", "Only function tools", const="function", required=True),
        _f(
            "function",
            "object",
            "The function",
            required=True,
            properties=(
                _f("name", "string", "Its name, unique among the tools", required=True, pattern=NAME_PATTERN),
                _f("description", "string", "What it does, for the model"),
                _f("parameters", "object", "Its arguments, as a JSON Schema object; absent: no arguments"),
                _f("strict", "boolean", "Whether the arguments must follow the schema exactly"),
            ),
        ),
    ),
)

REQUEST_FIELDS: tuple[RequestField, ...] = (
    _f("model", "string", "<provider name>/<model>, or a bare model", required=True),
    _f(
        "messages",
        "array",
        "The conversation: objects with a role (" + ", ".join(MESSAGE_ROLES) + ") and a content, a string or "
        "a list of parts kept in their order (text; image_url and file as base64 data URLs, in user messages); "
        f"at most MINDROUTE_API_MAX_MESSAGES (default {DEFAULT_API_MAX_MESSAGES:,}) messages",
        required=True,
        min_items=1,
        items=_MESSAGE,
    ),
    _f("stream", "boolean", "Answer with chat.completion.chunk events (SSE) ending with data: [DONE]"),
    _f(
        "stream_options",
        "object",
        "Options of a streamed answer (only with stream true)",
        properties=(_f("include_usage", "boolean", "A last chunk with the call's usage"),),
    ),
    _f("max_tokens", "integer", "The most tokens to generate (max_completion_tokens wins)", minimum=1),
    _f("max_completion_tokens", "integer", "The most tokens to generate", minimum=1),
    _f("temperature", "number", "Sampling temperature", minimum=0, maximum=2),
    _f("top_p", "number", "Nucleus sampling", minimum=0, maximum=1),
    _f("stop", ("string", "array"), "Where the answer stops", max_items=4, items="string"),
    _f("tools", "array", "Functions the model may call", min_items=1, max_items=128, items=_TOOL),
    _f(
        "tool_choice",
        ("string", "object"),
        "none, auto (the default with tools), required (some call), or one function by name; only with tools "
        "(none and auto are accepted without them and change nothing)",
        enum=("none", "auto", "required"),
        properties=(
            _f("type", "string", "Always function", const="function", required=True),
            _f(
                "function",
                "object",
                "The function to call",
                required=True,
                properties=(_f("name", "string", "One of the tools' names", required=True),),
            ),
        ),
    ),
    _f("parallel_tool_calls", "boolean", "Whether the model may call several functions in one answer"),
    _f(
        "response_format",
        "object",
        "The answer's form: text, json_object (any JSON object) or json_schema (JSON matching a schema)",
        properties=(
            _f(
                "type",
                "string",
                "text, json_object or json_schema",
                required=True,
                enum=("text", "json_object", "json_schema"),
            ),
            _f(
                "json_schema",
                "object",
                "With type json_schema: the schema the answer must match",
                properties=(
                    _f("name", "string", "The schema's name", required=True, pattern=NAME_PATTERN),
                    _f("description", "string", "What the answer is, for the model"),
                    _f("schema", "object", "A JSON Schema object"),
                    _f("strict", "boolean", "Whether the answer must follow the schema exactly"),
                ),
            ),
        ),
    ),
    _f("n", "integer", "How many choices to generate", minimum=1, maximum=128),
    # A signed 64-bit integer, as OpenAI and vLLM take it: one past either end is their 400 naming seed.
    _opt(
        "seed", "integer", "Sample deterministically, as far as the provider can", minimum=-(2**63), maximum=2**63 - 1
    ),
    _opt("presence_penalty", "number", "Penalise tokens already present", minimum=-2, maximum=2),
    _opt("frequency_penalty", "number", "Penalise tokens by their frequency so far", minimum=-2, maximum=2),
    _opt(
        "logit_bias",
        "object",
        "Token ids (as strings) to a bias between -100 and 100",
        max_properties=300,
        values=_f("bias", "number", "The bias", minimum=-100, maximum=100),
    ),
    _opt("logprobs", "boolean", "Return the log probabilities of the answer's tokens"),
    _opt(
        "top_logprobs",
        "integer",
        "How many most likely tokens to return at each place (needs logprobs true)",
        minimum=0,
        maximum=20,
    ),
    _opt(
        "reasoning_effort",
        "string",
        "How much a reasoning model thinks",
        enum=("none", "minimal", "low", "medium", "high", "xhigh"),
    ),
    _opt(
        "metadata",
        "object",
        "Your own tags (at most 16; keys up to 64 characters, values up to 512)",
        max_properties=16,
        values=_f("value", "string", "A tag's value", max_length=512),
    ),
    _opt(
        "service_tier",
        "string",
        "The provider's processing tier",
        enum=("auto", "default", "flex", "scale", "priority"),
    ),
    _opt("store", "boolean", "Whether the provider keeps the answer"),
    _opt(
        "modalities",
        "array",
        "The answer's modalities",
        items=_f("modality", "string", "A modality", enum=("text", "audio")),
    ),
    _opt("audio", "object", "Audio output parameters"),
    _opt("prediction", "object", "Predicted output content"),
    _opt("verbosity", "string", "How long the answer is", enum=("low", "medium", "high")),
    _opt("web_search_options", "object", "Web search options"),
    _opt("prompt_cache_key", "string", "A key for the provider's prompt cache"),
    _opt("safety_identifier", "string", "A stable id of the end user, for the provider's abuse checks"),
    _opt("user", "string", "Your own id for the end user, kept with the call's Logs row"),
    _opt("top_k", "integer", "Sample from the k most likely tokens (an extension: not OpenAI's)", minimum=-1),
)
