"""OpenAI's Chat Completions shapes out: a call's outcome as completion and chunk JSON, and OpenAI's error bodies.

The request's shapes (its fields and their parser) are in mindroute.http.chat_request.
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

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
}


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """{"error": {"message", "type", "code", "param"}} with anything key-shaped redacted."""
    return {
        "error": {
            "message": redact_secrets(message),
            "type": _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
            "code": code,
            "param": param,
        }
    }


# A random prefix per process and a counter: unique ids without a random draw (a system call) per answer.
_ID_PREFIX = "chatcmpl-" + uuid.uuid4().hex[:16]
_id_counter = itertools.count(1)


def completion_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):x}"


def finish_reason(provider_reason: str | None) -> str:
    return _FINISH_REASONS.get(provider_reason or "stop", "stop")


def usage(result: ApiOutcome) -> dict[str, int] | None:
    """OpenAI's usage object, from the provider's own counts; None when it reported none."""
    outcome = result.outcome
    if not outcome.usage_reported:
        return None
    prompt, completion = outcome.prompt_tokens or 0, outcome.completion_tokens or 0
    total = outcome.total_tokens if outcome.total_tokens is not None else prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def completion_json(result: ApiOutcome, model_id: str, cid: str | None = None) -> dict[str, Any]:
    """A `chat.completion` object for a successful answer."""
    return {
        "id": cid or completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.outcome.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(result.finish_reason),
            }
        ],
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
) -> dict[str, Any]:
    """A `chat.completion.chunk`; with include_usage, `usage` is null on every chunk but the last."""
    chunk: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model_id,
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
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
