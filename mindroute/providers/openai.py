"""OpenAI Chat Completions, both ways, and its model list: OpenAI itself and every openai-compatible server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mindroute.providers.adapter import ProviderAdapter, sampling
from mindroute.providers.errors import UnsupportedMedia
from mindroute.providers.media import base_mime, data_url, inlined_text, is_text_like
from mindroute.providers.registry import ProtocolSpec
from mindroute.providers.shapes import Attachment, ChatMessage, ChatRequest, ChatResult, HttpCall, StreamChunk
from mindroute.providers.sse import SSEEvent, StreamTranslator, int_or_none, load_json

# What Chat Completions documents for image_url parts (GIFs must not be animated, which we cannot check).
IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# Sent as a `file` part; everything else that is not text or an image is refused here.
FILE_PART_MIME_TYPES = ("application/pdf",)


def chat_completions_url(endpoint: str) -> str:
    """{endpoint}/chat/completions: the endpoint already carries the version (…/v1), as OpenAI's SDK expects."""
    return endpoint.rstrip("/") + "/chat/completions"


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
        body |= sampling(
            request,
            temperature="temperature",
            # OpenAI's reasoning models refuse max_tokens; compatible servers mostly know only max_tokens.
            max_tokens="max_completion_tokens" if self.protocol == "openai" else "max_tokens",
            top_p="top_p",
            stop="stop",
        )
        if stream:
            body["stream"] = True
            # Without this the stream carries no token counts at all.
            body["stream_options"] = {"include_usage": True}
        return HttpCall(
            url=chat_completions_url(endpoint), headers=self.request_headers(api_key, stream=stream), body=body
        )

    def _message(self, message: ChatMessage) -> dict[str, Any]:
        if not message.attachments:
            # A plain string is what every compatible server understands; content parts are newer.
            return {"role": message.role, "content": message.text}
        parts = [self._part(attachment) for attachment in message.attachments]
        if message.text:
            parts.append({"type": "text", "text": message.text})
        return {"role": message.role, "content": parts}

    def _part(self, attachment: Attachment) -> dict[str, Any]:
        mime = base_mime(attachment.mime_type)
        if attachment.effective_kind == "video":
            raise UnsupportedMedia(f"Chat Completions cannot take videos ({attachment.label})")
        if attachment.effective_kind == "image":
            if mime not in IMAGE_MIME_TYPES:
                raise UnsupportedMedia(f"Chat Completions takes PNG, JPEG, GIF or WebP images, not {mime}")
            return {"type": "image_url", "image_url": {"url": data_url(attachment)}}
        if mime in FILE_PART_MIME_TYPES:
            return {
                "type": "file",
                "file": {"filename": attachment.filename or "document.pdf", "file_data": data_url(attachment)},
            }
        if is_text_like(mime):
            # Chat Completions has no text-file part: the text itself goes in, with the file's name.
            return {"type": "text", "text": inlined_text(attachment)}
        raise UnsupportedMedia(f"Chat Completions takes PDF and text files, not {mime} ({attachment.label})")

    # -- response out --

    def parse_response(self, body: Any, request: ChatRequest) -> ChatResult:
        choice = body["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content")
        if not isinstance(text, str):
            # A refusal comes as its own field with content null.
            text = message.get("refusal") if isinstance(message.get("refusal"), str) else ""
        usage = _usage(body.get("usage"))
        prompt, completion, total = usage or (None, None, None)
        if total is None and prompt is not None and completion is not None:
            total = prompt + completion
        return ChatResult(
            text=text,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            usage_reported=usage is not None,
            finish_reason=choice.get("finish_reason"),
            model=body.get("model") or request.model,
            raw=body,
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

    def feed(self, event: SSEEvent) -> list[StreamChunk]:
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
        chunks: list[StreamChunk] = []
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:  # we ask for one answer; n > 1 is not ours
                continue
            delta = choice.get("delta") or {}
            chunks += self.text_chunk(delta.get("content"))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        usage = _usage(chunk.get("usage"))
        if usage is not None:
            self.set_usage(*usage)
        return chunks

    def is_complete(self) -> bool:
        # Some compatible servers end after the finish_reason without [DONE]; that answer is whole.
        return self.done or self.finish_reason is not None


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
