"""The plumbing the fake providers share: what a request held, the reply, the ASGI app, the server thread."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn

OPENAI_KEY = "sk-proj-FakeOpenAIkey0123456789abcdefXYZ"
ANTHROPIC_KEY = "sk-ant-api03-FakeAnthropicKey0123456789-abcXYZ"
GOOGLE_KEY = "AIzaSyFakeGoogleKey0123456789abcdefghi"

PROMPT_TOKENS = 17
COMPLETION_TOKENS = 5
SLOW_FIRST_BYTE_S = 3.0
ENDLESS_EVENT_GAP_S = 0.05
ENDLESS_EVENTS = 600  # 30 s: far longer than any test waits

_INVALID = object()  # a request body that was not JSON


def answer_pieces(user_text: str) -> list[str]:
    """What every fake answers, in the pieces it streams."""
    return ["Hello", " there!", " You said: ", user_text]


def expected_answer(user_text: str) -> str:
    return "".join(answer_pieces(user_text))


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    # Set when the client went away before this request's answer was complete.
    disconnected: threading.Event = field(default_factory=threading.Event)


@dataclass
class Reply:
    status: int = 200
    json_body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line: a slow first byte
    events: list[bytes] | None = None  # an SSE answer, sent piece by piece
    event_gap_s: float = 0.0
    cut_off: bool = False  # drop the connection after the events instead of ending the body


def sse(data: Any, event: str | None = None, newline: str = "\n") -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}{newline}" if event else ""
    return f"{head}data: {text}{newline}{newline}".encode()


class FakeProvider:
    """The ASGI plumbing shared by the three fakes: record the request, answer, notice a disconnect."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.requests: list[Received] = []

    def reset(self) -> None:
        self.requests.clear()

    @property
    def last(self) -> Received:
        return self.requests[-1]

    def handle(self, req: Received) -> Reply:
        raise NotImplementedError

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = _INVALID
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope["query_string"].decode()))
        received = Received(scope["method"], scope["path"], query, headers, body)
        self.requests.append(received)
        reply = self.handle(received)

        gone = asyncio.Event()

        async def listen() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    received.disconnected.set()
                    return

        listener = asyncio.create_task(listen())
        try:
            await self._send(reply, send, gone)
        finally:
            listener.cancel()

    async def _gone_within(self, gone: asyncio.Event, seconds: float) -> bool:
        try:
            await asyncio.wait_for(gone.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _send(self, reply: Reply, send: Any, gone: asyncio.Event) -> None:
        if reply.delay_s and await self._gone_within(gone, reply.delay_s):
            return
        extra = [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        if reply.events is None:
            payload = reply.raw if reply.raw is not None else json.dumps(reply.json_body).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": reply.status,
                    "headers": [(b"content-type", b"application/json"), *extra],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), *extra],
            }
        )
        for chunk in reply.events:
            if gone.is_set():
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if reply.event_gap_s and await self._gone_within(gone, reply.event_gap_s):
                return
        if reply.cut_off:
            # uvicorn drops the connection when an app fails after the headers: a broken stream.
            raise ConnectionAbortedError("fake provider: stream cut off")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _last_user_text(messages: list[dict[str, Any]], text_of: Any) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message)
    return ""


def _is_base64(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        return False
    return True


# --- running one ----------------------------------------------------------------------------


class FakeServer:
    """A fake provider served by uvicorn on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, fake: FakeProvider) -> None:
        self.fake = fake
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            fake,
            lifespan="off",
            log_level="critical",
            access_log=False,
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake provider did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


# --- how the fakes' "model" behaves with tools and schemas (the same in all three protocols) ----------


def example_from_schema(schema: Any) -> Any:
    """A small value that matches a JSON Schema: what the fakes' model "writes" for tool arguments and
    structured output. Objects get every declared property (required or not), arrays one item, enums
    their first value, anyOf its first branch; $ref into $defs/definitions is followed."""
    return _example(schema, schema if isinstance(schema, dict) else {})


def _example(schema: Any, root: dict[str, Any]) -> Any:
    if not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _example(target, root)
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            branches = [b for b in schema[key] if not (isinstance(b, dict) and b.get("type") in ("null", "NULL"))]
            return _example((branches or schema[key])[0], root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = kind.lower() if isinstance(kind, str) else ("object" if "properties" in schema else "string")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _example(sub, root) for name, sub in properties.items()}
    if kind == "array":
        return [_example(schema.get("items") or {"type": "string"}, root)]
    return {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, "x")


def tool_results_answer(results: list[str]) -> str:
    """What the fakes' model answers once the last messages are tool results."""
    return "Tool results: " + " | ".join(results)
