"""Asking a provider which models it offers: the admin's "refresh models" and "test connection".

Each protocol module knows its own model-list call (`models_url`, `auth_headers`, `models_page`:
OpenAI's {"data": [...]}, Anthropic's has_more/last_id pages, Gemini's nextPageToken); this is the
loop over the pages, through the same sync transport, size limits and error wording as the chat calls.
A failure is returned, not raised, as the provider's own error message with any key text removed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from mindroute.i18n import Message, _l
from mindroute.providers.adapter import ProviderAdapter
from mindroute.providers.errors import ERROR_BODY_SCAN_CHARS, ProviderError, clip
from mindroute.providers.registry import adapter_for
from mindroute.providers.transport import SyncAnswer, as_timeout
from mindroute.redaction import REDACTED, redact_secrets

# REDACTED is what a key the provider echoed leaves in a result's `error`.
__all__ = ["REDACTED", "ModelListResult", "fetch_models", "models_url", "test_connection"]

DEFAULT_TIMEOUT_S = 10.0
MAX_PAGES = 20  # a provider that keeps saying "more" must not keep us here forever
ERROR_MAX_CHARS = 500


@dataclass(frozen=True)
class ModelListResult:
    """What the provider answered: models on success, its error message (key text removed) otherwise."""

    ok: bool
    status_code: int | None  # the provider's HTTP status; None when no answer came
    latency_ms: int
    models: tuple[str, ...] = ()
    error: str | None = None


class _ListingError(Exception):
    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def models_url(protocol: str, endpoint_url: str) -> str:
    """The model-list URL for an endpoint; ValueError for a protocol MindRoute does not speak."""
    return adapter_for(protocol).models_url(endpoint_url)


def provider_error_message(answer: SyncAnswer, content: bytes) -> str:
    """The message inside a provider's error answer, whichever of the usual shapes it has."""
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    message = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            # OpenAI {"error": {"message", "type", "code"}}, Anthropic {"type": "error", "error": {"type",
            # "message"}}, Google {"error": {"code", "message", "status"}}.
            message = error["message"]
            kind = error.get("status") or error.get("type")
            if isinstance(kind, str) and kind and kind not in message:
                message = f"{message} ({kind})"
        elif isinstance(error, str):  # Ollama, vLLM: {"error": "..."}
            message = error
        elif isinstance(body.get("message"), str):
            message = body["message"]
        elif isinstance(body.get("detail"), str):  # FastAPI-based servers
            message = body["detail"]
    if not message:
        message = answer.text(content[:ERROR_BODY_SCAN_CHARS]).strip() or answer.reason or "no message"
    return f"HTTP {answer.status}: {message}"


def _page(adapter: ProviderAdapter, url: str, api_key: str | None, query: dict[str, str], timeout_s: float) -> Any:
    headers = {"accept": "application/json", **adapter.auth_headers(api_key)}
    with adapter.sync_transport.get(url, headers, query, as_timeout(timeout_s)) as answer:
        try:
            content = answer.read()
        except ProviderError as exc:  # too large, or a body that does not decompress
            raise _ListingError(exc.message, answer.status) from None
    if not answer.ok:
        raise _ListingError(provider_error_message(answer, content), answer.status)
    try:
        return json.loads(content), answer.status
    except ValueError:
        raise _ListingError(
            _l("HTTP {status}, but the answer is not JSON: is {url} a model list?", status=str(answer.status), url=url),
            answer.status,
        ) from None


def _fetch(
    protocol: str, endpoint_url: str, api_key: str | None, *, all_pages: bool, timeout_s: float
) -> ModelListResult:
    adapter = adapter_for(protocol)
    api_key = (api_key or "").strip() or None
    started = time.perf_counter()

    def failed(message: str, status: int | None) -> ModelListResult:
        latency_ms = round((time.perf_counter() - started) * 1000)
        shown = clip(redact_secrets(message, api_key), ERROR_MAX_CHARS)
        if isinstance(message, Message) and shown == message:
            shown = message  # MindRoute's own words: translated where shown
        return ModelListResult(ok=False, status_code=status, latency_ms=latency_ms, error=shown)

    if api_key is None and adapter.key_required:
        return ModelListResult(
            ok=False, status_code=None, latency_ms=0, error=_l("No API key: type one or save one first")
        )
    url = adapter.models_url(endpoint_url)
    status: int | None = None
    models: list[str] = []
    first_query = adapter.models_first_query()
    try:
        query = dict(first_query)
        for _ in range(MAX_PAGES):
            body, status = _page(adapter, url, api_key, query, timeout_s)
            try:
                page, next_query = adapter.models_page(body)
            except (ValueError, KeyError, TypeError):
                raise _ListingError(
                    _l(
                        "HTTP {status}, but the answer is not a {protocol} model list: is the endpoint right?",
                        status=str(status),
                        protocol=protocol,
                    ),
                    status,
                ) from None
            models.extend(page)
            if next_query is None or not all_pages:
                break
            query = {**first_query, **next_query}
    except _ListingError as exc:
        return failed(exc.message, exc.status_code)
    except ProviderError as exc:  # no answer at all: the transport's own words
        return failed(exc.message, None)
    latency_ms = round((time.perf_counter() - started) * 1000)
    return ModelListResult(ok=True, status_code=status, latency_ms=latency_ms, models=tuple(sorted(set(models))))


def fetch_models(
    protocol: str, endpoint_url: str, api_key: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ModelListResult:
    """Every model the provider lists (all pages), sorted: what "refresh models" stores."""
    return _fetch(protocol, endpoint_url, api_key, all_pages=True, timeout_s=timeout_s)


def test_connection(
    protocol: str, endpoint_url: str, api_key: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ModelListResult:
    """One authenticated request to the model list: status, latency, and the first page of models."""
    return _fetch(protocol, endpoint_url, api_key, all_pages=False, timeout_s=timeout_s)


# pytest would otherwise collect this function as a test wherever a test module imports it by name.
test_connection.__test__ = False  # type: ignore[attr-defined]
