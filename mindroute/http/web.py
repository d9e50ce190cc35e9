"""MindRoute's own HTTP routes beside Streamlit (sign-in, sign-out, health), their lifespan and middleware.

The pieces they stand on: the session cookie (cookies.py), origin checks and the caller's address
(origins.py), and the browser guard with its security headers (guard.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mindroute.config import get_settings
from mindroute.db import ensure_schema, get_engine, transaction
from mindroute.http.cookies import SESSION_COOKIE, SessionCookieMiddleware, clear_session_cookie, set_session_cookie
from mindroute.http.guard import BrowserGuardMiddleware
from mindroute.http.origins import client_address, is_same_origin, origin_allowed
from mindroute.services import auth
from mindroute.services.call_log import USER_AGENT_MAX_CHARS

log = logging.getLogger("mindroute.http.web")

# Set by app.py when these routes are mounted; the pages then sign in through them (cookies)
# instead of keeping the session only in the browser tab.
ROUTES_MOUNTED = False
# The app's page URLs (/usage -> "usage"), set by app.py from the navigation: the only places a sign-in
# lands besides "/", so a crafted Referer can never make it an open redirect.
PAGE_PATHS: frozenset[str] = frozenset()
# Query keys of the sign-in's own outcome, never carried on.
_OUTCOME_KEYS = frozenset({"signin", "wait"})
_MAX_QUERY_CHARS = 2000


def _client_ip(request: Request) -> str | None:
    return client_address(request.client.host if request.client else None, request.headers.get("x-forwarded-for"))


def _redirect_home(**query: str) -> RedirectResponse:
    return RedirectResponse("/" + (f"?{urlencode(query)}" if query else ""), status_code=303)


def landing(request: Request) -> tuple[str, list[tuple[str, str]]]:
    """Where the sign-in form was posted from (its Referer: the page the visitor opened, with its query),
    as a known page's path and the query to keep; ("/", []) for anything else."""
    referer = urlsplit(request.headers.get("referer", ""))
    if not origin_allowed(f"{referer.scheme}://{referer.netloc}", request.headers, request.url.scheme):
        return "/", []
    name = referer.path.strip("/")
    if name not in PAGE_PATHS:
        return "/", []
    query = [(k, v) for k, v in parse_qsl(referer.query[:_MAX_QUERY_CHARS], keep_blank_values=True)]
    return "/" + name, [(k, v) for k, v in query if k not in _OUTCOME_KEYS]


def _redirect_to(path: str, query: list[tuple[str, str]], **outcome: str) -> RedirectResponse:
    pairs = [*query, *outcome.items()]
    return RedirectResponse(path + (f"?{urlencode(pairs)}" if pairs else ""), status_code=303)


def _sign_in(
    email: str, password: str, remember: bool, ip: str | None, user_agent: str | None = None
) -> auth.SignInResult | auth.IssuedSession:
    with transaction() as session:
        result = auth.sign_in(session, email, password, ip, user_agent)
        if result.user is None:
            return result  # the failed attempt commits with this transaction
        auth.prune(session)  # cheap with the expiresAt index; keeps the tables small
        return auth.issue_session(session, result.user, remember=remember)


async def sign_in_route(request: Request) -> Response:
    """POST /auth/signin (same-origin form): the session cookie and on to the page the form was on (its
    path and query, see `landing`), or back there with why not."""
    if not is_same_origin(request):
        return JSONResponse({"error": "cross-site request refused"}, status_code=403)
    if not get_settings().password_signin:
        return JSONResponse({"error": "password sign-in is off: sign in with single sign-on"}, status_code=403)
    form = await request.form()
    email = str(form.get("email", ""))
    password = str(form.get("password", ""))
    remember = form.get("remember") in ("on", "true", "1")
    agent = (request.headers.get("user-agent") or "")[:USER_AGENT_MAX_CHARS] or None  # for the audit row
    outcome = await run_in_threadpool(_sign_in, email, password, remember, _client_ip(request), agent)
    path, query = landing(request)
    if isinstance(outcome, auth.SignInResult):
        if outcome.throttled:
            return _redirect_to(path, query, signin="throttled", wait=str(outcome.wait_seconds))
        return _redirect_to(path, query, signin="failed")
    response = _redirect_to(path, query)
    set_session_cookie(response, request, outcome)
    return response


async def sign_out_route(request: Request) -> Response:
    """POST /auth/signout (same-origin): the session revoked and its cookie cleared."""
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
    """GET /healthz: 200 when the database answers, else 503 (the reason goes to the server log only)."""

    def check() -> None:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(check)
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"; the reason goes to the server log
        log.warning("health check failed: %s", exc.__class__.__name__)
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@contextlib.asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """Bring the database to the code's schema before serving (advisory-locked on PostgreSQL)."""
    await run_in_threadpool(ensure_schema, get_engine())
    yield


def routes() -> list[BaseRoute]:
    """Sign-in, sign-out, health and metrics, for the app (app.py) or a test's Starlette."""
    from mindroute.http import operations

    return [
        Route("/auth/signin", sign_in_route, methods=["POST"]),
        Route("/auth/signout", sign_out_route, methods=["POST"]),
        Route("/healthz", healthz_route, methods=["GET"]),
        *operations.routes(),
    ]


def middleware() -> list[Middleware]:
    """The browser guard, then session rotation on page loads."""
    return [Middleware(BrowserGuardMiddleware), Middleware(SessionCookieMiddleware)]
