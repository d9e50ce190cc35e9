"""Google Gemini generateContent and streamGenerateContent (SSE), both ways."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from mindroute.providers.adapter import ProviderAdapter, join_url, sampling
from mindroute.providers.errors import (
    AuthenticationError,
    ProviderError,
    UnsupportedMedia,
    error_class_for_status,
    parse_retry_after,
)
from mindroute.providers.media import base64_of, base_mime, inlined_text, is_text_like
from mindroute.providers.registry import ProtocolSpec
from mindroute.providers.shapes import Attachment, ChatMessage, ChatRequest, ChatResult, HttpCall, StreamChunk
from mindroute.providers.sse import SSEEvent, StreamTranslator, int_or_none, load_json

API_VERSION = "v1beta"  # the long-documented path; it has every field we send
ROLE_NAMES = {"user": "user", "assistant": "model"}
IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
# Sent as inline_data; other text types go in as text parts, which every Gemini model reads.
DOCUMENT_MIME_TYPES = ("application/pdf", "text/plain")
MODELS_PAGE_SIZE = 1000  # the largest page the model list accepts
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def model_url(endpoint: str, model: str, method: str) -> str:
    """{endpoint}/v1beta/models/{model}:{method}; a "models/" prefix on the id is tolerated."""
    model_id = quote(model.removeprefix("models/"), safe="-._~")
    return join_url(endpoint, f"models/{model_id}:{method}", API_VERSION)


def _usage(metadata: Any) -> tuple[int, int, int | None] | None:
    """(prompt, completion, total). Zero counts are left out of Gemini's JSON, so absent means 0.

    Completion includes thinking tokens, which Gemini counts apart and bills as output (as
    OpenAI's completion_tokens does).
    """
    if not isinstance(metadata, dict):
        return None
    prompt = int_or_none(metadata.get("promptTokenCount")) or 0
    completion = (int_or_none(metadata.get("candidatesTokenCount")) or 0) + (
        int_or_none(metadata.get("thoughtsTokenCount")) or 0
    )
    return prompt, completion, int_or_none(metadata.get("totalTokenCount"))


def _candidate_text(candidate: Any) -> str:
    parts = ((candidate or {}).get("content") or {}).get("parts") or []
    # Thought summaries are not the answer.
    return "".join(part["text"] for part in parts if isinstance(part.get("text"), str) and not part.get("thought"))


def _finish_reason(body: Any) -> str | None:
    candidates = body.get("candidates") or []
    if candidates and candidates[0].get("finishReason"):
        return candidates[0]["finishReason"]
    block = (body.get("promptFeedback") or {}).get("blockReason")
    return block if isinstance(block, str) else None  # the prompt itself was refused: SAFETY, OTHER...


class GoogleAdapter(ProviderAdapter):
    protocol = "google"
    key_required = True

    # -- request in --

    def build_call(self, request: ChatRequest, endpoint: str, api_key: str | None, *, stream: bool) -> HttpCall:
        body: dict[str, Any] = {
            "contents": [self._content(m) for m in request.messages if m.role != "system"],
        }
        system = "\n\n".join(m.text for m in request.messages if m.role == "system" and m.text)
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config = sampling(
            request, temperature="temperature", max_tokens="maxOutputTokens", top_p="topP", stop="stopSequences"
        )
        if config:
            body["generationConfig"] = config
        url = model_url(endpoint, request.model, "streamGenerateContent" if stream else "generateContent")
        if stream:
            url += "?alt=sse"  # without it the stream is one long JSON array
        return HttpCall(url=url, headers=self.request_headers(api_key, stream=stream), body=body)

    def _content(self, message: ChatMessage) -> dict[str, Any]:
        parts = [self._part(attachment) for attachment in message.attachments]
        if message.text or not parts:
            parts.append({"text": message.text})
        return {"role": ROLE_NAMES[message.role], "parts": parts}

    def _part(self, attachment: Attachment) -> dict[str, Any]:
        mime = base_mime(attachment.mime_type)
        kind = attachment.effective_kind
        if kind == "image" and mime not in IMAGE_MIME_TYPES:
            raise UnsupportedMedia(f"Gemini takes PNG, JPEG, WebP, HEIC or HEIF images, not {mime}")
        if kind in ("image", "video") or mime in DOCUMENT_MIME_TYPES:
            return {"inline_data": {"mime_type": mime, "data": base64_of(attachment)}}
        if is_text_like(mime):
            return {"text": inlined_text(attachment)}
        raise UnsupportedMedia(f"Gemini takes PDF and text files, not {mime} ({attachment.label})")

    # -- response out --

    def parse_response(self, body: Any, request: ChatRequest) -> ChatResult:
        candidates = body.get("candidates") or []
        usage = _usage(body.get("usageMetadata"))
        prompt, completion, total = usage or (None, None, None)
        if usage is not None and total is None:
            total = prompt + completion
        return ChatResult(
            text=_candidate_text(candidates[0]) if candidates else "",
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            usage_reported=usage is not None,
            finish_reason=_finish_reason(body),
            model=body.get("modelVersion") or request.model,
            raw=body,
        )

    # -- the model list: GET {endpoint}/v1beta/models, paged by nextPageToken --

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        # In a header, never as ?key= in a URL that may be logged.
        return {"x-goog-api-key": api_key or ""}

    def models_url(self, endpoint: str) -> str:
        base = endpoint.rstrip("/")
        return f"{base}/models" if base.endswith(("/v1beta", "/v1")) else f"{base}/{API_VERSION}/models"

    def models_first_query(self) -> dict[str, str]:
        return {"pageSize": str(MODELS_PAGE_SIZE)}

    def models_page(self, body: Any) -> tuple[list[str], dict[str, str] | None]:
        """Names come as "models/gemini-2.0-flash" (the prefix is dropped); only models that can generate
        content are kept: embedding and retrieval models cannot answer a chat."""
        if not isinstance(body, dict):
            raise ValueError("not an object")
        items = body.get("models", [])  # an account with no models gets {} back
        if not isinstance(items, list):
            raise ValueError("no models list")
        names = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            methods = item.get("supportedGenerationMethods")
            if isinstance(methods, list) and "generateContent" not in methods:
                continue
            names.append(item["name"].removeprefix("models/"))
        token = body.get("nextPageToken")
        return names, ({"pageToken": token} if isinstance(token, str) and token else None)

    def stream_translator(self, request: ChatRequest) -> StreamTranslator:
        return GoogleStreamTranslator(self, request.model)

    # -- Gemini's error quirks --

    def error_class(self, status: int, error_type: str | None, body: Any) -> type[ProviderError]:
        # A wrong key is a 400 INVALID_ARGUMENT whose detail says API_KEY_INVALID.
        if status == 400 and "API_KEY_INVALID" in _detail_values(body, "reason"):
            return AuthenticationError
        return error_class_for_status(status)

    def retry_after(self, headers: Mapping[str, str], body: Any) -> float | None:
        from_header = parse_retry_after(headers)
        if from_header is not None:
            return from_header
        # A 429 says when to come back in a RetryInfo detail: {"retryDelay": "27s"}.
        for delay in _detail_values(body, "retryDelay"):
            match = _DURATION_RE.match(delay)
            if match:
                return float(match.group(1))
        return None


def _detail_values(body: Any, key: str) -> list[str]:
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return []
    return [d[key] for d in details if isinstance(d, dict) and isinstance(d.get(key), str)]


class GoogleStreamTranslator(StreamTranslator):
    """Each event is a whole GenerateContentResponse with the next piece of text; the last has finishReason."""

    def __init__(self, adapter: GoogleAdapter, model: str) -> None:
        super().__init__(model)
        self._adapter = adapter

    def feed(self, event: SSEEvent) -> list[StreamChunk]:
        payload = load_json(event.data, "stream chunk")
        if isinstance(payload, dict) and "error" in payload:
            raise self._adapter.error_from_event(payload)
        if isinstance(payload.get("modelVersion"), str):
            self.model = payload["modelVersion"]
        candidates = payload.get("candidates") or []
        chunks = self.text_chunk(_candidate_text(candidates[0])) if candidates else []
        finish_reason = _finish_reason(payload)
        if finish_reason:
            self.finish_reason = finish_reason
            self.done = True
        usage = _usage(payload.get("usageMetadata"))
        if usage is not None:
            # Each chunk may repeat usageMetadata; the last one is the answer's total.
            prompt, completion, total = usage
            self.prompt_tokens, self.completion_tokens = prompt, completion
            self.total_tokens = total if total is not None else prompt + completion
            self.usage_reported = True
        return chunks


def register_protocols(register: Callable[[ProtocolSpec], None]) -> None:
    register(
        ProtocolSpec(
            name="google",
            label="Google Gemini",
            default_endpoint="https://generativelanguage.googleapis.com",
            adapter=GoogleAdapter(),
            official_provider="Google AI",
        )
    )
