"""Anthropic Messages API, both ways: the request body, the JSON answer and the event stream."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from mindroute.i18n import _l
from mindroute.providers.adapter import ProviderAdapter, join_url, sampling
from mindroute.providers.errors import UnsupportedMedia, UnsupportedParameter
from mindroute.providers.media import base64_of, base_mime, is_text_like, text_of
from mindroute.providers.registry import ProtocolSpec
from mindroute.providers.shapes import (
    Attachment,
    ChatMessage,
    ChatRequest,
    ChatResult,
    HttpCall,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from mindroute.providers.sse import SSEEvent, StreamItem, StreamTranslator, int_or_none, load_json

ANTHROPIC_VERSION = "2023-06-01"
# The API requires max_tokens; this is what we ask for when the caller set no limit.
DEFAULT_MAX_TOKENS = 1024
IMAGE_MIME_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
MODELS_PAGE_SIZE = 1000  # the largest page the model list accepts
# Structured outputs (output_format, and strict tools) are a beta, switched on per request by this header.
STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"
# reasoning_effort -> extended thinking's budget; "minimal" and "none" think not at all.
THINKING_BUDGETS: dict[str, int | None] = {"none": None, "minimal": None, "low": 1024, "medium": 2048, "high": 4096}
MIN_THINKING_BUDGET = 1024  # the API refuses a smaller budget
# max_tokens when reasoning_effort asks for thinking and the caller set no limit: the budget and room to answer.
THINKING_ANSWER_TOKENS = 1024
TOOL_CHOICE_TYPES = {"auto": "auto", "required": "any", "function": "tool", "none": "none"}

# Chat Completions fields (ChatRequest.options) that do not change the answer: not sent.
IGNORED_OPTIONS = frozenset({"metadata", "store", "prompt_cache_key", "safety_identifier", "stream_options"})
IGNORED_SERVICE_TIERS = ("auto", "default")
# Fields Anthropic has no equivalent for, refused whatever their value (null is "not set").
REFUSED_OPTIONS = frozenset(
    {"audio", "prediction", "verbosity", "web_search_options", "functions", "function_call", "seed"}
)

# Anthropic's error types, for errors that arrive as a stream event (no HTTP status to go by).
ERROR_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
TOOL_ID_MAX_CHARS = 64
_NOT_IN_TOOL_ID = re.compile(r"[^a-zA-Z0-9_-]")


def tool_id(call_id: str) -> str:
    """A tool call id as Anthropic accepts it ([a-zA-Z0-9_-]+, kept short): an id from another protocol (a
    Gemini 3 id carries its thought signature, base64 with + / =) becomes its valid start and a digest of the
    whole, the same in the tool_use block and in the tool_result that answers it, so the two still match."""
    if len(call_id) <= TOOL_ID_MAX_CHARS and _TOOL_ID.fullmatch(call_id):
        return call_id
    start = _NOT_IN_TOOL_ID.sub("_", call_id[:32])
    return f"{start}_{hashlib.sha256(call_id.encode()).hexdigest()[:24]}"


def messages_url(endpoint: str) -> str:
    """{endpoint}/v1/messages, also when the admin typed the endpoint with /v1."""
    return join_url(endpoint, "messages", "v1")


def _usage(usage: Any) -> tuple[int | None, int | None]:
    """(input, output). Input includes cache reads and writes, which Anthropic counts apart but bills."""
    if not isinstance(usage, dict):
        return None, None
    parts = [
        int_or_none(usage.get(name))
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    prompt = sum(part for part in parts if part is not None) if parts[0] is not None else None
    return prompt, int_or_none(usage.get("output_tokens"))


def _refuse_unless(ok: bool, param: str, message: str) -> None:
    if not ok:
        raise UnsupportedParameter(message, param)


def _continues_tool_use(messages: list[ChatMessage]) -> bool:
    """True when the last user turn holds tool results: the model is mid-turn, answering them."""
    for message in reversed(messages):
        if message.role == "tool":
            return True
        if message.role == "assistant":
            return False
    return False


def _refuse_thinking_conflicts(body: dict[str, Any]) -> None:
    """What extended thinking cannot be combined with, refused before the call rather than by the API."""
    why = "cannot be combined with reasoning_effort (extended thinking) on the Anthropic protocol"
    choice = (body.get("tool_choice") or {}).get("type")
    if choice in ("any", "tool"):
        raise UnsupportedParameter(f"a tool_choice that forces a tool call {why}", "tool_choice")
    if body.get("temperature", 1) != 1:
        raise UnsupportedParameter(f"temperature other than 1 {why}", "temperature")
    if "top_k" in body:
        raise UnsupportedParameter(f"top_k {why}", "top_k")
    if not 0.95 <= body.get("top_p", 1) <= 1:
        raise UnsupportedParameter(f"top_p below 0.95 {why}", "top_p")


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A message's content as a list of blocks, for merging two turns into one."""
    if isinstance(content, list):
        return content
    return [{"type": "text", "text": content}] if content else []


