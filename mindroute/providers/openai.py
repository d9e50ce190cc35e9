"""OpenAI Chat Completions, both ways, and its model list: OpenAI itself and every openai-compatible server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mindroute.i18n import _l
from mindroute.providers.adapter import ProviderAdapter, sampling
from mindroute.providers.errors import UnsupportedMedia
from mindroute.providers.media import base_mime, data_url, inlined_text, is_text_like
from mindroute.providers.registry import ProtocolSpec
from mindroute.providers.shapes import (
    Attachment,
    ChatMessage,
    ChatRequest,
    ChatResult,
    Choice,
    HttpCall,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from mindroute.providers.sse import SSEEvent, StreamItem, StreamTranslator, int_or_none, load_json

# What Chat Completions documents for image_url parts (GIFs must not be animated, which we cannot check).
IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# Sent as a `file` part; everything else that is not text or an image is refused here.
FILE_PART_MIME_TYPES = ("application/pdf",)
# The request fields MindRoute itself sets: `request.options` never overrides them.
OWNED_FIELDS = frozenset({"model", "messages", "stream", "stream_options"})


def chat_completions_url(endpoint: str) -> str:
    """{endpoint}/chat/completions: the endpoint already carries the version (…/v1), as OpenAI's SDK expects."""
    return endpoint.rstrip("/") + "/chat/completions"


def tool_json(tool: ToolSpec) -> dict[str, Any]:
    """A tool as Chat Completions' `tools[]` item; unset keys are left out."""
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def tool_choice_json(choice: ToolChoice) -> str | dict[str, Any]:
    """The tool choice as Chat Completions has it: "auto", "none", "required", or the one function to call."""
    if choice.mode == "function":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def response_format_json(response_format: ResponseFormat) -> dict[str, Any]:
    """Chat Completions' `response_format`; a json_schema's unset keys are left out."""
    if response_format.type != "json_schema":
        return {"type": response_format.type}
    schema: dict[str, Any] = {}
    if response_format.name is not None:
        schema["name"] = response_format.name
    if response_format.description is not None:
        schema["description"] = response_format.description
    if response_format.schema is not None:
        schema["schema"] = response_format.schema
    if response_format.strict is not None:
        schema["strict"] = response_format.strict
    return {"type": "json_schema", "json_schema": schema}


def tool_call_json(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _arguments(value: Any) -> str:
    # OpenAI sends JSON text; a few compatible servers send the object itself.
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value)


def _tool_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return ()
    found = []
    for call in calls:
        function = call.get("function") or {}
        found.append(
            ToolCall(str(call.get("id") or ""), str(function.get("name") or ""), _arguments(function.get("arguments")))
        )
    return tuple(found)


def _message_text(message: dict[str, Any]) -> str:
    text = message.get("content")
    if isinstance(text, str):
        return text
    # A refusal comes as its own field with content null; content null with tool calls is no text.
    refusal = message.get("refusal")
    return refusal if isinstance(refusal, str) else ""


def _choice_index(choice: dict[str, Any]) -> int:
    return int_or_none(choice.get("index")) or 0


def _usage(usage: Any) -> tuple[int | None, int | None, int | None] | None:
    if not isinstance(usage, dict):
        return None
    counts = (
        int_or_none(usage.get("prompt_tokens")),
        int_or_none(usage.get("completion_tokens")),
        int_or_none(usage.get("total_tokens")),
    )
    return counts if any(count is not None for count in counts) else None


