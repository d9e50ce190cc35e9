"""Anthropic Messages API, both ways: the request body, the JSON answer and the event stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mindroute.providers.adapter import ProviderAdapter, join_url, sampling
from mindroute.providers.errors import UnsupportedMedia
from mindroute.providers.media import base64_of, base_mime, is_text_like, text_of
from mindroute.providers.registry import ProtocolSpec
from mindroute.providers.shapes import Attachment, ChatMessage, ChatRequest, ChatResult, HttpCall, StreamChunk
from mindroute.providers.sse import SSEEvent, StreamTranslator, int_or_none, load_json

ANTHROPIC_VERSION = "2023-06-01"
# The API requires max_tokens; this is what we ask for when the caller set no limit.
DEFAULT_MAX_TOKENS = 1024
IMAGE_MIME_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
MODELS_PAGE_SIZE = 1000  # the largest page the model list accepts

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


class AnthropicAdapter(ProviderAdapter):
    protocol = "anthropic"
    key_required = True

    # -- request in --

    def build_call(self, request: ChatRequest, endpoint: str, api_key: str | None, *, stream: bool) -> HttpCall:
        system = "\n\n".join(m.text for m in request.messages if m.role == "system" and m.text)
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
            "messages": [self._message(m) for m in request.messages if m.role != "system"],
        }
        if system:
            body["system"] = system
        body |= sampling(request, temperature="temperature", max_tokens=None, top_p="top_p", stop="stop_sequences")
        if stream:
            body["stream"] = True
        return HttpCall(url=messages_url(endpoint), headers=self.request_headers(api_key, stream=stream), body=body)

    def _message(self, message: ChatMessage) -> dict[str, Any]:
        if not message.attachments:
            return {"role": message.role, "content": message.text}
        # Anthropic advises images and documents before the question about them.
        blocks = [self._block(attachment) for attachment in message.attachments]
        if message.text:  # an empty text block is refused
            blocks.append({"type": "text", "text": message.text})
        return {"role": message.role, "content": blocks}

    def _block(self, attachment: Attachment) -> dict[str, Any]:
        mime = base_mime(attachment.mime_type)
        if attachment.effective_kind == "video":
            raise UnsupportedMedia(f"Anthropic's Messages API cannot take videos ({attachment.label})")
        if attachment.effective_kind == "image":
            if mime not in IMAGE_MIME_TYPES:
                raise UnsupportedMedia(f"Anthropic takes JPEG, PNG, GIF or WebP images, not {mime}")
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
            raise UnsupportedMedia(f"Anthropic takes PDF and text files, not {mime} ({attachment.label})")
        if attachment.filename:
            block["title"] = attachment.filename
        return block

    # -- response out --

    def parse_response(self, body: Any, request: ChatRequest) -> ChatResult:
        text = "".join(
            block["text"]
            for block in body["content"]
            if block.get("type") == "text" and isinstance(block.get("text"), str)
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
    """message_start (input tokens), content_block_* (text), message_delta (output tokens), message_stop."""

    def __init__(self, adapter: AnthropicAdapter, model: str) -> None:
        super().__init__(model)
        self._adapter = adapter

    def feed(self, event: SSEEvent) -> list[StreamChunk]:
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
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta":  # thinking and tool-input deltas are not answer text
                return self.text_chunk(delta.get("text"))
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
        # ping, content_block_start/stop and event types added later carry no answer text.
        return []


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
