"""A local OpenAI Chat Completions server that checks what the real API checks."""

from __future__ import annotations

import re
from typing import Any

from tests.providers.fake_base import (
    _INVALID,
    COMPLETION_TOKENS,
    ENDLESS_EVENT_GAP_S,
    ENDLESS_EVENTS,
    OPENAI_KEY,
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

# --- OpenAI Chat Completions ----------------------------------------------------------------

_OPENAI_PARAMS = {
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "stream",
    "stream_options",
    "n",
    "user",
    "seed",
}


def _openai_masked(key: str) -> str:
    # How OpenAI's 401 echoes a wrong key: its start, asterisks, its last 4 characters.
    return key[:8] + "*" * max(len(key) - 12, 3) + key[-4:]


class FakeOpenAI(FakeProvider):
    """POST /v1/chat/completions with Bearer auth; `report_usage=False` is a compatible server that counts nothing."""

    def __init__(self, key: str | None = OPENAI_KEY, report_usage: bool = True) -> None:
        super().__init__(key)
        self.report_usage = report_usage

    def error(self, status: int, message: str, kind: str, code: str | None = None, **headers: str) -> Reply:
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return Reply(status=status, json_body=body, headers=dict(headers))

    def handle(self, req: Received) -> Reply:
        if req.method != "POST" or req.path != "/v1/chat/completions":
            return self.error(404, f"Invalid URL ({req.method} {req.path})", "invalid_request_error")
        auth = req.headers.get("authorization", "")
        if self.key is not None:
            if not auth.startswith("Bearer "):
                return self.error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                )
            given = auth.removeprefix("Bearer ")
            if given != self.key:
                return self.error(
                    401,
                    f"Incorrect API key provided: {_openai_masked(given)}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    "invalid_api_key",
                )
        problem = self.check_body(req.body)
        if problem:
            return self.error(400, problem, "invalid_request_error")
        body = req.body
        model = body["model"]
        stream = body.get("stream") is True
        user_text = _last_user_text(body["messages"], self._text_of)
        scenario = self.scenario(model, auth.removeprefix("Bearer "), stream)
        if scenario is not None:
            return scenario
        include_usage = self.report_usage and stream and (body.get("stream_options") or {}).get("include_usage")
        if not stream:
            result: dict[str, Any] = {
                "id": "chatcmpl-fake123",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": expected_answer(user_text), "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "system_fingerprint": "fp_fake",
            }
            if self.report_usage:
                result["usage"] = {
                    "prompt_tokens": PROMPT_TOKENS,
                    "completion_tokens": COMPLETION_TOKENS,
                    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                    "prompt_tokens_details": {"cached_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                }
            return Reply(json_body=result)
        return Reply(events=self.stream_events(model, answer_pieces(user_text), bool(include_usage)))

    def scenario(self, model: str, given_key: str, stream: bool) -> Reply | None:
        if model == "error-400":
            return self.error(
                400,
                "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                "130000 tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                "context_length_exceeded",
            )
        if model == "error-403":
            return self.error(
                403,
                "Country, region, or territory not supported",
                "request_forbidden",
                "unsupported_country_region_territory",
            )
        if model == "error-404":
            return self.error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        if model == "error-429":
            return self.error(
                429,
                "Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): "
                "Limit 3, Used 3, Requested 1. Please try again in 20s.",
                "requests",
                "rate_limit_exceeded",
                **{"retry-after": "20"},
            )
        if model == "error-500":
            return self.error(
                500, "The server had an error while processing your request. Sorry about that!", "server_error"
            )
        if model == "echo-key":
            # A misbehaving proxy in front of a compatible server, repeating the header it got.
            return self.error(400, f"Invalid header value: Bearer {given_key} (from gateway)", "invalid_request_error")
        if model == "malformed" and not stream:
            return Reply(raw=b'{"id": "chatcmpl-1", "choices": [{"message": ')
        if model == "not-a-chat":
            return Reply(json_body={"object": "list", "data": []})
        if model == "slow":
            return Reply(json_body={}, delay_s=SLOW_FIRST_BYTE_S)
        if not stream:
            return None
        if model == "malformed":
            events = self.stream_events(model, ["Hel"], False)[:2]
            return Reply(events=[*events, b'data: {"choices": [{"delta": {"content": "lo\n\n'])
        if model == "cutoff":
            return Reply(events=self.stream_events(model, ["Hello", " there"], False)[:3], cut_off=True)
        if model == "stream-error":
            events = self.stream_events(model, ["Hello"], False)[:2]
            error = {
                "error": {"message": "The server had an error while processing your request.", "type": "server_error"}
            }
            return Reply(events=[*events, sse(error)])
        if model == "endless":
            return Reply(
                events=self.stream_events(model, ["tick "] * ENDLESS_EVENTS, True), event_gap_s=ENDLESS_EVENT_GAP_S
            )
        return None

    def stream_events(self, model: str, pieces: list[str], include_usage: bool) -> list[bytes]:
        def chunk(choices: list[Any], usage: Any = None) -> bytes:
            data: dict[str, Any] = {
                "id": "chatcmpl-fake123",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage:
                data["usage"] = usage  # null on every chunk but the last, as OpenAI sends it
            return sse(data)

        events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
        events += [chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]) for piece in pieces]
        events.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if include_usage:
            usage = {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            }
            events.append(chunk([], usage))
        events.append(sse("[DONE]"))
        return events

    @staticmethod
    def _text_of(message: dict[str, Any]) -> str:
        content = message.get("content")
        if isinstance(content, str):
            return content
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")

    @staticmethod
    def check_body(body: Any) -> str | None:
        if body is _INVALID or not isinstance(body, dict):
            return "We could not parse the JSON body of your request."
        unknown = sorted(set(body) - _OPENAI_PARAMS)
        if unknown:
            return f"Unrecognized request argument supplied: {unknown[0]}"
        if not isinstance(body.get("model"), str):
            return "you must provide a model parameter"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "[] is too short - 'messages'"
        if "stream_options" in body and body.get("stream") is not True:
            return "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        for i, message in enumerate(messages):
            role = message.get("role")
            if role not in ("system", "developer", "user", "assistant", "tool"):
                return f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'tool'."
            content = message.get("content")
            if isinstance(content, str):
                continue
            if not isinstance(content, list):
                return f"Invalid type for 'messages[{i}].content'"
            for j, part in enumerate(content):
                kind = part.get("type")
                where = f"messages[{i}].content[{j}]"
                if kind == "text" and isinstance(part.get("text"), str):
                    continue
                if kind in ("image_url", "file") and role != "user":
                    return f"Invalid '{where}': {kind} parts are only allowed for messages with role 'user'."
                if kind == "image_url":
                    url = (part.get("image_url") or {}).get("url", "")
                    if not re.match(r"^(https?://|data:image/(png|jpeg|gif|webp);base64,)", url):
                        return f"Invalid '{where}.image_url.url': expected a URL or a base64 image data URL."
                    if url.startswith("data:") and not _is_base64(url.split(",", 1)[1]):
                        return "You uploaded an unsupported image. Please make sure your image is valid."
                    continue
                if kind == "file":
                    file = part.get("file") or {}
                    data = file.get("file_data")
                    if isinstance(data, str) and data.startswith("data:") and _is_base64(data.split(",", 1)[1]):
                        continue
                    if isinstance(file.get("file_id"), str):
                        continue
                    return f"Invalid '{where}.file': expected file_data or file_id."
                return f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url', 'input_audio', 'file'."
        return None
