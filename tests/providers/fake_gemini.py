"""A local Gemini generateContent server that checks what the real API checks."""

from __future__ import annotations

import re
from typing import Any

from tests.providers.fake_base import (
    _INVALID,
    COMPLETION_TOKENS,
    ENDLESS_EVENT_GAP_S,
    ENDLESS_EVENTS,
    GOOGLE_KEY,
    PROMPT_TOKENS,
    SLOW_FIRST_BYTE_S,
    FakeProvider,
    Received,
    Reply,
    _is_base64,
    _last_user_text,
    answer_pieces,
    sse,
)

# --- Google Gemini --------------------------------------------------------------------------

_GEMINI_PATH = re.compile(r"^/(v1beta|v1)/models/([^/:]+):(generateContent|streamGenerateContent)$")
_GEMINI_CONFIG = {
    "temperature",
    "maxOutputTokens",
    "max_output_tokens",
    "topP",
    "top_p",
    "topK",
    "top_k",
    "stopSequences",
    "stop_sequences",
    "candidateCount",
    "candidate_count",
}
_GEMINI_FIELDS = {
    "contents",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    "safetySettings",
    "safety_settings",
    "tools",
}


class FakeGemini(FakeProvider):
    """models/{model}:generateContent and :streamGenerateContent?alt=sse, key in x-goog-api-key or ?key=."""

    def __init__(self, key: str = GOOGLE_KEY) -> None:
        super().__init__(key)

    def error(self, status: int, code_name: str, message: str, details: list[Any] | None = None) -> Reply:
        error: dict[str, Any] = {"code": status, "message": message, "status": code_name}
        if details:
            error["details"] = details
        return Reply(status=status, json_body={"error": error})

    def handle(self, req: Received) -> Reply:
        match = _GEMINI_PATH.match(req.path)
        if req.method != "POST" or not match:
            return Reply(status=404, raw=b"<html><body>Error 404 (Not Found)!!1</body></html>")
        _, model, method = match.groups()
        stream = method == "streamGenerateContent"
        given = req.headers.get("x-goog-api-key") or req.query.get("key")
        if not given:
            return self.error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if given != self.key:
            return self.error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
        problem = self.check_body(req.body)
        if problem:
            return self.error(400, "INVALID_ARGUMENT", problem)
        scenario = self.scenario(model, given, stream)
        if scenario is not None:
            return scenario
        user_text = _last_user_text(req.body["contents"], self._text_of)
        pieces = answer_pieces(user_text)
        if not stream:
            return Reply(json_body=self.response(model, "".join(pieces), last=True))
        if req.query.get("alt") != "sse":
            # Without alt=sse Gemini streams one JSON array; the adapters never ask for that.
            return Reply(
                json_body=[self.response(model, piece, last=i == len(pieces) - 1) for i, piece in enumerate(pieces)]
            )
        events = [
            sse(self.response(model, piece, last=i == len(pieces) - 1), newline="\r\n")
            for i, piece in enumerate(pieces)
        ]
        return Reply(events=events)

    def scenario(self, model: str, given_key: str, stream: bool) -> Reply | None:
        if model == "error-400":
            return self.error(
                400,
                "INVALID_ARGUMENT",
                "* GenerateContentRequest.generation_config.max_output_tokens: max_output_tokens must be positive.\n",
            )
        if model == "error-403":
            # Gemini names the consumer by its key here: the message must come back without it.
            return self.error(
                403, "PERMISSION_DENIED", f"Permission denied: Consumer 'api_key:{given_key}' has been suspended."
            )
        if model == "error-404":
            return self.error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version v1beta, or is not supported for generateContent. "
                "Call ListModels to see the list of available models and their supported methods.",
            )
        if model == "error-429":
            return self.error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}
                        ],
                    },
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "27s"},
                ],
            )
        if model == "error-500":
            return self.error(
                500,
                "INTERNAL",
                "An internal error has occurred. Please retry or report in "
                "https://developers.generativeai.google/guide/troubleshooting",
            )
        if model == "error-503":
            return self.error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if model == "echo-key":
            return self.error(
                400, "INVALID_ARGUMENT", f"Request to https://x.googleapis.com/v1beta/models?key={given_key} failed"
            )
        if model == "malformed" and not stream:
            return Reply(raw=b'{"candidates": [{"content": {"parts": [{"text": "Hel')
        if model == "slow":
            return Reply(json_body={}, delay_s=SLOW_FIRST_BYTE_S)
        if not stream:
            return None
        if model == "malformed":
            return Reply(events=[sse(self.response(model, "Hel", last=False)), b'data: {"candidates": [\r\n\r\n'])
        if model == "cutoff":
            return Reply(events=[sse(self.response(model, "Hello", last=False))], cut_off=True)
        if model == "stream-error":
            error = {
                "error": {
                    "code": 503,
                    "message": "The model is overloaded. Please try again later.",
                    "status": "UNAVAILABLE",
                }
            }
            return Reply(events=[sse(self.response(model, "Hello", last=False)), sse(error)])
        if model == "endless":
            events = [sse(self.response(model, "tick ", last=False)) for _ in range(ENDLESS_EVENTS)]
            return Reply(events=events, event_gap_s=ENDLESS_EVENT_GAP_S)
        return None

    @staticmethod
    def response(model: str, text: str, last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        usage: dict[str, Any] = {"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS}
        if last:
            candidate["finishReason"] = "STOP"
            usage = {
                "promptTokenCount": PROMPT_TOKENS,
                "candidatesTokenCount": COMPLETION_TOKENS,
                "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}],
            }
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "fakeResp1"}

    @staticmethod
    def _text_of(content: dict[str, Any]) -> str:
        return "".join(part.get("text", "") for part in content.get("parts", []))

    @staticmethod
    def check_body(body: Any) -> str | None:
        if body is _INVALID or not isinstance(body, dict):
            return "Invalid JSON payload received."
        for name in body:
            if name not in _GEMINI_FIELDS:
                return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
        config = body.get("generationConfig") or body.get("generation_config") or {}
        for name in config:
            if name not in _GEMINI_CONFIG:
                return (
                    f"Invalid JSON payload received. Unknown name \"{name}\" at 'generation_config': Cannot find field."
                )
        system = body.get("systemInstruction") or body.get("system_instruction")
        if system is not None and not isinstance(system.get("parts"), list):
            return "* GenerateContentRequest.system_instruction.parts: must be a list"
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return "* GenerateContentRequest.contents: contents is not specified"
        for i, content in enumerate(contents):
            if content.get("role") not in ("user", "model"):
                return "Please use a valid role: user, model."
            parts = content.get("parts")
            if not isinstance(parts, list) or not parts:
                return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            for j, part in enumerate(parts):
                inline = part.get("inline_data") or part.get("inlineData")
                if "text" in part and isinstance(part["text"], str):
                    continue
                if isinstance(inline, dict):
                    mime = inline.get("mime_type") or inline.get("mimeType")
                    if not isinstance(mime, str) or not mime:
                        return f"* GenerateContentRequest.contents[{i}].parts[{j}].inline_data.mime_type: required"
                    if not _is_base64(inline.get("data")):
                        return f"Invalid value at 'contents[{i}].parts[{j}].inline_data.data' (TYPE_BYTES), Base64 decoding failed"  # noqa: E501
                    continue
                return f"* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field"  # noqa: E501
        return None
