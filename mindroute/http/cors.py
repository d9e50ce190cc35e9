"""CORS for the API's /v1 paths: preflights answered for the origins MINDROUTE_API_CORS_ORIGINS allows,
and the allow/expose headers added to the answers they get; a request without an Origin costs a header scan."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from mindroute.config import get_settings
from mindroute.http.answers import error_response

ALLOW_METHODS = b"GET, POST, OPTIONS"
MAX_AGE_S = b"600"
# Always allowed, whatever the preflight asks.
BASE_ALLOW_HEADERS = ("authorization", "content-type")
# Also allowed when a preflight asks for them: what the OpenAI SDKs and common clients send.
EXTRA_ALLOW_HEADERS = frozenset(
    {
        "accept",
        "accept-language",
        "content-language",
        "user-agent",
        "x-request-id",
        "idempotency-key",
        "openai-organization",
        "openai-project",
        "openai-beta",
        "openai-version",
    }
)
ALLOW_HEADER_PREFIXES = ("x-stainless-",)
EXPOSE_HEADERS = (
    b"x-request-id, x-mindroute-overhead-ms, retry-after, x-ratelimit-limit-requests, x-ratelimit-limit-tokens, "
    b"x-ratelimit-remaining-requests, x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, "
    b"x-ratelimit-reset-tokens"
)


def allowed_origin(origin: str) -> str | None:
    """The access-control-allow-origin value for a request from `origin`: the origin itself, "*", or
    None when MINDROUTE_API_CORS_ORIGINS does not allow it (or is empty: CORS off)."""
    allowed = get_settings().api_cors_origins
    if not allowed:
        return None
    if origin in allowed:
        return origin
    return "*" if "*" in allowed else None


def allow_headers(requested: str | None) -> str:
    """The base headers and, of those the preflight asked for, the ones on the fixed allow-list."""
    names = list(BASE_ALLOW_HEADERS)
    for part in (requested or "").split(","):
        name = part.strip().lower()
        if name and name not in names and (name in EXTRA_ALLOW_HEADERS or name.startswith(ALLOW_HEADER_PREFIXES)):
            names.append(name)
    return ", ".join(names)


def _request_headers(scope: Scope) -> tuple[str | None, str | None]:
    """(Origin, Access-Control-Request-Headers) of the request, each None when absent."""
    origin = requested = None
    for name, value in scope["headers"]:
        if name == b"origin":
            origin = value.decode("latin-1") if origin is None else origin
        elif name == b"access-control-request-headers":
            requested = value.decode("latin-1") if requested is None else requested
    return origin, requested


class Cors:
    """ASGI middleware around the /v1 app. OPTIONS is always answered here (never reaching the app):
    204 with the CORS headers for an allowed origin, else a JSON 403 with none."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "OPTIONS":
            await self._preflight(scope, receive, send)
            return
        origin = next((value for name, value in scope["headers"] if name == b"origin"), None)
        if origin is None:  # the hot path: not a browser's cross-origin call
            await self.app(scope, receive, send)
            return
        allow = allowed_origin(origin.decode("latin-1"))
        if allow is None:
            await self.app(scope, receive, send)
            return
        added = [
            (b"access-control-allow-origin", allow.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
        ]

        async def cors_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"vary"]
                varies = [v for k, v in message.get("headers", ()) if k.lower() == b"vary"]
                vary = b", ".join([*varies, b"Origin"]) if varies else b"Origin"
                message = {**message, "headers": [*headers, *added, (b"vary", vary)]}
            await send(message)

        await self.app(scope, receive, cors_send)

    async def _preflight(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin, requested = _request_headers(scope)
        allow = allowed_origin(origin) if origin is not None else None
        if allow is None:
            if origin is None:
                message = "OPTIONS is answered only as a CORS preflight, with an Origin header"
            elif not get_settings().api_cors_origins:
                message = "Cross-origin calls are off: MINDROUTE_API_CORS_ORIGINS allows no origin"
            else:
                message = "This origin is not allowed to call the API (MINDROUTE_API_CORS_ORIGINS)"
            await error_response(403, message, "cors_not_allowed")(scope, receive, send)
            return
        headers = [
            (b"access-control-allow-origin", allow.encode("latin-1")),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", allow_headers(requested).encode("latin-1")),
            (b"access-control-max-age", MAX_AGE_S),
            (b"vary", b"Origin"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
