"""What the API's answers share: OpenAI's JSON error response with MindRoute's codes, the 503 for a database
that is away, and the header that reports MindRoute's own time."""

from __future__ import annotations

import logging
import time

from starlette.responses import JSONResponse

from mindroute.http.openai_compat import error_body
from mindroute.observability import metrics
from mindroute.services import api_keys
from mindroute.services.call_log import DATABASE_UNAVAILABLE
from mindroute.services.chat_async import UpstreamClock
from mindroute.services.limits import LimitRefusal

log = logging.getLogger("mindroute.http.api")

OVERHEAD_HEADER = "x-mindroute-overhead-ms"
KEY_CODES = {
    api_keys.KeyRefusal.UNKNOWN: "invalid_api_key",
    api_keys.KeyRefusal.EXPIRED: "expired_api_key",
    api_keys.KeyRefusal.REVOKED: "revoked_api_key",
    api_keys.KeyRefusal.OWNER_DEACTIVATED: "account_deactivated",
}
# The error code an answer gets by its status when the refusal names none.
_CODES = {
    400: "invalid_request",
    403: "not_allowed",
    404: "model_not_found",
    413: "request_too_large",
    503: "database_unavailable",
}
RETRY_AFTER_S = "1"


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    param: str | None = None,
    error_type: str | None = None,
) -> JSONResponse:
    """OpenAI's error body as a JSON answer; `code` defaults to MindRoute's code for the status, `error_type` to
    OpenAI's type for it."""
    body = error_body(status, message, code or _CODES.get(status), param, error_type=error_type)
    return JSONResponse(body, status_code=status, headers=headers)


def limit_refusal_response(limit: LimitRefusal, headers: dict[str, str]) -> JSONResponse:
    """A budget's or rate limit's 429 as OpenAI answers it: its type ("requests", "tokens",
    "insufficient_quota") and code ("rate_limit_exceeded", "insufficient_quota"), no param, and `headers`
    (the x-ratelimit-* set and retry-after)."""
    return error_response(limit.status, limit.message, limit.code, headers=dict(headers), error_type=limit.type)


def database_unavailable(error: BaseException) -> JSONResponse:
    """The 503 (with retry-after) for a request refused because the database is away; logged by type only."""
    log.warning("refused an API request: the database is unavailable (%s)", type(error).__name__)
    return error_response(503, DATABASE_UNAVAILABLE, headers={"retry-after": RETRY_AFTER_S})


def overhead_ms(started: float, clock: UpstreamClock) -> str:
    """OVERHEAD_HEADER's value: the time since `started` not spent waiting for the provider, in ms (and the
    overhead histogram's observation: every answered call sends the header once)."""
    seconds = max(0.0, time.perf_counter() - started - clock.seconds)
    metrics.observe_overhead(seconds)
    return f"{seconds * 1000:.2f}"
