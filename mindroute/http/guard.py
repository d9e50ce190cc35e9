"""The browser guard: refuses cross-origin websockets and writes before Streamlit sees them, and adds the
security headers to every answer but the API's."""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mindroute.http.origins import allowed_origins, origin_allowed

log = logging.getLogger("mindroute.http.web")

# On every page response (and every other response of the app but the API's): the app cannot be
# framed by another site, the browser does not guess content types, and no other site learns
# the app's URLs (with their query strings) from the Referer.
SECURITY_HEADERS = (
    (b"content-security-policy", b"frame-ancestors 'self'"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


_SAFE_METHODS = frozenset(("GET", "HEAD"))


class BrowserGuardMiddleware:
    """Refuses a websocket (Streamlit's `/_stcore/stream`, which runs the pages with the session
    cookie) whose Origin is not exactly the app's own, before Streamlit sees it, as well as any
    other request but GET and HEAD that carries another Origin, and adds SECURITY_HEADERS to
    HTTP responses. The API (/v1) is left alone. Pure ASGI, so it sees websocket scopes too.

    Streamlit's own check admits any port of localhost, 127.0.0.1 and the machine's addresses
    (it compares host names only, and `server.corsAllowedOrigins` can only add to that list),
    so a page on another port of the same host could drive a signed-in admin's session.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            headers = Headers(scope=scope)
            if not origin_allowed(headers.get("origin"), headers, scope.get("scheme", "ws")):
                log.warning(
                    "refused a websocket from origin %r (this app's origin: %s; behind a proxy set "
                    "MINDROUTE_PUBLIC_ORIGIN)",
                    (headers.get("origin") or "")[:200],
                    ", ".join(allowed_origins(headers, scope.get("scheme", "ws")))[:400] or "unknown",
                )
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008})  # before accept: the server answers 403
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http" or scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if scope["method"] not in _SAFE_METHODS:
            # A browser sends Origin with every non-GET request (and its CORS preflight): one from
            # another origin is refused here, whatever Streamlit's CORS check (host names only)
            # would allow, e.g. on its upload endpoint. Programs that send no Origin pass on.
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and not origin_allowed(origin, headers, scope.get("scheme", "http")):
                response = JSONResponse({"error": "cross-site request refused"}, status_code=403)
                await response(scope, receive, _with_security_headers(send))
                return

        await self.app(scope, receive, _with_security_headers(send))


def _with_security_headers(send: Send) -> Send:
    """`send`, adding SECURITY_HEADERS to the response's start unless the app set them."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            present = {name.lower() for name, _ in headers}
            headers.extend((name, value) for name, value in SECURITY_HEADERS if name not in present)
            message = {**message, "headers": headers}
        await send(message)

    return send_with_headers