def _tool_use(call: ToolCall, index: int, position: int) -> dict[str, Any]:
    """An assistant's tool call as a tool_use block: Anthropic takes the arguments as an object, not JSON text."""
    param = f"messages[{index}].tool_calls[{position}].function.arguments"
    try:
        arguments = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        raise UnsupportedParameter(f"{param} is not valid JSON", param) from None
    if not isinstance(arguments, Mapping):
        raise UnsupportedParameter(f"{param} must be a JSON object for the Anthropic protocol", param)
    return {"type": "tool_use", "id": tool_id(call.id), "name": call.name, "input": arguments}


class AnthropicAdapter(ProviderAdapter):
    protocol = "anthropic"
    key_required = True

    # -- request in --

    def build_call(self, request: ChatRequest, endpoint: str, api_key: str | None, *, stream: bool) -> HttpCall:
        """The Messages request; raises UnsupportedParameter, before any call, for a field Anthropic cannot carry."""
        if request.n is not None and request.n > 1:
            raise UnsupportedParameter("n > 1 is not supported by the Anthropic protocol (one answer per call)", "n")
        system = "\n\n".join(m.text for m in request.messages if m.role == "system" and m.text)
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
            "messages": self._messages(request.messages),
        }
        if system:
            body["system"] = system
        body |= sampling(request, temperature="temperature", max_tokens=None, top_p="top_p", stop="stop_sequences")
        body |= self._tools(request)
        headers = self.request_headers(api_key, stream=stream)
        output_format = self._output_format(request)
        if output_format is not None:
            body["output_format"] = output_format
        if output_format is not None or any(tool.get("strict") for tool in body.get("tools", ())):
            headers["anthropic-beta"] = STRUCTURED_OUTPUTS_BETA
        body |= self._options(request, body["max_tokens"])
        if "thinking" in body:
            if _continues_tool_use(request.messages):
                # The turn's thinking block is not in the history (Chat Completions has no place for it), and
                # the API refuses a thinking request whose tool-use turn lacks it; after tool results the model
                # thinks no more anyway, so this step goes without.
                del body["thinking"]
            else:
                _refuse_thinking_conflicts(body)
        if stream:
            body["stream"] = True
        return HttpCall(url=messages_url(endpoint), headers=headers, body=body)

    # -- tools and structured output --

    def _tools(self, request: ChatRequest) -> dict[str, Any]:
        if not request.tools:
            return {}  # tool_choice without tools is refused by the API, and means nothing
        fields: dict[str, Any] = {"tools": [self._tool(spec) for spec in request.tools]}
        choice = self._tool_choice(request.tool_choice)
        if request.parallel_tool_calls is False and choice.get("type") != "none":
            choice = (choice or {"type": "auto"}) | {"disable_parallel_tool_use": True}
        if choice:
            fields["tool_choice"] = choice
        return fields

    @staticmethod
    def _tool(spec: ToolSpec) -> dict[str, Any]:
        tool: dict[str, Any] = {"name": spec.name}
        if spec.description:
            tool["description"] = spec.description
        tool["input_schema"] = dict(spec.parameters) if spec.parameters else {"type": "object", "properties": {}}
        if spec.strict:  # arguments that match the schema: strict tool use, part of the structured-outputs beta
            tool["strict"] = True
        return tool

    @staticmethod
    def _tool_choice(choice: ToolChoice | None) -> dict[str, Any]:
        if choice is None:
            return {}
        if choice.mode == "function":
            return {"type": "tool", "name": choice.name or ""}
        return {"type": TOOL_CHOICE_TYPES[choice.mode]}

    @staticmethod
    def _output_format(request: ChatRequest) -> dict[str, Any] | None:
        response_format = request.response_format
        if response_format is None or response_format.type == "text":
            return None
        if response_format.type == "json_object":
            raise UnsupportedParameter(
                "response_format json_object is not supported by the Anthropic protocol: Anthropic needs a json_schema",
                "response_format",
            )
        if not response_format.schema:
            raise UnsupportedParameter(
                "response_format json_schema without a schema is not supported by the Anthropic protocol",
                "response_format.json_schema.schema",
            )
        return {"type": "json_schema", "schema": dict(response_format.schema)}

    # -- every other Chat Completions field --

    def _options(self, request: ChatRequest, max_tokens: int) -> dict[str, Any]:
        """The `options` Anthropic has an equivalent for, translated; the ones that would change the answer
        and have none are refused, the ones that would not are left out."""
        fields: dict[str, Any] = {}
        for name, value in request.options.items():
            if value is None or name in IGNORED_OPTIONS:
                continue
            if name == "user":
                fields["metadata"] = {"user_id": str(value)}
            elif name == "top_k":
                fields["top_k"] = value
            elif name == "reasoning_effort":
                fields |= self._thinking(value, request.max_tokens, max_tokens)
            elif name in ("presence_penalty", "frequency_penalty"):
                _refuse_unless(not value, name, f"{name} is not supported by the Anthropic protocol (only 0)")
            elif name == "logit_bias":
                _refuse_unless(not value, name, "logit_bias is not supported by the Anthropic protocol")
            elif name == "logprobs":
                _refuse_unless(not value, name, "logprobs is not supported by the Anthropic protocol")
            elif name == "top_logprobs":
                _refuse_unless(not value, name, "top_logprobs is not supported by the Anthropic protocol")
            elif name == "service_tier":
                _refuse_unless(
                    value in IGNORED_SERVICE_TIERS,
                    name,
                    f"service_tier {value!r} is not supported by the Anthropic protocol (only auto or default)",
                )
            elif name == "modalities":
                _refuse_unless(
                    value == ["text"], name, "modalities other than text are not supported by the Anthropic protocol"
                )
            elif name in REFUSED_OPTIONS:
                raise UnsupportedParameter(f"{name} is not supported by the Anthropic protocol", name)
            else:
                raise UnsupportedParameter(f"{name} is not a field the Anthropic protocol has", name)
        return fields

    @staticmethod
    def _thinking(effort: object, asked_max_tokens: int | None, max_tokens: int) -> dict[str, Any]:
        """Extended thinking for reasoning_effort. The budget counts inside max_tokens (as OpenAI's reasoning
        tokens count inside max_completion_tokens): with no limit set, max_tokens becomes the budget plus room to
        answer; under a limit the caller set, the budget shrinks to fit, down to the API's minimum."""
        if not isinstance(effort, str) or effort not in THINKING_BUDGETS:
            raise UnsupportedParameter(
                f"reasoning_effort {effort!r} is not supported by the Anthropic protocol "
                "(none, minimal, low, medium or high)",
                "reasoning_effort",
            )
        budget = THINKING_BUDGETS[effort]
        if budget is None:
            return {}
        if asked_max_tokens is None:
            return {
                "max_tokens": budget + THINKING_ANSWER_TOKENS,
                "thinking": {"type": "enabled", "budget_tokens": budget},
            }
        budget = min(budget, max_tokens - 1)
        if budget < MIN_THINKING_BUDGET:
            raise UnsupportedParameter(
                f"reasoning_effort {effort!r} needs max_tokens above {MIN_THINKING_BUDGET} with the Anthropic protocol "
                f"(thinking takes at least {MIN_THINKING_BUDGET} tokens of it)",
                "max_tokens",
            )
        return {"thinking": {"type": "enabled", "budget_tokens": budget}}

    # -- messages --

    def _messages(self, messages: list[ChatMessage]) -> list[dict[str, Any]]:
        """Anthropic's turns: tool results go in a user turn, and consecutive turns of one role become one
        (the API wants roles to alternate, and all of a turn's tool results in the next user message)."""
        turns: list[dict[str, Any]] = []
        for index, message in enumerate(messages):
            if message.role == "system":
                continue
            role = "user" if message.role == "tool" else message.role
            content = self._content(message, index)
            if turns and turns[-1]["role"] == role:
                previous = turns[-1]
                previous["content"] = _blocks(previous["content"]) + _blocks(content)
            else:
                turns.append({"role": role, "content": content})
        return turns

    def _content(self, message: ChatMessage, index: int) -> str | list[dict[str, Any]]:
        if message.role == "tool":
            if not message.tool_call_id:
                raise UnsupportedParameter(
                    f"messages[{index}] is a tool result without a tool_call_id", f"messages[{index}].tool_call_id"
                )
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(message.tool_call_id)}
            if message.text:
                result["content"] = message.text
            return [result]
        parts = message.content()
        if not message.tool_calls and all(isinstance(part, str) for part in parts):
            return message.text
        blocks = [{"type": "text", "text": part} if isinstance(part, str) else self._block(part) for part in parts]
        blocks += [_tool_use(call, index, j) for j, call in enumerate(message.tool_calls)]
        return blocks

    def _block(self, attachment: Attachment) -> dict[str, Any]:
        mime = base_mime(attachment.mime_type)
        if attachment.effective_kind == "video":
            raise UnsupportedMedia(_l("Anthropic's Messages API cannot take videos ({name})", name=attachment.label))
        if attachment.effective_kind == "image":
            if mime not in IMAGE_MIME_TYPES:
                raise UnsupportedMedia(_l("Anthropic takes JPEG, PNG, GIF or WebP images, not {mime}", mime=mime))
            return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": base64_of(attachment)}}
        if mime == "application/pdf":
            block: dict[str, Any] = {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": base64_of(attachment)},
            }
        elif is_text_like(mime):
            block = {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": text_of(attachment)},
            }
        else:
            raise UnsupportedMedia(
                _l("Anthropic takes PDF and text files, not {mime} ({name})", mime=mime, name=attachment.label)
            )
        if attachment.filename:
            block["title"] = attachment.filename
        return block

    # -- response out --

    def parse_response(self, body: Any, request: ChatRequest) -> ChatResult:
        # Thinking blocks are not answer text; tool_use blocks are the calls, their input back to JSON text.
        text = "".join(
            block["text"]
            for block in body["content"]
            if block.get("type") == "text" and isinstance(block.get("text"), str)
        )
        calls = tuple(
            ToolCall(block["id"], block["name"], json.dumps(block.get("input") or {}))
            for block in body["content"]
            if block.get("type") == "tool_use"
        )
        usage = body.get("usage")
        prompt, completion = _usage(usage)
        reported = prompt is not None or completion is not None
        return ChatResult(
            text=text,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion if prompt is not None and completion is not None else None,
            usage_reported=reported,
            finish_reason=body.get("stop_reason"),
            model=body.get("model") or request.model,
            raw=body,
            tool_calls=calls,
        )

    # -- the model list: GET {endpoint}/v1/models, paged by has_more / last_id -> after_id --

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"anthropic-version": ANTHROPIC_VERSION, "x-api-key": api_key or ""}

    def models_url(self, endpoint: str) -> str:
        return join_url(endpoint, "models", "v1")

    def models_first_query(self) -> dict[str, str]:
        return {"limit": str(MODELS_PAGE_SIZE)}

    def models_page(self, body: Any) -> tuple[list[str], dict[str, str] | None]:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ValueError("no data list")
        ids = [item["id"] for item in body["data"] if isinstance(item, dict) and isinstance(item.get("id"), str)]
        more = body.get("has_more") is True and isinstance(body.get("last_id"), str)
        return ids, ({"after_id": body["last_id"]} if more else None)

    def stream_translator(self, request: ChatRequest) -> StreamTranslator:
        return AnthropicStreamTranslator(self, request.model)


