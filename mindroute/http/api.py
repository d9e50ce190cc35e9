"""The OpenAI-compatible HTTP API: /v1/chat/completions, /v1/embeddings, /v1/completions, /v1/models,
/v1/models/{id} and /v1/openapi.json.

Served beside Streamlit by app.py (`ApiFirst`, its first middleware, hands every /v1 request to
`v1_app` before the page middleware), or alone with `uvicorn mindroute.http.api:app --workers N`.
Every rule comes from the services: keys (api_keys), who may call what (admission), the one Logs
row per call (call_log); this module assembles the routes (chat.py, models_routes.py, openapi.py)
into one plain ASGI app, with its lifespan.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from mindroute.config import get_settings
from mindroute.db import get_engine
from mindroute.http import operations, web
from mindroute.http.answers import error_response
from mindroute.http.chat import chat_completions_app
from mindroute.http.completions import completions_app
from mindroute.http.cors import Cors
from mindroute.http.embeddings import embeddings_app
from mindroute.http.models_routes import model_route, models_route
from mindroute.http.openapi import openapi_route
from mindroute.http.runtime import settle_runtime
from mindroute.providers.transport_aiohttp import aclose_shared_async_client
from mindroute.services import admission, limit_counters, retention_schedule
from mindroute.services.log_writer import start_log_writer, stop_log_writer

log = logging.getLogger("mindroute.http.api")


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """The web lifespan (schema up to date) and the Logs write-behind; at shutdown, close the
    provider connection pool and write every queued Logs row."""
    async with web.lifespan(app):
        settle_runtime()
        operations.start(get_engine())
        start_log_writer(get_engine())
        try:
            async with retention_schedule.scheduled(get_engine(), get_settings().log_retention_days):
                yield
        finally:
            await aclose_shared_async_client()
            await admission.aclose_async_readers()
            await limit_counters.aclose_pools()  # the limit counters' PostgreSQL and Redis connections
            # After uvicorn has finished every request: the queued Logs rows are written before exit.
            await run_in_threadpool(stop_log_writer)
            admission.dispose_read_engines()


def is_api_path(path: str) -> bool:
    """Whether a request path belongs to the API (/v1 and below), which answers every one of them."""
    return path.startswith("/v1/") or path == "/v1"


async def _unknown_url(scope: Scope, receive: Receive, send: Send) -> None:
    method, path = scope.get("method", "GET"), scope["path"]
    shown = path if len(path) <= 200 else path[:200] + "…"
    message = f"Unknown request URL: {method} {shown}. See /v1/openapi.json for the routes MindRoute serves."
    await error_response(404, message, "unknown_url")(scope, receive, send)


_MODEL_PREFIX = "/v1/models/"
_POST_ROUTES = {"/v1/embeddings": embeddings_app, "/v1/completions": completions_app}


class V1App:
    """Every /v1 request as a plain ASGI app, with no framework router or middleware in front:
    POST /v1/chat/completions, POST /v1/embeddings, POST /v1/completions, GET /v1/models,
    GET /v1/models/{id} (ids contain "/"), GET /v1/openapi.json; any other path or method gets OpenAI's
    JSON 404 (code "unknown_url")."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._dispatch(scope, receive, tracking_send)
        except Exception:
            log.exception("the API failed on %s %s", scope.get("method"), scope["path"][:200])
            if started:
                raise  # the answer is under way: the server can only close the connection
            message = "MindRoute failed to answer this request; the error is in its server log"
            await error_response(500, message)(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope.get("method")
        if path == "/v1/chat/completions" and method == "POST":
            await chat_completions_app(scope, receive, send)
            return
        if method == "POST" and path in _POST_ROUTES:
            await _POST_ROUTES[path](scope, receive, send)
            return
        if method in ("GET", "HEAD"):
            if path == "/v1/models":
                response = await models_route(Request(scope, receive))
            elif path.startswith(_MODEL_PREFIX) and len(path) > len(_MODEL_PREFIX):
                response = await model_route(Request(scope, receive), path[len(_MODEL_PREFIX) :])
            elif path == "/v1/openapi.json":
                response = await openapi_route(Request(scope, receive))
            else:
                response = None
            if response is not None:
                await response(scope, receive, send)
                return
        await _unknown_url(scope, receive, send)


# CORS (http/cors.py) around it: OPTIONS preflights, and the allow headers for browsers' calls; outside that, the
# request id of every answer and of its call's log lines.
v1_app = operations.RequestIds(Cors(V1App()))


class ApiFirst:
    """ASGI middleware that hands every /v1 request to the API before any middleware after it runs:
    app.py puts it first in the st.App's middleware, so API calls skip Streamlit's and MindRoute's
    page middleware (session cookie, path security, sessions, gzip)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_api_path(scope["path"]):
            await v1_app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def routes() -> list[BaseRoute]:
    """The API as routes, for mounting in another Starlette app: every /v1 path goes to V1App."""
    return [Route("/v1", v1_app), Route("/v1/{rest:path}", v1_app)]


def _standalone_routes() -> list[BaseRoute]:
    health: Callable[[Request], Awaitable[Response]] = web.healthz_route
    return [Route("/healthz", health, methods=["GET"]), *operations.routes()]


class _Api:
    """The standalone API: /v1 straight to V1App, everything else (/healthz, lifespan) through
    Starlette."""

    def __init__(self) -> None:
        self.starlette = Starlette(routes=_standalone_routes(), lifespan=lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_api_path(scope["path"]):
            await v1_app(scope, receive, send)
        else:
            await self.starlette(scope, receive, send)


app = _Api()
