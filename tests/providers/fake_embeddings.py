"""Local stand-ins for embeddings and legacy completions: an OpenAI-protocol server (POST /v1/embeddings,
/v1/completions) and a Gemini one (models/{m}:embedContent, :batchEmbedContents), checking what the
real APIs check and recording each request."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from typing import Any

from tests.providers.fake_base import _INVALID, GOOGLE_KEY, OPENAI_KEY, FakeProvider, Received, Reply, sse

DEFAULT_DIMENSIONS = 4
COMPLETION_PIECES = ("Once", " upon", " a time: ")
SLOW_MODEL = "slow-model"  # streams for about ten seconds
BROKEN_MODEL = "broken-model"  # its stream breaks partway
SPLIT_MODEL = "split-model"  # streams the prompt's echo in two halves


def fake_vector(item: Any, dimensions: int | None = None) -> list[float]:
    """The fakes' embedding of one input (a text or a list of token ids): exact in float32 (multiples
    of 1/256), so float and base64 answers decode to the same numbers."""
    digest = hashlib.sha256(json.dumps(item).encode()).digest()
    size = dimensions or DEFAULT_DIMENSIONS
    return [(digest[i % len(digest)] - 128) / 256 for i in range(size)]


def token_count(item: Any) -> int:
    return len(item) if isinstance(item, list) else max(1, len(item.split()))


def completion_text(prompt: str) -> str:
    return "".join(COMPLETION_PIECES) + prompt


def _openai_error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error") -> Reply:
    return Reply(status=status, json_body={"error": {"message": message, "type": kind, "param": param, "code": None}})


_EMBEDDING_FIELDS = {"model", "input", "dimensions", "encoding_format", "user"}
_COMPLETION_FIELDS = {
    "model",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "stop",
    "echo",
    "logprobs",
    "suffix",
    "user",
    "seed",
    "best_of",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
}


class FakeOpenAIEmbeddings(FakeProvider):
    """POST /v1/embeddings and /v1/completions with Bearer auth, as OpenAI answers them; `report_usage=False`
    is a compatible server that counts nothing."""

    def __init__(self, key: str | None = OPENAI_KEY, report_usage: bool = True) -> None:
        super().__init__(key)
        self.report_usage = report_usage

    def handle(self, req: Received) -> Reply:
        if req.method != "POST" or req.path not in ("/v1/embeddings", "/v1/completions"):
            return _openai_error(404, f"Invalid URL ({req.method} {req.path})")
        if self.key is not None and req.headers.get("authorization") != f"Bearer {self.key}":
            # Echoing the key it was given, as some compatible servers do: MindRoute must take it out.
            presented = req.headers.get("authorization", "").removeprefix("Bearer ")
            return _openai_error(401, f"Incorrect API key provided: {presented}", kind="invalid_api_key")
        body = req.body
        if body is _INVALID or not isinstance(body, dict):
            return _openai_error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return _openai_error(400, "you must provide a model parameter", "model")
        if req.path == "/v1/embeddings":
            return self._embeddings(body)
        return self._completions(body)

    def _embeddings(self, body: dict[str, Any]) -> Reply:
        for name in body:
            if name not in _EMBEDDING_FIELDS:
                return _openai_error(400, f"Unrecognized request argument supplied: {name}", name)
        value = body.get("input")
        items = (
            [value]
            if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], int))
            else value
        )
        if not isinstance(items, list) or not items or any(item in ("", []) for item in items):
            return _openai_error(400, "'$.input' is invalid. Please check the API reference", "input")
        if len(items) > 2048:
            return _openai_error(400, "'$.input' is too long: at most 2048 items", "input")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return _openai_error(400, "encoding_format must be float or base64", "encoding_format")
        dimensions = body.get("dimensions")
        if dimensions is not None and (
            not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1
        ):
            return _openai_error(400, "dimensions must be at least 1", "dimensions")
        data = []
        for index, item in enumerate(items):
            vector = fake_vector(item, dimensions)
            embedding: Any = vector
            if encoding == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        answer: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if self.report_usage:
            tokens = sum(token_count(item) for item in items)
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return Reply(json_body=answer)

    def _completions(self, body: dict[str, Any]) -> Reply:
        for name in body:
            if name not in _COMPLETION_FIELDS:
                return _openai_error(400, f"Unrecognized request argument supplied: {name}", name)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            return _openai_error(400, "prompt must be a string (this fake takes one)", "prompt")
        stream = body.get("stream") is True
        if body.get("stream_options") is not None and not stream:
            return _openai_error(
                400, "The 'stream_options' parameter is only allowed when 'stream' is true", "stream_options"
            )
        completion_tokens = len(COMPLETION_PIECES) + 1
        usage = {
            "prompt_tokens": token_count(prompt),
            "completion_tokens": completion_tokens,
            "total_tokens": token_count(prompt) + completion_tokens,
        }
        base = {"id": "cmpl-fake1", "object": "text_completion", "created": 1_700_000_000, "model": body["model"]}
        if not stream:
            choice = {"text": completion_text(prompt), "index": 0, "logprobs": None, "finish_reason": "stop"}
            answer = {**base, "choices": [choice]}
            if self.report_usage:
                answer["usage"] = usage
            return Reply(json_body=answer)
        with_usage = (body.get("stream_options") or {}).get("include_usage") is True
        events = []
        echo = [prompt[: len(prompt) // 2], prompt[len(prompt) // 2 :]] if body["model"] == SPLIT_MODEL else [prompt]
        for piece in [*COMPLETION_PIECES, *echo]:
            chunk: dict[str, Any] = {
                **base,
                "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": None}],
            }
            if with_usage:
                chunk["usage"] = None
            events.append(sse(chunk))
        last: dict[str, Any] = {
            **base,
            "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        }
        if with_usage:
            last["usage"] = None
        events.append(sse(last))
        if with_usage and self.report_usage:
            events.append(sse({**base, "choices": [], "usage": usage}))
        events.append(sse("[DONE]"))
        if body["model"] == BROKEN_MODEL:  # the connection drops after two pieces
            return Reply(events=events[:2], cut_off=True)
        if body["model"] == SLOW_MODEL:  # a long answer, slowly: for a client that leaves partway
            return Reply(events=events[:1] * 200 + events, event_gap_s=0.05)
        return Reply(events=events)


_EMBED_CONTENT_FIELDS = {"model", "content", "taskType", "title", "outputDimensionality"}


def _google_error(status: int, message: str, reason: str = "INVALID_ARGUMENT") -> Reply:
    return Reply(status=status, json_body={"error": {"code": status, "message": message, "status": reason}})


class FakeGeminiEmbeddings(FakeProvider):
    """POST /v1beta/models/{m}:embedContent and :batchEmbedContents with x-goog-api-key; like Gemini,
    the answers carry no token counts."""

    def __init__(self, key: str | None = GOOGLE_KEY) -> None:
        super().__init__(key)

    def handle(self, req: Received) -> Reply:
        prefix = "/v1beta/models/"
        if req.method != "POST" or not req.path.startswith(prefix) or ":" not in req.path:
            return _google_error(404, f"Invalid path {req.path}", "NOT_FOUND")
        model, _, method = req.path[len(prefix) :].partition(":")
        if req.headers.get("x-goog-api-key") != self.key:
            return Reply(
                status=400,
                json_body={
                    "error": {
                        "code": 400,
                        "message": "API key not valid. Please pass a valid API key.",
                        "status": "INVALID_ARGUMENT",
                        "details": [{"reason": "API_KEY_INVALID"}],
                    }
                },
            )
        if not isinstance(req.body, dict):
            return _google_error(400, "Invalid JSON payload received.")
        if method == "embedContent":
            problem = self._check(req.body, model)
            if problem is not None:
                return problem
            return Reply(json_body={"embedding": {"values": self._vector(req.body)}})
        if method == "batchEmbedContents":
            if set(req.body) != {"requests"} or not isinstance(req.body["requests"], list) or not req.body["requests"]:
                return _google_error(400, "Invalid JSON payload received: expected requests")
            if len(req.body["requests"]) > 100:
                return _google_error(400, "at most 100 requests can be in one batch")
            vectors = []
            for request in req.body["requests"]:
                if not isinstance(request, dict) or request.get("model") != f"models/{model}":
                    return _google_error(400, f"Model name in requests must match models/{model}")
                problem = self._check(request, model)
                if problem is not None:
                    return problem
                vectors.append({"values": self._vector(request)})
            return Reply(json_body={"embeddings": vectors})
        return _google_error(404, f"Method {method} not found", "NOT_FOUND")

    def _check(self, body: dict[str, Any], model: str) -> Reply | None:
        for name in body:
            if name not in _EMBED_CONTENT_FIELDS:
                return _google_error(400, f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
        parts = (body.get("content") or {}).get("parts") if isinstance(body.get("content"), dict) else None
        if (
            not isinstance(parts, list)
            or not parts
            or not all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in parts)
        ):
            return _google_error(400, "content.parts must hold text parts")
        dimensions = body.get("outputDimensionality")
        if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
            return _google_error(400, "outputDimensionality must be positive")
        return None

    def _vector(self, body: dict[str, Any]) -> list[float]:
        text = "".join(part["text"] for part in body["content"]["parts"])
        return fake_vector(text, body.get("outputDimensionality"))
