"""Asking a provider which models it offers: the admin's "refresh models" and "test connection".

Each protocol's own model-list endpoint, called as its documentation asks:

- openai, openai-compatible: GET {endpoint}/models, `Authorization: Bearer <key>` (no header when
  an openai-compatible server such as Ollama needs no key); answers {"data": [{"id": ...}]}.
- anthropic: GET {endpoint}/v1/models with `x-api-key` and `anthropic-version: 2023-06-01`;
  paginated by `has_more` / `last_id` → `after_id`.
- google: GET {endpoint}/v1beta/models with `x-goog-api-key`; names come as "models/gemini-2.0-flash"
  (the prefix is dropped) and pages by `nextPageToken`. Only models that can generate content are
  kept: embedding and retrieval models cannot answer a chat.

A failure is returned, not raised, as the provider's own error message with any key text removed.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from mindroute.config import get_upstream_limits
from mindroute.providers.base import (
    ACCEPT_ENCODING,
    ERROR_BODY_SCAN_CHARS,
    USER_AGENT,
    UpstreamError,
    _read_sync,
    _text_of,
)

DEFAULT_TIMEOUT_S = 10.0
ANTHROPIC_VERSION = "2023-06-01"
MAX_PAGES = 20  # a provider that keeps saying "more" must not keep us here forever
PAGE_SIZE = 1000  # the largest page Anthropic and Gemini accept
ERROR_MAX_CHARS = 500
REDACTED = "[redacted]"
NO_KEY_PROTOCOLS = ("openai-compatible",)
# A secret shared with the message for this many characters counts as the key showing through.
KEY_FRAGMENT_CHARS = 6


@dataclass(frozen=True)
class ModelListResult:
    """What the provider answered: models on success, its error message (key text removed) otherwise."""

    ok: bool
    status_code: int | None  # the provider's HTTP status; None when no answer came
    latency_ms: int
    models: tuple[str, ...] = ()
    error: str | None = None


class _ProviderError(Exception):
    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


# --- requests per protocol ------------------------------------------------------------------


def models_url(protocol: str, endpoint_url: str) -> str:
    """The model-list URL for an endpoint, tolerating a version segment the admin already typed."""
    base = endpoint_url.rstrip("/")
    if protocol in ("openai", "openai-compatible"):
        return f"{base}/models"
    if protocol == "anthropic":
        return f"{base}/models" if base.endswith("/v1") else f"{base}/v1/models"
    if protocol == "google":
        return f"{base}/models" if base.endswith(("/v1beta", "/v1")) else f"{base}/v1beta/models"
    raise ValueError(f"unknown protocol {protocol!r}")


def auth_headers(protocol: str, api_key: str | None) -> dict[str, str]:
    """The headers that carry the key (and Anthropic's version) for `protocol`."""
    headers = {"accept": "application/json"}
    if protocol == "anthropic":
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if api_key:
            headers["x-api-key"] = api_key
    elif protocol == "google":
        if api_key:
            headers["x-goog-api-key"] = api_key
    elif api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def _openai_page(body: Any) -> tuple[list[str], dict[str, str] | None]:
    items = body.get("data") if isinstance(body, dict) else body  # a few compatible servers send a bare list
    if not isinstance(items, list):
        raise ValueError("no data list")
    return [item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)], None


def _anthropic_page(body: Any) -> tuple[list[str], dict[str, str] | None]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("no data list")
    ids = [item["id"] for item in body["data"] if isinstance(item, dict) and isinstance(item.get("id"), str)]
    more = body.get("has_more") is True and isinstance(body.get("last_id"), str)
    return ids, ({"after_id": body["last_id"]} if more else None)


def _google_page(body: Any) -> tuple[list[str], dict[str, str] | None]:
    if not isinstance(body, dict):
        raise ValueError("not an object")
    items = body.get("models", [])  # an account with no models gets {} back
    if not isinstance(items, list):
        raise ValueError("no models list")
    names = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        methods = item.get("supportedGenerationMethods")
        if isinstance(methods, list) and "generateContent" not in methods:
            continue
        names.append(item["name"].removeprefix("models/"))
    token = body.get("nextPageToken")
    return names, ({"pageToken": token} if isinstance(token, str) and token else None)


_PAGE_READERS = {
    "openai": (_openai_page, {}),
    "openai-compatible": (_openai_page, {}),
    "anthropic": (_anthropic_page, {"limit": str(PAGE_SIZE)}),
    "google": (_google_page, {"pageSize": str(PAGE_SIZE)}),
}


# --- errors ---------------------------------------------------------------------------------


