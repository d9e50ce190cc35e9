"""Local servers that speak OpenAI's, Anthropic's and Gemini's chat protocols, checking what the real APIs check.

Each fake is a plain ASGI app run by uvicorn on 127.0.0.1 in a background thread. The model name
picks the scenario, as a test would pick a real model: "error-429" answers a rate limit, "slow"
waits before the first byte, "endless" streams until the client goes away, "cutoff" drops the
connection half-way, "malformed" sends broken JSON. Any other model gets a normal answer that
echoes the last user text. The fakes are no stricter than the real APIs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn

OPENAI_KEY = "sk-proj-FakeOpenAIkey0123456789abcdefXYZ"
ANTHROPIC_KEY = "sk-ant-api03-FakeAnthropicKey0123456789-abcXYZ"
GOOGLE_KEY = "AIzaSyFakeGoogleKey0123456789abcdefghi"

PROMPT_TOKENS = 17
COMPLETION_TOKENS = 5
SLOW_FIRST_BYTE_S = 3.0
ENDLESS_EVENT_GAP_S = 0.05
ENDLESS_EVENTS = 600  # 30 s: far longer than any test waits

_INVALID = object()  # a request body that was not JSON


def answer_pieces(user_text: str) -> list[str]:
    """What every fake answers, in the pieces it streams."""
    return ["Hello", " there!", " You said: ", user_text]


def expected_answer(user_text: str) -> str:
    return "".join(answer_pieces(user_text))


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    # Set when the client went away before this request's answer was complete.
    disconnected: threading.Event = field(default_factory=threading.Event)


@dataclass
class Reply:
    status: int = 200
    json_body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line: a slow first byte
    events: list[bytes] | None = None  # an SSE answer, sent piece by piece
    event_gap_s: float = 0.0
    cut_off: bool = False  # drop the connection after the events instead of ending the body


def sse(data: Any, event: str | None = None, newline: str = "\n") -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}{newline}" if event else ""
    return f"{head}data: {text}{newline}{newline}".encode()


class FakeProvider:
    """The ASGI plumbing shared by the three fakes: record the request, answer, notice a disconnect."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.requests: list[Received] = []

    def reset(self) -> None:
        self.requests.clear()

    @property
    def last(self) -> Received:
        return self.requests[-1]

    def handle(self, req: Received) -> Reply:
        raise NotImplementedError

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = _INVALID
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope["query_string"].decode()))
        received = Received(scope["method"], scope["path"], query, headers, body)
        self.requests.append(received)
        reply = self.handle(received)

        gone = asyncio.Event()

        async def listen() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    received.disconnected.set()
                    return

        listener = asyncio.create_task(listen())
        try:
            await self._send(reply, send, gone)
        finally:
            listener.cancel()

    async def _gone_within(self, gone: asyncio.Event, seconds: float) -> bool:
        try:
            await asyncio.wait_for(gone.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _send(self, reply: Reply, send: Any, gone: asyncio.Event) -> None:
        if reply.delay_s and await self._gone_within(gone, reply.delay_s):
            return
        extra = [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        if reply.events is None:
            payload = reply.raw if reply.raw is not None else json.dumps(reply.json_body).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": reply.status,
                    "headers": [(b"content-type", b"application/json"), *extra],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), *extra],
            }
        )
        for chunk in reply.events:
            if gone.is_set():
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if reply.event_gap_s and await self._gone_within(gone, reply.event_gap_s):
                return
        if reply.cut_off:
            # uvicorn drops the connection when an app fails after the headers: a broken stream.
            raise ConnectionAbortedError("fake provider: stream cut off")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _last_user_text(messages: list[dict[str, Any]], text_of: Any) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message)
    return ""


def _is_base64(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        return False
    return True


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


# --- running one ----------------------------------------------------------------------------


class FakeServer:
    """A fake provider served by uvicorn on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, fake: FakeProvider) -> None:
        self.fake = fake
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            fake,
            lifespan="off",
            log_level="critical",
            access_log=False,
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake provider did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
