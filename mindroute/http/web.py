"""MindRoute's own HTTP routes beside Streamlit: sign-in cookies, session rotation, health."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mindroute.config import get_settings, normalize_origin
from mindroute.db import ensure_schema, get_engine, transaction
from mindroute.services import auth

log = logging.getLogger("mindroute.http.web")

SESSION_COOKIE = "mindroute_session"
# Set by app.py when these routes are mounted; the pages then sign in through them (cookies)
# instead of keeping the session only in the browser tab.
ROUTES_MOUNTED = False
# Streamlit's own paths and ours: never page loads, so never a reason to rotate a session.
_NOT_PAGE_PREFIXES = ("/_stcore/", "/static/", "/media/", "/component/", "/auth/", "/healthz", "/v1/")


def _forwarded(headers: Headers, name: str) -> str:
    """The first value of an X-Forwarded-* header, honoured only with MINDROUTE_TRUST_PROXY."""
    if not get_settings().trust_proxy:
        return ""
    return headers.get(name, "").split(",")[0].strip()


def _is_https(request: Request) -> bool:
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


def _cookie_secure(request: Request) -> bool:
    configured = get_settings().cookie_secure
    return _is_https(request) if configured is None else configured


def set_session_cookie(response: Response, request: Request, issued: auth.IssuedSession) -> None:
    max_age = int((issued.expires_at - auth.utcnow()).total_seconds()) if issued.remember else None
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        max_age=max_age,  # without "keep me signed in": a browser-session cookie
        path="/",
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(request),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_cookie_secure(request))


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


def _client_ip(request: Request) -> str | None:
    return client_address(request.client.host if request.client else None, request.headers.get("x-forwarded-for"))


def _redirect_home(**query: str) -> RedirectResponse:
    return RedirectResponse("/" + (f"?{urlencode(query)}" if query else ""), status_code=303)


# --- routes ---------------------------------------------------------------------------------


def _sign_in(email: str, password: str, remember: bool, ip: str | None) -> auth.SignInResult | auth.IssuedSession:
    with transaction() as session:
        result = auth.sign_in(session, email, password, ip)
        if result.user is None:
            return result  # the failed attempt commits with this transaction
        auth.prune(session)  # cheap with the expiresAt index; keeps the tables small
        return auth.issue_session(session, result.user, remember=remember)


async def sign_in_route(request: Request) -> Response:
    if not is_same_origin(request):
        return JSONResponse({"error": "cross-site request refused"}, status_code=403)
    form = await request.form()
    email = str(form.get("email", ""))
    password = str(form.get("password", ""))
    remember = form.get("remember") in ("on", "true", "1")
    outcome = await run_in_threadpool(_sign_in, email, password, remember, _client_ip(request))
    if isinstance(outcome, auth.SignInResult):
        if outcome.throttled:
            return _redirect_home(signin="throttled", wait=str(outcome.wait_seconds))
        return _redirect_home(signin="failed")
    response = _redirect_home()
    set_session_cookie(response, request, outcome)
    return response


async def sign_out_route(request: Request) -> Response:
    if not is_same_origin(request):
        return JSONResponse({"error": "cross-site request refused"}, status_code=403)
    token = request.cookies.get(SESSION_COOKIE)

    def revoke() -> None:
        with transaction() as session:
            auth.revoke_token(session, token)

    await run_in_threadpool(revoke)
    response = _redirect_home()
    clear_session_cookie(response, request)
    return response


async def healthz_route(_request: Request) -> Response:
    def check() -> None:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(check)
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"; the reason goes to the server log
        log.warning("health check failed: %s", exc.__class__.__name__)
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


# --- origin checks and security headers -------------------------------------------------------

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


# --- session rotation on page loads ---------------------------------------------------------


class SessionCookieMiddleware(BaseHTTPMiddleware):
    """On a page load: rotate a day-old session token, and clear a cookie that no longer signs in."""

    async def dispatch(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if (
            token is None
            or request.method != "GET"
            or request.url.path.startswith(_NOT_PAGE_PREFIXES)
            or "text/html" not in request.headers.get("accept", "")
        ):
            return await call_next(request)

        def check() -> tuple[str, auth.IssuedSession | None]:
            with transaction() as session:
                resolved = auth.resolve_session(session, token)
                if resolved is None:
                    return "invalid", None
                if resolved.needs_rotation():
                    return "rotated", auth.rotate_session(session, resolved)
                return "valid", None

        state, issued = await run_in_threadpool(check)
        if state == "rotated":
            # The page's own scripts open the websocket after this response, with the new cookie.
            request.cookies[SESSION_COOKIE] = issued.token
        response = await call_next(request)
        if state == "invalid":
            clear_session_cookie(response, request)
        elif issued is not None:
            set_session_cookie(response, request, issued)
        return response


@contextlib.asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """Bring the database to the code's schema before serving (advisory-locked on PostgreSQL)."""
    await run_in_threadpool(ensure_schema, get_engine())
    yield


def routes() -> list[BaseRoute]:
    return [
        Route("/auth/signin", sign_in_route, methods=["POST"]),
        Route("/auth/signout", sign_out_route, methods=["POST"]),
        Route("/healthz", healthz_route, methods=["GET"]),
    ]


def middleware() -> list[Middleware]:
    return [Middleware(BrowserGuardMiddleware), Middleware(SessionCookieMiddleware)]
