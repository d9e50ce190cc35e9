"""MindRoute's own HTTP routes beside Streamlit: sign-in cookies, session rotation, health."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mindroute.config import get_settings
from mindroute.db import ensure_schema, get_engine, transaction
from mindroute.services import auth

log = logging.getLogger("mindroute.web")

SESSION_COOKIE = "mindroute_session"
# Set by app.py when these routes are mounted; the pages then sign in through them (cookies)
# instead of keeping the session only in the browser tab.
ROUTES_MOUNTED = False
# Streamlit's own paths and ours: never page loads, so never a reason to rotate a session.
_NOT_PAGE_PREFIXES = ("/_stcore/", "/static/", "/media/", "/component/", "/auth/", "/healthz", "/v1/")


def _is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


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
    """Cross-site POSTs are refused: Streamlit's XSRF protection does not cover our routes."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    host = request.headers.get("x-forwarded-host") or request.headers.get("host") or ""
    return urlsplit(source).netloc.lower() == host.split(",")[0].strip().lower()


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
    return [Middleware(SessionCookieMiddleware)]