def redact_key(text: str, api_key: str | None) -> str:
    """`text` with the key, and anything that looks like a piece or a masked form of it, replaced.

    Providers echo keys back: OpenAI's 401 says "Incorrect API key provided: sk-abc1***…wxyz".
    """
    if api_key:
        text = text.replace(api_key, REDACTED)

    def scrub(match: re.Match[str]) -> str:
        token = match.group(0)
        if re.search(r"[*•]{3,}", token):  # a masked secret, whoever's it is
            return REDACTED
        if api_key and len(api_key) >= KEY_FRAGMENT_CHARS:
            for start in range(len(api_key) - KEY_FRAGMENT_CHARS + 1):
                if api_key[start : start + KEY_FRAGMENT_CHARS] in token:
                    return REDACTED
        return token

    return re.sub(r"[^\s\"'`,;()<>\[\]{}]+", scrub, text)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_MAX_CHARS else text[: ERROR_MAX_CHARS - 1] + "…"


def provider_error_message(status_code: int, reason: str, content: bytes, charset: str | None = None) -> str:
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
        message = _text_of(content[:ERROR_BODY_SCAN_CHARS], charset).strip() or reason or "no message"
    return f"HTTP {status_code}: {message}"


# --- calling --------------------------------------------------------------------------------


def _get_json(client: httpx.Client, url: str, headers: dict[str, str], params: dict[str, str]) -> tuple[Any, int]:
    # Read as the chat calls read: decompressed as it arrives, refused past the body limit.
    with client.stream("GET", url, headers=headers, params=params) as response:
        try:
            content = _read_sync(response, get_upstream_limits().max_body_bytes, urlsplit(url).netloc)
        except UpstreamError as exc:  # too large, or a body that does not decompress
            raise _ProviderError(exc.message, response.status_code) from None
    if not response.is_success:
        raise _ProviderError(
            provider_error_message(response.status_code, response.reason_phrase, content, response.charset_encoding),
            response.status_code,
        )
    try:
        return json.loads(content), response.status_code
    except ValueError:
        raise _ProviderError(
            f"HTTP {response.status_code}, but the answer is not JSON: is {url} a model list?", response.status_code
        ) from None


def _fetch(
    protocol: str,
    endpoint_url: str,
    api_key: str | None,
    *,
    all_pages: bool,
    timeout_s: float,
    transport: httpx.BaseTransport | None,
) -> ModelListResult:
    if protocol not in _PAGE_READERS:
        raise ValueError(f"unknown protocol {protocol!r}")
    read_page, first_params = _PAGE_READERS[protocol]
    api_key = (api_key or "").strip() or None
    started = time.perf_counter()

    def elapsed_ms() -> int:
        return round((time.perf_counter() - started) * 1000)

    if api_key is None and protocol not in NO_KEY_PROTOCOLS:
        return ModelListResult(ok=False, status_code=None, latency_ms=0, error="No API key: type one or save one first")
    url = models_url(protocol, endpoint_url)
    host = urlsplit(url).netloc
    status: int | None = None
    models: list[str] = []
    try:
        with httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            headers={"user-agent": USER_AGENT, "accept-encoding": ACCEPT_ENCODING},
        ) as client:
            params = dict(first_params)
            for _ in range(MAX_PAGES):
                body, status = _get_json(client, url, auth_headers(protocol, api_key), params)
                try:
                    page, next_params = read_page(body)
                except (ValueError, KeyError, TypeError):
                    raise _ProviderError(
                        f"HTTP {status}, but the answer is not a {protocol} model list: is the endpoint right?", status
                    ) from None
                models.extend(page)
                if next_params is None or not all_pages:
                    break
                params = {**first_params, **next_params}
    except _ProviderError as exc:
        return ModelListResult(
            ok=False,
            status_code=exc.status_code,
            latency_ms=elapsed_ms(),
            error=_clip(redact_key(exc.message, api_key)),
        )
    except httpx.TimeoutException:
        return ModelListResult(
            ok=False, status_code=None, latency_ms=elapsed_ms(), error=f"No answer from {host} within {timeout_s:g} s"
        )
    except httpx.HTTPError as exc:
        detail = redact_key(str(exc) or exc.__class__.__name__, api_key)
        return ModelListResult(
            ok=False, status_code=None, latency_ms=elapsed_ms(), error=_clip(f"Could not reach {host}: {detail}")
        )
    except UnicodeEncodeError:
        return ModelListResult(
            ok=False,
            status_code=None,
            latency_ms=elapsed_ms(),
            error="The API key has characters that cannot be sent in an HTTP header",
        )
    return ModelListResult(ok=True, status_code=status, latency_ms=elapsed_ms(), models=tuple(sorted(set(models))))


def fetch_models(
    protocol: str,
    endpoint_url: str,
    api_key: str | None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> ModelListResult:
    """Every model the provider lists (all pages), sorted: what "refresh models" stores."""
    return _fetch(protocol, endpoint_url, api_key, all_pages=True, timeout_s=timeout_s, transport=transport)


def test_connection(
    protocol: str,
    endpoint_url: str,
    api_key: str | None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> ModelListResult:
    """One authenticated request to the model list: status, latency, and the first page of models."""
    return _fetch(protocol, endpoint_url, api_key, all_pages=False, timeout_s=timeout_s, transport=transport)


# pytest would otherwise collect this function as a test wherever a test module imports it by name.
test_connection.__test__ = False  # type: ignore[attr-defined]
