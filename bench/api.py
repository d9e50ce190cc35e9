"""Benchmarks: `python -m bench api --requests N --concurrency C [--entry api|app]` measures
what MindRoute adds to a chat call. A local upstream answering like OpenAI after a fixed delay and
MindRoute's API (one process, logging on: `uvicorn mindroute.http.api:app`, or `streamlit run app.py`
with --entry app) run as child processes; this process sends N non-streamed
requests at concurrency C through MindRoute and then directly to the upstream, and prints one JSON
object with the throughput, the latencies both ways, their differences and the Logs rows written.
With --tools the chat body carries two tools and tool_choice "auto", and the upstream answers a tool call.
With --stream the calls ask for stream=true and the upstream streams its answer as server-sent events
(its delay before the first event, then STREAM_PIECES apart by --gap-ms): the figures add the
time to the first byte both ways. With --limits the calling user and its key get rules that never
refuse (limits_for_bench) and the run is made twice, without and with them, printed side by side;
--runs N repeats each (alternating) and prints medians. --load wrk sends the calls from wrk (a load generator in
C, bench.wrk) instead of this process's asyncio client, so the client's CPU does not take a core from what is
measured; a probe of this process then sends one call at a time beside it, for the time to the first byte and
MindRoute's overhead header under that load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from bench import wrk

DEFAULT_DELAY_MS = 20.0
DEFAULT_GAP_MS = 1.0  # between two streamed events
WARMUP_REQUESTS = 50
START_TIMEOUT_S = 60.0  # a busy shared machine can take half a minute to start a process


# --- the upstream ---------------------------------------------------------------------------------

TEXT_CHOICE = {"index": 0, "message": {"role": "assistant", "content": "Hello there!"}, "finish_reason": "stop"}
# The canned answer to a body with tools: one call of the first tool.
TOOL_CALL_CHOICE = {
    "index": 0,
    "message": {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_bench1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
            }
        ],
    },
    "finish_reason": "tool_calls",
}
# The two tools a --tools body offers.
BENCH_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time in a time zone",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
        },
    },
]


# A streamed answer's text, one event each (the first also carries the role), then one write of the
# finish, usage and [DONE] events.
STREAM_PIECES = ("Hello", " there", "!", " How", " are", " you?")
STREAM_TEXT = "".join(STREAM_PIECES)


def _upstream_delay_s() -> float:
    return float(os.environ.get("MINDROUTE_BENCH_DELAY_MS", DEFAULT_DELAY_MS)) / 1000


def _upstream_gap_s() -> float:
    return float(os.environ.get("MINDROUTE_BENCH_GAP_MS", DEFAULT_GAP_MS)) / 1000


def _stream_events(model: str) -> list[bytes]:
    """The upstream's streamed answer as Chat Completions sends it: one write per element."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def event(choices: list[dict[str, Any]], **more: Any) -> bytes:
        return b"data: " + json.dumps(base | {"choices": choices} | more, separators=(",", ":")).encode() + b"\n\n"

    writes = [event([{"index": 0, "delta": {"role": "assistant", "content": STREAM_PIECES[0]}}])]
    writes += [event([{"index": 0, "delta": {"content": piece}}]) for piece in STREAM_PIECES[1:]]
    writes[-1] += event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    writes[-1] += event([], usage={"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16})
    writes[-1] += b"data: [DONE]\n\n"
    return writes


async def _send_stream(send: Any, model: str) -> None:
    head = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    writes = _stream_events(model)
    for index, data in enumerate(writes):
        if index:
            await asyncio.sleep(_upstream_gap_s())
        await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering POST /v1/chat/completions like OpenAI, after MINDROUTE_BENCH_DELAY_MS; a
    stream=true body gets server-sent events, MINDROUTE_BENCH_GAP_MS apart."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    body = b""
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    request = json.loads(body or b"{}")
    model = request.get("model", "bench-model")
    await asyncio.sleep(_upstream_delay_s())
    if request.get("stream"):
        await _send_stream(send, model)
        return
    choice = TOOL_CALL_CHOICE if request.get("tools") else TEXT_CHOICE
    answer = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }
    payload = json.dumps(answer).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


# --- processes ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "30"]
    # The servers' log lines (stdout) go to this process's stderr: its stdout is the figures' JSON.
    return subprocess.Popen(command, env=env, stdout=2)


PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENTRIES = ("api", "app")
LOADS = ("python", "wrk")


def _serve_entry(entry: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """MindRoute as users serve it: `uvicorn mindroute.http.api:app` (the API alone) or, for "app",
    `streamlit run app.py` from the project folder (as README says), /v1 beside the pages."""
    if entry == "api":
        return _serve("mindroute.http.api:app", port, env)
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true", "--logger.level", "warning"]
    # Its banner ("You can now view your Streamlit app…") would mix with the figures on stdout.
    return subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)


def _wait_until_up(url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start within {START_TIMEOUT_S:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()  # SIGTERM: uvicorn's graceful shutdown
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (Linux /proc/stat); (0, 0) elsewhere."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


# --- the database ---------------------------------------------------------------------------------


# The rules --limits gives the calling user and its key: every limit on, none that refuses during a run.
BENCH_LIMITS = {
    "rpm": 10**8,
    "tpm": 10**12,
    "budget_usd": 10**6,
    "budget_tokens": 10**12,
    "period": "month",
    "timezone": "Asia/Kolkata",  # a half-hour zone (UTC+05:30)
}
# The bench model's price (USD per million tokens), so USD budgets count spend.
BENCH_PRICES = {"bench-model": {"input": 1.0, "output": 2.0}}


def limits_for_bench(session: Any, user_id: Any, key_id: Any) -> int:
    """Set BENCH_LIMITS on the user and on the key (as the CLI, no actor); the number of rules set."""
    from mindroute.services import limit_admin, limit_rules

    settings = limit_rules.validate_settings(**BENCH_LIMITS)
    targets = (limit_rules.user_target(user_id), limit_rules.key_target(key_id))
    for target in targets:
        limit_admin.set_limit(session, None, target, settings)
    return len(targets)


def _set_up(database_url: str, upstream_url: str, limits: bool = False) -> tuple[str, Any, int]:
    """Migrate the database and add a user, a provider at the upstream and a key, and with `limits`
    their rules; (key and model id, engine, rules set)."""
    from mindroute import config, security
    from mindroute.db import ensure_schema, make_engine, transaction
    from mindroute.models import Provider, User, UserProvider
    from mindroute.services import api_keys

    config.get_settings.cache_clear()
    engine = make_engine(database_url)
    ensure_schema(engine)
    box = security.SecretBox(config.get_settings().secret_keys)
    with transaction(engine) as session:
        user = User(
            email=f"bench-{time.time_ns()}@example.com",
            name="bench",
            role="user",
            password="!",  # noqa: S106 - no usable password: the bench user only has an API key
            is_active=True,
        )
        provider = Provider(
            name=f"bench-{time.time_ns()}",
            protocol="openai",
            endpoint_url=upstream_url + "/v1",
            api_key=box.encrypt("sk-bench-upstream-key-0123456789"),
            settings={"models": ["bench-model"], "default_model": "bench-model", "prices": BENCH_PRICES},
        )
        session.add_all([user, provider])
        session.flush()
        session.add(UserProvider(user_id=user.id, provider_id=provider.id, allowed=True))
        issued = api_keys.create_key(session, user, user.id, "bench", None)
        session.flush()
        rules = limits_for_bench(session, user.id, issued.key.id) if limits else 0
        model_id = f"{provider.name}/bench-model"
    return issued.plaintext + "\n" + model_id, engine, rules


def _log_rows(engine: Any) -> int:
    from sqlalchemy import func, select

    from mindroute.db import transaction
    from mindroute.models import Log

    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(Log)) or 0


# --- load -----------------------------------------------------------------------------------------


async def _call(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str], bytes, float]:
    """One HTTP/1.1 request on a kept-alive connection: (status, headers, body, perf_counter() when the
    body's first bytes came). The body is framed by its content-length or chunked (a stream)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() != "chunked":
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body, time.perf_counter()
    parts: list[bytes] = []
    first = 0.0
    while size := int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
        parts.append((await reader.readexactly(size + 2))[:-2])
        first = first or time.perf_counter()
    await reader.readuntil(b"\r\n")  # the end of the last chunk (no trailers)
    return status, headers, b"".join(parts), first or time.perf_counter()


STREAM_END = b"data: [DONE]\n\n"


@dataclass
class Load:
    """What one load run measured: per call its latency and time to the first body byte (ms), MindRoute's
    overhead header, and the calls that failed (not 200, or a stream that did not end with [DONE])."""

    latencies: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    overheads: list[float] = field(default_factory=list)
    failures: int = 0
    seconds: float = 0.0


async def _load(url: str, body: dict[str, Any], headers: dict[str, str], requests: int, concurrency: int) -> Load:
    """`requests` calls at concurrency `concurrency`.

    A minimal HTTP/1.1 client on raw kept-alive connections, one per worker: a general-purpose
    client costs more CPU per request than the server under test, on the same two cores."""
    parts = httpx.URL(url)
    request = _request_bytes(url, body, headers)
    stream = bool(body.get("stream"))
    load = Load()
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(parts.host, parts.port)
        try:
            while remaining > 0:
                remaining -= 1
                await _timed_call(reader, writer, request, stream, load)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    load.seconds = time.perf_counter() - started
    return load


async def _timed_call(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, stream: bool, load: Load
) -> None:
    """One call, added to `load`: its latency and time to the first byte, whether it failed (not 200, or a
    stream without [DONE]) and MindRoute's overhead header."""
    started = time.perf_counter()
    status, answer_headers, answer, first = await _call(reader, writer, request)
    load.latencies.append((time.perf_counter() - started) * 1000)
    load.ttfb.append((first - started) * 1000)
    if status != 200 or (stream and not answer.endswith(STREAM_END)):
        load.failures += 1
    if "x-mindroute-overhead-ms" in answer_headers:
        load.overheads.append(float(answer_headers["x-mindroute-overhead-ms"]))


def _request_bytes(url: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    parts = httpx.URL(url)
    payload = json.dumps(body).encode()
    head = f"POST {parts.raw_path.decode()} HTTP/1.1\r\nhost: {parts.host}:{parts.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


async def _probe(url: str, body: dict[str, Any], headers: dict[str, str], until: Future[Any]) -> Load:
    """One call at a time on one connection until `until` is done: what a call meets beside the load."""
    parts = httpx.URL(url)
    request, stream, load = _request_bytes(url, body, headers), bool(body.get("stream")), Load()
    reader, writer = await asyncio.open_connection(parts.host, parts.port)
    try:
        while not until.done():
            await _timed_call(reader, writer, request, stream, load)
    finally:
        writer.close()
    return load


@dataclass
class Measured:
    """One side's run (through MindRoute or direct) by either load generator: its latency percentiles,
    the calls answered and sent, and the calls (probe's, with wrk) behind the time to the first byte."""

    summary: dict[str, float]
    answered: int
    sent: int
    failures: int
    seconds: float
    calls: Load
    load_cpu_s: float


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(
    load: str, url: str, body: dict[str, Any], headers: dict[str, str], requests: int, concurrency: int
) -> Measured:
    """`requests` calls at `concurrency` from the asyncio client ("python") or from wrk ("wrk", with this
    process's probe beside it: its calls are added to `sent`, not to the latency figures)."""
    cpu_before, children_before = time.process_time(), _children_cpu_s()
    if load == "python":
        run = asyncio.run(_load(url, body, headers, requests, concurrency))
        used = time.process_time() - cpu_before
        return Measured(_summary(run.latencies), requests, requests, run.failures, run.seconds, run, used)
    stream = bool(body.get("stream"))
    payload = json.dumps(body).encode()
    with ThreadPoolExecutor(1) as pool:
        started = pool.submit(wrk.run, url, payload, headers, requests, concurrency, stream)
        probe = asyncio.run(_probe(url, body, headers, started))
        done = started.result()
    # wrk has exited (a waited-for child): its CPU is in RUSAGE_CHILDREN; the probe's is this process's.
    used = time.process_time() - cpu_before + _children_cpu_s() - children_before
    sent = done.sent + len(probe.latencies)
    return Measured(done.summary, done.answered, sent, done.failures + probe.failures, done.seconds, probe, used)


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def _summary(latencies: list[float]) -> dict[str, float]:
    return {f"p{int(q * 100)}_ms": round(_percentile(latencies, q), 2) for q in (0.5, 0.95, 0.99)}


def _per_call_ms(seconds: float, requests: int) -> float | None:
    return round(seconds * 1000 / requests, 3) if seconds == seconds else None  # NaN: no /proc


def bench_body(model_id: str, tools: bool, stream: bool = False) -> dict[str, Any]:
    """The chat body every bench call sends: one short user message, with two tools and tool_choice auto if
    `tools`, asking for a stream if `stream`."""
    body: dict[str, Any] = {"model": model_id, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}
    if tools:
        body |= {"tools": BENCH_TOOLS, "tool_choice": "auto"}
    if stream:
        body["stream"] = True
    return body


def _check_answer(response: httpx.Response, tools: bool, stream: bool = False) -> None:
    """One call through MindRoute answers as the bench expects: a text, or with --tools a tool call; with
    --stream the streamed text, its finish reason and [DONE]."""
    response.raise_for_status()
    if stream:
        events = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
        chunks = [json.loads(event) for event in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        reasons = [c["choices"][0].get("finish_reason") for c in chunks if c["choices"]]
        if events[-1:] != ["[DONE]"] or text != STREAM_TEXT or reasons[-1] != "stop":
            raise RuntimeError(f"MindRoute streamed {response.text!r}, expected {STREAM_TEXT!r} and [DONE]")
        return
    [choice] = response.json()["choices"]
    expected = "tool_calls" if tools else "stop"
    if choice["finish_reason"] != expected or bool(choice["message"].get("tool_calls")) != tools:
        raise RuntimeError(f"MindRoute answered {choice!r}, expected finish_reason {expected!r}")


@dataclass(frozen=True)
class BenchOptions:
    """What one run sends and how: the switches of `python -m bench api`."""

    requests: int
    concurrency: int
    delay_ms: float = DEFAULT_DELAY_MS
    database_url: str | None = None
    entry: str = "api"
    tools: bool = False
    stream: bool = False
    limits: bool = False
    gap_ms: float = DEFAULT_GAP_MS
    load: str = "python"


def run_api_bench(
    requests: int,
    concurrency: int,
    delay_ms: float,
    database_url: str | None,
    entry: str = "api",
    tools: bool = False,
    *,
    stream: bool = False,
    limits: bool = False,
    gap_ms: float = DEFAULT_GAP_MS,
    load: str = "python",
) -> dict[str, Any]:
    """Run the benchmark once and return its figures (see the module docstring); `entry` "api" serves
    `mindroute.http.api:app` alone, "app" serves `streamlit run app.py`; `tools` sends bench_body's tools,
    `stream` asks for streams, `limits` sets limits_for_bench's rules first; `load` "wrk" sends the calls from wrk."""
    options = BenchOptions(requests, concurrency, delay_ms, database_url, entry, tools, stream, limits, gap_ms, load)
    return _run(options)


def _run(options: BenchOptions) -> dict[str, Any]:
    if options.entry not in ENTRIES:
        raise ValueError(f"entry must be one of {', '.join(ENTRIES)}")
    if options.load not in LOADS:
        raise ValueError(f"load must be one of {', '.join(LOADS)}")
    if options.load == "wrk" and not wrk.available():
        raise RuntimeError("--load wrk needs wrk on the PATH (Debian: apt-get install wrk)")
    requests, concurrency, stream = options.requests, options.concurrency, options.stream
    with tempfile.TemporaryDirectory(prefix="mindroute-bench-") as tmp:
        url = options.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        env = {
            **os.environ,
            "MINDROUTE_DATABASE_URL": url,
            "MINDROUTE_DATA_DIR": str(Path(tmp) / "data"),
            "MINDROUTE_SECRET_KEY": os.environ.get("MINDROUTE_SECRET_KEY") or Fernet.generate_key().decode(),
            "MINDROUTE_BENCH_DELAY_MS": str(options.delay_ms),
            "MINDROUTE_BENCH_GAP_MS": str(options.gap_ms),
        }
        os.environ.update({k: env[k] for k in ("MINDROUTE_DATABASE_URL", "MINDROUTE_DATA_DIR", "MINDROUTE_SECRET_KEY")})
        upstream_port, api_port = _free_port(), _free_port()
        upstream_url, api_url = f"http://127.0.0.1:{upstream_port}", f"http://127.0.0.1:{api_port}"
        upstream = _serve("bench.api:upstream_app", upstream_port, env)
        api = None
        try:
            _wait_until_up(upstream_url)
            credentials, engine, rules = _set_up(url, upstream_url, options.limits)
            key, model_id = credentials.split("\n")
            api = _serve_entry(options.entry, api_port, env)
            _wait_until_up(api_url + "/healthz")
            body = bench_body(model_id, options.tools, stream)
            auth = {"authorization": f"Bearer {key}"}
            through, direct = api_url + "/v1/chat/completions", upstream_url + "/v1/chat/completions"
            _check_answer(httpx.post(through, json=body, headers=auth, timeout=30), options.tools, stream)
            asyncio.run(_load(through, body, auth, WARMUP_REQUESTS - 1, min(concurrency, 8)))
            asyncio.run(_load(direct, body, {}, WARMUP_REQUESTS, min(concurrency, 8)))
            # The warm-up's rows are written behind its answers: count from when they are all in.
            deadline = time.monotonic() + START_TIMEOUT_S
            while _log_rows(engine) < WARMUP_REQUESTS and time.monotonic() < deadline:
                time.sleep(0.05)
            rows_before = _log_rows(engine)
            cpu_before, upstream_before = _cpu_seconds(api.pid), _cpu_seconds(upstream.pid)
            ticks_before = _machine_ticks()
            mr = _measure(options.load, through, body, auth, requests, concurrency)
            cpu_used = _cpu_seconds(api.pid) - cpu_before
            upstream_used = _cpu_seconds(upstream.pid) - upstream_before
            ticks = _machine_ticks()
            busy, total = (after - before for before, after in zip(ticks_before, ticks, strict=True))
            _stop(api)  # a graceful stop: whatever is pending is written before the count
            api = None
            log_rows = _log_rows(engine) - rows_before
            up = _measure(options.load, direct, body, {}, requests, concurrency)
            engine.dispose()
        finally:
            if api is not None:
                _stop(api)
            _stop(upstream)
    mr_summary, up_summary = mr.summary, up.summary
    figures: dict[str, Any] = {
        # Which load generator sent the calls: "python" (this process) or "wrk" (with this process's probe).
        "load": options.load,
        "entry": options.entry,
        "tools": options.tools,
        "stream": stream,
        "limits": options.limits,
        "limit_rules": rules,
        "requests": requests,
        "concurrency": concurrency,
        "upstream_delay_ms": options.delay_ms,
        "database": url.split(":", 1)[0].split("+", 1)[0],  # postgresql+psycopg: postgresql
        "rps": round(mr.answered / mr.seconds, 1),
        "direct_rps": round(up.answered / up.seconds, 1),
        "mindroute": mr_summary,
        "direct": up_summary,
        "p50_overhead_ms": round(mr_summary["p50_ms"] - up_summary["p50_ms"], 2),
        "p95_overhead_ms": round(mr_summary["p95_ms"] - up_summary["p95_ms"], 2),
        "p99_overhead_ms": round(mr_summary["p99_ms"] - up_summary["p99_ms"], 2),
        "header_overhead_ms": {
            "p50": round(_percentile(mr.calls.overheads, 0.5), 2),
            "p99": round(_percentile(mr.calls.overheads, 0.99), 2),
        },
        # CPU time of the MindRoute process per call (all its threads): what bounds its throughput.
        "cpu_ms_per_request": _per_call_ms(cpu_used, requests),
        # The rest of the machine during the run through MindRoute: the upstream's and this load
        # generator's CPU per call, and how many of the machine's cores were busy on average.
        "upstream_cpu_ms_per_request": _per_call_ms(upstream_used, requests),
        "load_cpu_ms_per_request": _per_call_ms(mr.load_cpu_s, requests),
        "machine_busy_cores": round(busy / total * (os.cpu_count() or 1), 2) if total else None,
        "failures": mr.failures + up.failures,
        # Every call MindRoute was sent (with wrk: its calls still in flight when it stopped, and the probe's).
        "requests_sent": mr.sent,
        "log_rows": log_rows,
    }
    if options.load == "wrk":
        # The probe's calls, one at a time beside wrk's: the time to the first byte and the overhead header.
        figures["probe_calls"] = {"mindroute": len(mr.calls.latencies), "direct": len(up.calls.latencies)}
    if stream:
        # Time to the first byte of the answer's body (MindRoute answers once the upstream's first event is in).
        mr_first, up_first = _summary(mr.calls.ttfb), _summary(up.calls.ttfb)
        figures["ttfb"] = {"mindroute": mr_first, "direct": up_first}
        figures["ttfb_p50_overhead_ms"] = round(mr_first["p50_ms"] - up_first["p50_ms"], 2)
        figures["ttfb_p99_overhead_ms"] = round(mr_first["p99_ms"] - up_first["p99_ms"], 2)
        figures["upstream_gap_ms"] = options.gap_ms
    return figures


def _median(runs: Sequence[Any]) -> Any:
    """The runs' figures with every number their median (the first run's value for the rest)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: _median([run[k] for run in runs]) for k in first}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in runs):
        return round(statistics.median(runs), 3)
    return first


# What --limits prints side by side: [without, with].
SIDE_BY_SIDE = (
    "rps",
    "p50_overhead_ms",
    "p99_overhead_ms",
    "ttfb_p50_overhead_ms",
    "ttfb_p99_overhead_ms",
    "cpu_ms_per_request",
    "failures",
    "requests_sent",
    "log_rows",
)


def run_compared(options: BenchOptions, runs: int) -> dict[str, Any]:
    """`runs` runs (with options.limits: that many without limits and with, alternating which goes first),
    as their medians; each configuration's rps over its runs; with limits, the key figures side by side."""
    settings = (False, True) if options.limits else (options.limits,)
    results: dict[bool, list[dict[str, Any]]] = {setting: [] for setting in settings}
    for index in range(runs):
        for setting in settings if index % 2 == 0 else settings[::-1]:
            results[setting].append(_run(replace(options, limits=setting)))
    medians = {setting: _median(found) | {"runs": runs} for setting, found in results.items()}
    for setting, found in results.items():
        medians[setting]["rps_runs"] = [run["rps"] for run in found]
    if not options.limits:
        return medians[False]
    without, with_ = medians[False], medians[True]
    both = {name: [without[name], with_[name]] for name in SIDE_BY_SIDE if name in without}
    return {"side_by_side": both, "without_limits": without, "with_limits": with_}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    api = commands.add_parser("api", help="the OpenAI-compatible API against a local upstream")
    api.add_argument("--requests", type=int, default=2000)
    api.add_argument("--concurrency", type=int, default=32)
    api.add_argument("--delay-ms", type=float, default=DEFAULT_DELAY_MS, help="the upstream's fixed delay")
    api.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    api.add_argument(
        "--entry",
        choices=ENTRIES,
        default="api",
        help="api: uvicorn mindroute.http.api:app (the API alone); app: streamlit run app.py (API beside pages)",
    )
    api.add_argument("--tools", action="store_true", help="two tools and tool_choice auto; the upstream calls one")
    api.add_argument("--stream", action="store_true", help="stream=true; the upstream streams server-sent events")
    api.add_argument("--gap-ms", type=float, default=DEFAULT_GAP_MS, help="with --stream: between two events")
    api.add_argument(
        "--limits", action="store_true", help="run without and with never-refusing limits on the user and key"
    )
    api.add_argument("--runs", type=int, default=1, help="runs of each configuration (alternating); medians")
    api.add_argument(
        "--load",
        choices=LOADS,
        default="python",
        help="python: this process's asyncio client; wrk: wrk (C), with a one-at-a-time probe for TTFB",
    )
    analytics = commands.add_parser("analytics", help="the Usage page's queries (see bench.analytics)")
    analytics.add_argument("--rows", type=int, required=True, help="logs to have in the database (seeded if fewer)")
    analytics.add_argument("--database-url", help="default: MINDROUTE_DATABASE_URL")
    analytics.add_argument("--runs", type=int)
    args = parser.parse_args(argv)
    if args.command == "analytics":
        from bench import analytics as bench_analytics

        forwarded = ["--rows", str(args.rows)]
        forwarded += ["--database-url", args.database_url] if args.database_url else []
        forwarded += ["--runs", str(args.runs)] if args.runs else []
        return bench_analytics.main(forwarded)
    if args.requests < 1 or args.concurrency < 1 or args.runs < 1:
        parser.error("--requests, --concurrency and --runs must be at least 1")
    options = BenchOptions(
        args.requests,
        args.concurrency,
        args.delay_ms,
        args.database_url,
        args.entry,
        args.tools,
        args.stream,
        args.limits,
        args.gap_ms,
        args.load,
    )
    figures = _run(options) if args.runs == 1 and not args.limits else run_compared(options, args.runs)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
