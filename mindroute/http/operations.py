"""What operators call: `/healthz/live`, `/healthz/ready` and `/metrics`, and the request id every API answer carries
(`x-request-id`, kept from the client when sane) and every log line of its call names."""

from __future__ import annotations

import hmac
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mindroute.config import get_settings
from mindroute.db import get_engine
from mindroute.observability import health, logs, metrics
from mindroute.services import log_writer

REQUEST_ID_HEADER = b"x-request-id"


async def live_route(_request: Request) -> Response:
    """200 while the process answers; no database read (a restart policy's question)."""
    return JSONResponse({"status": "ok"})


async def ready_route(_request: Request) -> Response:
    """200 when this process can do its work (database, migrations, Logs writer), else 503 naming what is not."""
    writer = log_writer.current_log_writer()
    queue = (writer.pending, writer.max_queued) if writer is not None else None
    state = await run_in_threadpool(health.check_ready, get_engine(), queue)
    return JSONResponse(state.body(), status_code=200 if state.ready else 503)


async def metrics_route(request: Request) -> Response:
    """Prometheus' exposition, only to `Authorization: Bearer <MINDROUTE_METRICS_TOKEN>`; 404 without the setting
    (nothing tells a stranger the route exists), 401 with a wrong token."""
    token = get_settings().metrics_token
    if token is None:
        return PlainTextResponse("Not Found", status_code=404)
    sent = request.headers.get("authorization", "")
    scheme, _, value = sent.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        return PlainTextResponse("Unauthorized", status_code=401, headers={"www-authenticate": "Bearer"})
    body, content_type = await run_in_threadpool(metrics.render)
    return Response(body, media_type=content_type)


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz/live", live_route, methods=["GET"]),
        Route("/healthz/ready", ready_route, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]


class RequestIds:
    """ASGI wrapper: the request's id (the client's `x-request-id` when sane, else a new one) set for the log lines
    of the call and sent back in the answer's `x-request-id`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for name, value in scope.get("headers", ()):
            if name == REQUEST_ID_HEADER:
                sent = value.decode("latin-1")
                break
        request_id = logs.accept_request_id(sent)
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = logs.set_request_id(request_id)
        try:
            await self.app(scope, receive, with_id)
        finally:
            logs.reset_request_id(token)


PROVIDER_NAME_TTL_S = 60.0  # a renamed provider's metrics take its new name within this


def provider_names(engine: Engine) -> Callable[[object], str | None]:
    """A provider id's name for the metrics' labels, read at most once a minute per provider (by the Logs
    writer's thread, which counts the calls)."""
    from sqlalchemy import select

    from mindroute.models import Provider

    cache: dict[object, tuple[str | None, float]] = {}
    lock = threading.Lock()

    def lookup(provider_id: object) -> str | None:
        now = time.monotonic()
        with lock:
            hit = cache.get(provider_id)
        if hit is not None and now - hit[1] < PROVIDER_NAME_TTL_S:
            return hit[0]
        try:
            key = provider_id if isinstance(provider_id, uuid.UUID) else uuid.UUID(str(provider_id))
            with engine.connect() as conn:
                name = conn.execute(select(Provider.name).where(Provider.id == key)).scalar()
        except Exception:  # noqa: BLE001 - a label is not worth a failed count: the id stands in
            name = None
        with lock:
            cache[provider_id] = (name, now)
        return name

    return lookup


def start(engine: Engine) -> None:
    """A server's start: logging as configured, and the metrics naming providers."""
    configure_logging()
    metrics.name_providers_with(provider_names(engine))


def configure_logging() -> None:
    """Logging as the settings say (MINDROUTE_LOG_FORMAT, MINDROUTE_LOG_LEVEL), for a server's start."""
    settings = get_settings()
    logs.configure(settings.log_format, settings.log_level)
