"""A local Anthropic Messages server that checks what the real API checks."""

from __future__ import annotations

from typing import Any

from tests.providers.fake_base import (
    _INVALID,
    ANTHROPIC_KEY,
    COMPLETION_TOKENS,
    ENDLESS_EVENT_GAP_S,
    ENDLESS_EVENTS,
    PROMPT_TOKENS,
    SLOW_FIRST_BYTE_S,
    FakeProvider,
    Received,
    Reply,
    _is_base64,
    _last_user_text,
    answer_pieces,
    expected_answer,
    sse,
)

# --- Anthropic Messages ---------------------------------------------------------------------

_ANTHROPIC_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


class FakeAnthropic(FakeProvider):
    """POST /v1/messages with x-api-key (or Bearer, as the newer SDK sends) and anthropic-version."""

    def __init__(self, key: str = ANTHROPIC_KEY) -> None:
        super().__init__(key)

    def error(self, status: int, kind: str, message: str, **headers: str) -> Reply:
        body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CFake"}
        return Reply(status=status, json_body=body, headers=dict(headers))

    def handle(self, req: Received) -> Reply:
        if req.method != "POST" or req.path != "/v1/messages":
            return self.error(404, "not_found_error", "Not Found")
        given = req.headers.get("x-api-key") or req.headers.get("authorization", "").removeprefix("Bearer ")
        if not given:
            return self.error(401, "authentication_error", "x-api-key header is required")
        if given != self.key:
            return self.error(401, "authentication_error", "invalid x-api-key")
        if not req.headers.get("anthropic-version"):
            return self.error(400, "invalid_request_error", "anthropic-version: header is required")
        problem = self.check_body(req.body)
        if problem:
            return self.error(400, "invalid_request_error", problem)
        body = req.body
        model = body["model"]
        stream = body.get("stream") is True
        scenario = self.scenario(model, given, stream)
        if scenario is not None:
            return scenario
        user_text = _last_user_text(body["messages"], self._text_of)
        if not stream:
            return Reply(
                json_body={
                    "id": "msg_01Fake",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": expected_answer(user_text)}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": PROMPT_TOKENS,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": COMPLETION_TOKENS,
                        "service_tier": "standard",
                    },
                }
            )
        return Reply(events=self.stream_events(model, answer_pieces(user_text)))

    def scenario(self, model: str, given_key: str, stream: bool) -> Reply | None:
        if model == "error-400":
            return self.error(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")
        if model == "error-403":
            return self.error(
                403, "permission_error", "Your API key does not have permission to use the specified resource."
            )
        if model == "error-404":
            return self.error(404, "not_found_error", f"model: {model}")
        if model == "error-429":
            return self.error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit; please try again later.",
                **{"retry-after": "30"},
            )
        if model == "error-500":
            return self.error(500, "api_error", "Internal server error")
        if model == "error-529":
            return self.error(529, "overloaded_error", "Overloaded")
        if model == "echo-key":
            return self.error(400, "invalid_request_error", f"x-api-key {given_key} is not valid for this workspace")
        if model == "malformed" and not stream:
            return Reply(raw=b'{"id": "msg_01", "content": [{"type": "text", "te')
        if model == "slow":
            return Reply(json_body={}, delay_s=SLOW_FIRST_BYTE_S)
        if not stream:
            return None
        if model == "malformed":
            return Reply(
                events=[*self.stream_events(model, ["Hel"])[:3], b"event: content_block_delta\ndata: {oops\n\n"]
            )
        if model == "cutoff":
            return Reply(events=self.stream_events(model, ["Hello", " there"])[:5], cut_off=True)
        if model == "stream-error":
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            return Reply(events=[*self.stream_events(model, ["Hello"])[:4], sse(error, "error")])
        if model == "endless":
            return Reply(events=self.stream_events(model, ["tick "] * ENDLESS_EVENTS), event_gap_s=ENDLESS_EVENT_GAP_S)
        return None

    @staticmethod
    def stream_events(model: str, pieces: list[str]) -> list[bytes]:
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_01Fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": PROMPT_TOKENS,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1,
                },
            },
        }
        events = [
            sse(start, "message_start"),
            sse(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            ),
            sse({"type": "ping"}, "ping"),
        ]
        for piece in pieces:
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
            events.append(sse(delta, "content_block_delta"))
        events += [
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": COMPLETION_TOKENS},
                },
                "message_delta",
            ),
            sse({"type": "message_stop"}, "message_stop"),
        ]
        return events

    @staticmethod
    def _text_of(message: dict[str, Any]) -> str:
        content = message.get("content")
        if isinstance(content, str):
            return content
        return "".join(block.get("text", "") for block in content if block.get("type") == "text")

    @staticmethod
    def check_body(body: Any) -> str | None:
        if body is _INVALID or not isinstance(body, dict):
            return "There was an issue with your request: the body is not valid JSON"
        if not isinstance(body.get("model"), str):
            return "model: Field required"
        if not isinstance(body.get("max_tokens"), int):
            return "max_tokens: Field required"
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            return "system: Input should be a valid string"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        for i, message in enumerate(messages):
            role = message.get("role")
            if role == "system":
                return (
                    'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                    'parameter, not "system" as an input message role.'
                )
            if role not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
            content = message.get("content")
            if isinstance(content, str):
                continue
            if not isinstance(content, list):
                return f"messages.{i}.content: Input should be a valid list"
            for j, block in enumerate(content):
                where = f"messages.{i}.content.{j}"
                kind = block.get("type")
                source = block.get("source") or {}
                if kind == "text":
                    if not block.get("text"):
                        return f"{where}.text: text content blocks must be non-empty"
                elif kind == "image":
                    if source.get("type") != "base64" or source.get("media_type") not in _ANTHROPIC_IMAGE_TYPES:
                        return f"{where}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"  # noqa: E501
                    if not _is_base64(source.get("data")):
                        return f"{where}.image.source.base64: invalid base64 data"
                elif kind == "document":
                    if source.get("type") == "base64" and source.get("media_type") == "application/pdf":
                        if not _is_base64(source.get("data")):
                            return f"{where}.document.source.base64: invalid base64 data"
                    elif source.get("type") == "text" and source.get("media_type") == "text/plain":
                        if not isinstance(source.get("data"), str):
                            return f"{where}.document.source.text.data: Input should be a valid string"
                    else:
                        return f"{where}.document.source: Input tag '{source.get('type')}' does not match"
                else:
                    return f"{where}: Input tag '{kind}' found using 'type' does not match any of the expected tags"
        return None
