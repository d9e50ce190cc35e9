"""Where a request comes from: the app's own origins, the same-origin check, HTTPS and the caller's address,
each honouring X-Forwarded-* only behind a trusted proxy (MINDROUTE_TRUST_PROXY)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request

from mindroute.config import get_settings, normalize_origin


def _forwarded(headers: Headers, name: str) -> str:
    """The first value of an X-Forwarded-* header, honoured only with MINDROUTE_TRUST_PROXY."""
    if not get_settings().trust_proxy:
        return ""
    return headers.get(name, "").split(",")[0].strip()


def is_https(request: Request) -> bool:
    """Whether the browser reached the app over HTTPS (directly, or as a trusted proxy says)."""
    return request.url.scheme == "https" or _forwarded(request.headers, "x-forwarded-proto").lower() == "https"


def allowed_origins(headers: Headers, scheme: str) -> tuple[str, ...]:
    """The origins a browser page of this app has: MINDROUTE_PUBLIC_ORIGIN when set, else the
    request's own, from its scheme (ws -> http, wss -> https) and Host header (X-Forwarded-Proto
    and -Host instead only behind a trusted proxy)."""
    configured = get_settings().public_origins
    if configured:
        return configured
    scheme = _forwarded(headers, "x-forwarded-proto").lower() or {"ws": "http", "wss": "https"}.get(scheme, scheme)
    host = _forwarded(headers, "x-forwarded-host") or headers.get("host", "")
    own = normalize_origin(f"{scheme}://{host}") if host else None
    return (own,) if own else ()


def origin_allowed(origin: str | None, headers: Headers, scheme: str) -> bool:
    """Exactly one of `allowed_origins`: scheme, host and port; a missing or opaque origin never."""
    if not origin or origin == "null":
        return False
    normalized = normalize_origin(origin)
    return normalized is not None and normalized in allowed_origins(headers, scheme)


def is_same_origin(request: Request) -> bool:
    """Cross-site POSTs are refused: Streamlit's XSRF protection does not cover our routes.
    The Origin (or, when a browser sends none, the Referer's origin) must be the app's exactly."""
    source = request.headers.get("origin")
    if source is None and request.headers.get("referer"):
        referer = urlsplit(request.headers["referer"])
        source = f"{referer.scheme}://{referer.netloc}"
    return origin_allowed(source, request.headers, request.url.scheme)


def client_address(peer: str | None, forwarded_for: str | None) -> str | None:
    """The caller's address for logs and throttling: the connection's peer, or the first
    X-Forwarded-For address when MINDROUTE_TRUST_PROXY says a proxy in front sets it honestly."""
    if get_settings().trust_proxy and forwarded_for:
        first = forwarded_for.split(",")[0].strip()
        if first:
            return first[:50]
    return peer[:50] if peer else None