class OpenAIAdapter(ProviderAdapter):
    """Chat Completions. `protocol` "openai" needs a key; an openai-compatible server (Ollama) may not."""

    def __init__(self, protocol: str = "openai") -> None:
        self.protocol = protocol
        self.key_required = protocol == "openai"

    # -- request in --

    def build_call(self, request: ChatRequest, endpoint: str, api_key: str | None, *, stream: bool) -> HttpCall:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [self._message(message) for message in request.messages],
        }
        # Every other field the caller set goes on as sent: compatible servers' own (top_k, min_p) too.
        body |= {name: value for name, value in request.options.items() if name not in OWNED_FIELDS}
        body |= sampling(
            request,
            temperature="temperature",
            # OpenAI's reasoning models refuse max_tokens; compatible servers mostly know only max_tokens.
            max_tokens="max_completion_tokens" if self.protocol == "openai" else "max_tokens",
            top_p="top_p",
            stop="stop",
        )
        if request.tools:
            body["tools"] = [tool_json(tool) for tool in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = tool_choice_json(request.tool_choice)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.response_format is not None:
            body["response_format"] = response_format_json(request.response_format)
        if request.n is not None:
            body["n"] = request.n
        if stream:
            body["stream"] = True
            # Without this the stream carries no token counts at all.
            body["stream_options"] = {"include_usage": True}
        return HttpCall(
            url=chat_completions_url(endpoint), headers=self.request_headers(api_key, stream=stream), body=body
        )

    def _message(self, message: ChatMessage) -> dict[str, Any]:
        content = message.content()
        entry: dict[str, Any] = {"role": message.role}
        if all(isinstance(part, str) for part in content):
            # A plain string is what every compatible server understands; content parts are newer.
            text = "\n".join(part for part in content if isinstance(part, str))
            # An assistant turn that only calls tools has content null, as OpenAI itself sends it.
            entry["content"] = None if message.tool_calls and not text else text
        else:
            entry["content"] = [
                {"type": "text", "text": part} if isinstance(part, str) else self._part(part) for part in content
            ]
        if message.name is not None and message.role != "tool":
            # A tool message's `name` (the function's, which Gemini needs) is not in Chat Completions' tool
            # message: the tool_call_id already names the call it answers.
            entry["name"] = message.name
        if message.tool_calls:
            entry["tool_calls"] = [tool_call_json(call) for call in message.tool_calls]
        if message.role == "tool" and message.tool_call_id is not None:
            entry["tool_call_id"] = message.tool_call_id
        return entry

    def _part(self, attachment: Attachment) -> dict[str, Any]:
        mime = base_mime(attachment.mime_type)
        if attachment.effective_kind == "video":
            raise UnsupportedMedia(_l("Chat Completions cannot take videos ({name})", name=attachment.label))
        if attachment.effective_kind == "image":
            if mime not in IMAGE_MIME_TYPES:
                raise UnsupportedMedia(
                    _l("Chat Completions takes PNG, JPEG, GIF or WebP images, not {mime}", mime=mime)
                )
            image: dict[str, Any] = {"url": data_url(attachment)}
            if attachment.detail is not None:
                image["detail"] = attachment.detail
            return {"type": "image_url", "image_url": image}
        if mime in FILE_PART_MIME_TYPES:
            return {
                "type": "file",
                "file": {"filename": attachment.filename or "document.pdf", "file_data": data_url(attachment)},
            }
        if is_text_like(mime):
            # Chat Completions has no text-file part: the text itself goes in, with the file's name.
            return {"type": "text", "text": inlined_text(attachment)}
        raise UnsupportedMedia(
            _l("Chat Completions takes PDF and text files, not {mime} ({name})", mime=mime, name=attachment.label)
        )

    # -- response out --

    def parse_response(self, body: Any, request: ChatRequest) -> ChatResult:
        choices = body["choices"]
        if len(choices) > 1:  # n > 1: in index order (one choice, the usual case, needs no sort)
            choices = sorted(choices, key=_choice_index)
        first = choices[0]
        message = first.get("message") or {}
        refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
        usage = _usage(body.get("usage"))
        prompt, completion, total = usage or (None, None, None)
        if total is None and prompt is not None and completion is not None:
            total = prompt + completion
        return ChatResult(
            text=_message_text(message),
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            usage_reported=usage is not None,
            finish_reason=first.get("finish_reason"),
            model=body.get("model") or request.model,
            raw=body,
            tool_calls=_tool_calls(message),
            other_choices=()
            if len(choices) == 1
            else tuple(
                Choice(
                    index=_choice_index(choice),
                    text=_message_text(choice.get("message") or {}),
                    tool_calls=_tool_calls(choice.get("message") or {}),
                    finish_reason=choice.get("finish_reason"),
                    logprobs=choice.get("logprobs"),
                )
                for choice in choices[1:]
            ),
            logprobs=first.get("logprobs"),
            refusal=refusal,
        )

    def stream_translator(self, request: ChatRequest) -> StreamTranslator:
        return OpenAIStreamTranslator(self, request.model)

    # -- the model list: GET {endpoint}/models, answered with {"data": [{"id": ...}]} --

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        # An openai-compatible server that needs no key (Ollama) gets no authorization header at all.
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def models_url(self, endpoint: str) -> str:
        return endpoint.rstrip("/") + "/models"

    def models_page(self, body: Any) -> tuple[list[str], dict[str, str] | None]:
        items = body.get("data") if isinstance(body, dict) else body  # a few compatible servers send a bare list
        if not isinstance(items, list):
            raise ValueError("no data list")
        return [item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)], None


class OpenAIStreamTranslator(StreamTranslator):
    """`data: {chunk}` events with choices[].delta.content, a usage-only chunk, then `data: [DONE]`."""

    def __init__(self, adapter: OpenAIAdapter, model: str) -> None:
        super().__init__(model)
        self._adapter = adapter

    def feed(self, event: SSEEvent) -> list[StreamItem]:
        if event.data.strip() == "[DONE]":
            self.done = True
            return []
        if self.done:
            return []
        chunk = load_json(event.data, "stream chunk")
        if "error" in chunk:
            raise self._adapter.error_from_event(chunk)
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        items: list[StreamItem] = []
        for choice in chunk.get("choices") or []:
            index = _choice_index(choice)
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if not isinstance(text, str) or not text:
                # A refusal streams as its own field; the whole answer's text is the refusal too.
                text = delta.get("refusal")
            items += self.text_chunk(text, index, choice.get("logprobs"))
            for position, piece in enumerate(delta.get("tool_calls") or []):
                function = piece.get("function") or {}
                items += self.tool_delta(
                    _piece_position(piece, position),
                    piece.get("id"),
                    function.get("name"),
                    _arguments(function.get("arguments")),
                    index,
                )
            self.choice_finished(index, choice.get("finish_reason"))
        usage = _usage(chunk.get("usage"))
        if usage is not None:
            self.set_usage(*usage)
        return items

    def is_complete(self) -> bool:
        # Some compatible servers end after the finish_reason without [DONE]; that answer is whole.
        return self.done or self.finish_reason is not None


def _piece_position(piece: dict[str, Any], default: int) -> int:
    index = int_or_none(piece.get("index"))
    return default if index is None else index


def register_protocols(register: Callable[[ProtocolSpec], None]) -> None:
    """OpenAI itself, and any server that speaks its Chat Completions (Ollama, vLLM, LM Studio...)."""
    register(
        ProtocolSpec(
            name="openai",
            label="OpenAI",
            default_endpoint="https://api.openai.com/v1",
            adapter=OpenAIAdapter("openai"),
            official_provider="OpenAI",
        )
    )
    register(
        ProtocolSpec(
            name="openai-compatible",
            label="OpenAI-compatible (Ollama, vLLM, LM Studio, OpenRouter…)",
            default_endpoint="http://localhost:11434/v1",  # Ollama's default
            adapter=OpenAIAdapter("openai-compatible"),
        )
    )
