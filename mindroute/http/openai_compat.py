"""OpenAI's Chat Completions shapes out: a call's outcome as completion and chunk JSON, and OpenAI's error bodies.

The request's shapes (its fields and their parser) are in mindroute.http.chat_request.
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

from mindroute.providers.shapes import ToolCall, ToolCallDelta
from mindroute.redaction import redact_secrets
from mindroute.services.call_tracker import ApiOutcome

# OpenAI's own error types, by the status MindRoute answers with.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    499: "client_closed_request",
    500: "server_error",
    502: "upstream_error",
    503: "server_error",
    504: "upstream_timeout",
}
# The provider's finish words in OpenAI's vocabulary.
_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "STOP": "stop",
    "length": "length",
    "max_tokens": "length",
    "MAX_TOKENS": "length",
    "content_filter": "content_filter",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "refusal": "content_filter",
    "tool_calls": "tool_calls",
    "tool_use": "tool_calls",
    "function_call": "function_call",
}


def error_body(
    status: int, message: str, code: str | None = None, param: str | None = None, *, error_type: str | None = None
) -> dict[str, Any]:
    """{"error": {"message", "type", "code", "param"}} with anything key-shaped redacted; `error_type` defaults to
    OpenAI's type for the status (a limit refusal names its own: "requests", "tokens", "insufficient_quota")."""
    return {
        "error": {
            "message": redact_secrets(message),
            "type": error_type or _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
            "code": code,
            "param": param,
        }
    }


# A random prefix per process and a counter: unique ids without a random draw (a system call) per answer.
_ID_PREFIX = "chatcmpl-" + uuid.uuid4().hex[:16]
_id_counter = itertools.count(1)


def completion_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):x}"


def finish_reason(provider_reason: str | None, tool_calls: bool = False) -> str:
    """The provider's finish word in OpenAI's vocabulary; an answer that ends with tool calls says
    "tool_calls" whatever the provider said (Gemini says STOP), unless it was cut off."""
    reason = _FINISH_REASONS.get(provider_reason or "stop", "stop")
    return "tool_calls" if tool_calls and reason == "stop" else reason


def tool_calls_json(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    """A message's `tool_calls` in OpenAI's shape."""
    return [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        for call in calls
    ]


def tool_delta_json(piece: ToolCallDelta) -> dict[str, Any]:
    """A streamed `delta.tool_calls[]` item: the call's first piece carries its id, type and name."""
    function: dict[str, Any] = {"arguments": piece.arguments}
    item: dict[str, Any] = {"index": piece.position}
    if piece.id is not None:
        item["id"] = piece.id
        item["type"] = "function"
    if piece.name is not None:
        function = {"name": piece.name, "arguments": piece.arguments}
    item["function"] = function
    return item


def _message(text: str, calls: tuple[ToolCall, ...], refusal: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": refusal}
    if calls:
        message["tool_calls"] = tool_calls_json(calls)
    return message


def usage(result: ApiOutcome) -> dict[str, int] | None:
    """OpenAI's usage object, from the provider's own counts; None when it reported none."""
    outcome = result.outcome
    if not outcome.usage_reported:
        return None
    prompt, completion = outcome.prompt_tokens or 0, outcome.completion_tokens or 0
    total = outcome.total_tokens if outcome.total_tokens is not None else prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def completion_json(result: ApiOutcome, model_id: str, cid: str | None = None) -> dict[str, Any]:
    """A `chat.completion` object for a successful answer: every choice, with its tool calls."""
    outcome, end = result.outcome, result.end
    calls = outcome.tool_calls
    choices = [
        {
            "index": 0,
            "message": _message(outcome.text, calls, getattr(end, "refusal", None)),
            "logprobs": getattr(end, "logprobs", None),
            "finish_reason": finish_reason(result.finish_reason, bool(calls)),
        }
    ]
    for choice in outcome.other_choices:
        choices.append(
            {
                "index": choice.index,
                "message": _message(choice.text, choice.tool_calls),
                "logprobs": choice.logprobs,
                "finish_reason": finish_reason(choice.finish_reason, bool(choice.tool_calls)),
            }
        )
    return {
        "id": cid or completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": choices,
        "usage": usage(result),
    }


def chunk_json(
    cid: str,
    created: int,
    model_id: str,
    delta: dict[str, Any] | None,
    reason: str | None = None,
    *,
    include_usage: bool = False,
    index: int = 0,
    logprobs: Any = None,
) -> dict[str, Any]:
    """A `chat.completion.chunk` for choice `index`; with include_usage, `usage` is null on every chunk
    but the last."""
    chunk: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model_id,
        "choices": []
        if delta is None
        else [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}],
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


def usage_chunk_json(cid: str, created: int, model_id: str, result: ApiOutcome) -> dict[str, Any]:
    """The last chunk when stream_options.include_usage: no choices, the usage (zeros when unreported)."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model_id,
        "choices": [],
        "usage": usage(result) or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
