"""The typed errors a provider call ends in, and reading them out of a provider's error answer."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from mindroute.i18n import Message, _l
from mindroute.redaction import redact_secrets

ERROR_MESSAGE_MAX_CHARS = 1000
# An error page is cut to this before redaction, so a huge HTML page costs nothing to scrub.
ERROR_BODY_SCAN_CHARS = 8000


class ProviderError(Exception):
    """A chat call failed. `message` is the provider's own words with anything key-like removed.

    `status_code` is the provider's HTTP status; for refusals before any upstream call, the status
    that describes them (400, 401, 403); None when there is no provider status to report (a
    timeout, a network failure, an answer that could not be read).
    `error_type` is the provider's error type or code when it sent one ("rate_limit_error",
    "RESOURCE_EXHAUSTED", "invalid_api_key").
    """

    default_status: int | None = None

    def __init__(self, message: str, *, status_code: int | None = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = self.default_status if status_code is None else status_code
        self.error_type = error_type

    def __str__(self) -> str:
        return self.message

    def redact(self, api_key: str | None) -> None:
        """Scrub the message in place; every error leaving an adapter passes through here. A message of
        MindRoute's own (a Message, translated where shown) is kept as it is when there was nothing to scrub."""
        scrubbed = redact_secrets(self.message, api_key)
        if not (isinstance(self.message, Message) and scrubbed == self.message):
            self.message = scrubbed
        self.args = (self.message,)


class AuthenticationError(ProviderError):
    default_status = 401


class ProviderPermissionError(ProviderError):
    default_status = 403


class NotFoundError(ProviderError):
    default_status = 404


class BadRequestError(ProviderError):
    """The provider refused the request itself (400, 413, 422...): a parameter, the size, the content."""

    default_status = 400


class UnsupportedParameter(BadRequestError):  # noqa: N818 - reads better at the raise site
    """The protocol has no equivalent for a request field that would change the answer (logit_bias to
    Anthropic, n > 1 where there is one answer); raised before any upstream call and answered with a
    400 whose `param` names the field, in OpenAI's terms ("logit_bias", "response_format.json_schema")."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class RateLimitedError(ProviderError):
    default_status = 429

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, error_type=error_type)
        self.retry_after = retry_after  # seconds, as the provider asked; None when it did not say


class UpstreamError(ProviderError):
    """The provider failed (5xx, overloaded), could not be reached, or answered something we cannot read."""


class UpstreamTooLarge(UpstreamError):  # noqa: N818 - reads better at the raise site
    """The provider's answer, or one line or event of its stream, is over MindRoute's limit
    (`MINDROUTE_UPSTREAM_MAX_BODY_BYTES`, `MINDROUTE_UPSTREAM_MAX_LINE_BYTES`); nothing past it was read."""


class ProviderTimeout(ProviderError):  # noqa: N818 - reads better at the raise site
    """No connection, or no next byte, within the timeout."""


class Cancelled(ProviderError):  # noqa: N818 - reads better at the raise site
    """The caller stopped the call (a stop button, a client that went away).

    Adapters never raise it by themselves: closing a stream is the normal way to stop it. It is
    the typed error a caller records for a stopped call, with `ChatStream.so_far()` as the partial
    answer. 499 is the "client closed request" convention.
    """

    default_status = 499


class MediaNotAllowed(ProviderPermissionError):  # noqa: N818 - reads better at the raise site
    """The provider's settings do not allow this kind of attachment; raised before any upstream call."""


class UnsupportedMedia(BadRequestError):  # noqa: N818 - reads better at the raise site
    """The protocol cannot carry this attachment (a video to OpenAI, a .docx anywhere); raised before any call."""


_ERROR_BY_STATUS: dict[int, type[ProviderError]] = {
    401: AuthenticationError,
    403: ProviderPermissionError,
    404: NotFoundError,
    429: RateLimitedError,
}


def error_class_for_status(status: int) -> type[ProviderError]:
    """The typed error for an HTTP status: the named ones, other 4xx as a bad request, the rest upstream."""
    if status in _ERROR_BY_STATUS:
        return _ERROR_BY_STATUS[status]
    if status == 408:
        return ProviderTimeout
    if 400 <= status < 500:
        return BadRequestError
    return UpstreamError


def make_error(
    status: int | None,
    message: str,
    *,
    error_type: str | None = None,
    retry_after: float | None = None,
    error_class: type[ProviderError] | None = None,
) -> ProviderError:
    cls = error_class or (error_class_for_status(status) if status is not None else UpstreamError)
    if issubclass(cls, RateLimitedError):
        return cls(message, status_code=status, error_type=error_type, retry_after=retry_after)
    return cls(message, status_code=status, error_type=error_type)


def clip(text: str, limit: int = ERROR_MESSAGE_MAX_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def provider_error_details(body: Any) -> tuple[str | None, str | None]:
    """(message, type) from an error body of any provider we speak to.

    OpenAI {"error": {"message", "type", "code"}}, Anthropic {"type": "error", "error": {"type",
    "message"}}, Gemini {"error": {"code", "message", "status"}}; Ollama and vLLM {"error": "..."};
    FastAPI-based servers {"detail": "..."}.
    """
    if isinstance(body, list) and len(body) == 1:  # Gemini's streaming endpoint wraps errors in a list
        body = body[0]
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, dict):
        message = error.get("message") if isinstance(error.get("message"), str) else None
        kind = error.get("status") or error.get("type") or error.get("code")
        return message, (str(kind) if kind is not None and not isinstance(kind, dict | list) else None)
    if isinstance(error, str):
        return error, None
    for key in ("message", "detail"):
        if isinstance(body.get(key), str):
            return body[key], None
    return None, None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from retry-after-ms, or retry-after as seconds or an HTTP date."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(float(raw_ms) / 1000, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max((when - datetime.now(UTC)).total_seconds(), 0.0)
    return max(seconds, 0.0) if math.isfinite(seconds) else None


# --- over MindRoute's size limits -----------------------------------------------------------


def _size_text(n: int) -> str | Message:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return _l("{n} bytes", n=n)


def too_large(host: str, what: Message, limit: int, setting: str) -> UpstreamTooLarge:
    """`what` names the part that was too large, as a Message (`_l("the answer")`)."""
    return UpstreamTooLarge(
        _l(
            "Upstream answer too large: {what} from {host} is over {size} ({setting})",
            what=what,
            host=host,
            size=_size_text(limit),
            setting=setting,
        )
    )


def body_too_large(host: str, limit: int) -> UpstreamTooLarge:
    return too_large(host, _l("the answer"), limit, "MINDROUTE_UPSTREAM_MAX_BODY_BYTES")


def line_too_long(host: str, limit: int) -> UpstreamTooLarge:
    return too_large(host, _l("one line of the stream"), limit, "MINDROUTE_UPSTREAM_MAX_LINE_BYTES")
