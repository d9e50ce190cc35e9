"""Server-sent events for the API: the `data:` framing, and an event-stream answer that stops when the client goes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


def sse_data(payload: dict[str, Any] | str) -> bytes:
    """One event: `data: <payload>` (a dict as compact JSON) and the blank line that ends it."""
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


SSE_DONE = sse_data("[DONE]")


class EventStreamResponse(Response):
    """text/event-stream that stops (and closes its source) as soon as the client disconnects,
    whichever ASGI spec version the server speaks."""

    def __init__(self, body: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.raw_headers.append((b"content-type", b"text/event-stream; charset=utf-8"))
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def listen() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(listen)
            try:
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                async for data in self._body:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                with anyio.CancelScope(shield=True):
                    await self._body.aclose()  # type: ignore[attr-defined]
                group.cancel_scope.cancel()
