"""The session cookie: set at sign-in, cleared at sign-out, and rotated (or cleared) on page loads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

from mindroute.config import get_settings
from mindroute.db import transaction
from mindroute.http.origins import is_https
from mindroute.services import auth

SESSION_COOKIE = "mindroute_session"
# Streamlit's own paths and ours: never page loads, so never a reason to rotate a session.
_NOT_PAGE_PREFIXES = ("/_stcore/", "/static/", "/media/", "/component/", "/auth/", "/healthz", "/v1/")


def _cookie_secure(request: Request) -> bool:
    configured = get_settings().cookie_secure
    return is_https(request) if configured is None else configured


def set_session_cookie(response: Response, request: Request, issued: auth.IssuedSession) -> None:
    """The session's token as an HttpOnly, SameSite=Lax cookie (a browser-session one without "remember")."""
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
    """Tell the browser to drop the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_cookie_secure(request))


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