class AnthropicStreamTranslator(StreamTranslator):
    """message_start (input tokens), content_block_* (text and tool calls), message_delta (output tokens),
    message_stop. A tool_use block's `index` counts every block; its position counts tool_use blocks only."""

    def __init__(self, adapter: AnthropicAdapter, model: str) -> None:
        super().__init__(model)
        self._adapter = adapter
        self._positions: dict[int, int] = {}  # content block index -> tool call position
        self._with_input: set[int] = set()  # positions that got some argument text

    def feed(self, event: SSEEvent) -> list[StreamItem]:
        if self.done:
            return []
        payload = load_json(event.data, "stream event")
        kind = payload.get("type") or event.event
        if kind == "message_start":
            message = payload["message"]
            if isinstance(message.get("model"), str):
                self.model = message["model"]
            prompt, completion = _usage(message.get("usage"))
            if prompt is not None or completion is not None:
                self.set_usage(prompt, completion)
        elif kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") == "tool_use":
                return self._tool_start(payload["index"], block)
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta":  # thinking deltas are not answer text
                return self.text_chunk(delta.get("text"))
            if delta.get("type") == "input_json_delta":
                return self._tool_arguments(payload["index"], delta.get("partial_json"))
        elif kind == "content_block_stop":
            position = self._positions.get(payload.get("index"))
            if position is not None and position not in self._with_input:
                # A call without arguments streams no input at all: its arguments are an empty object.
                self._with_input.add(position)
                return self.tool_delta(position, arguments="{}")
        elif kind == "message_delta":
            stop_reason = (payload.get("delta") or {}).get("stop_reason")
            if stop_reason:
                self.finish_reason = stop_reason
            # Counts here are cumulative: the output count replaces the one from message_start.
            prompt, completion = _usage(payload.get("usage"))
            if prompt is not None or completion is not None:
                self.set_usage(prompt, completion)
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            error_type = (payload.get("error") or {}).get("type")
            raise self._adapter.error_from_event(payload, ERROR_TYPE_STATUS.get(error_type, 500))
        # ping, other blocks and event types added later carry no answer.
        return []

    def _tool_start(self, index: int, block: dict[str, Any]) -> list[StreamItem]:
        position = self._positions.setdefault(index, len(self._positions))
        given = block.get("input")
        arguments = json.dumps(given) if isinstance(given, dict) and given else ""
        if arguments:
            self._with_input.add(position)
        return self.tool_delta(position, block["id"], block["name"], arguments)

    def _tool_arguments(self, index: int, fragment: object) -> list[StreamItem]:
        position = self._positions.get(index)
        if position is None or not isinstance(fragment, str) or not fragment:
            return []  # Anthropic opens a call's input with an empty fragment: nothing to hand on
        self._with_input.add(position)
        return self.tool_delta(position, arguments=fragment)


def register_protocols(register: Callable[[ProtocolSpec], None]) -> None:
    register(
        ProtocolSpec(
            name="anthropic",
            label="Anthropic",
            default_endpoint="https://api.anthropic.com",
            adapter=AnthropicAdapter(),
            official_provider="Anthropic",
        )
    )
