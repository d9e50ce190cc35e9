"""Benchmarks: `python -m bench api --requests N --concurrency C [--entry api|app]` measures
what MindRoute adds to a chat call. A local upstream answering like OpenAI after a fixed delay and
MindRoute's API (one process, logging on: `uvicorn mindroute.http.api:app`, or `streamlit run app.py`
with --entry app) run as child processes; this process sends N non-streamed
requests at concurrency C through MindRoute and then directly to the upstream, and prints one JSON
object with the throughput, the latencies both ways, their differences and the Logs rows written.
With --tools the chat body carries two tools and tool_choice "auto", and the upstream answers a tool call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

DEFAULT_DELAY_MS = 20.0
WARMUP_REQUESTS = 50
START_TIMEOUT_S = 30.0


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


def _upstream_delay_s() -> float:
    return float(os.environ.get("MINDROUTE_BENCH_DELAY_MS", DEFAULT_DELAY_MS)) / 1000


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering POST /v1/chat/completions like OpenAI, after MINDROUTE_BENCH_DELAY_MS."""
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
    return subprocess.Popen(command, env=env)


PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENTRIES = ("api", "app")


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


def _set_up(database_url: str, upstream_url: str) -> tuple[str, Any]:
    """Migrate the database and add a user, a provider at the upstream and a key; (key, engine)."""
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
            settings={"models": ["bench-model"], "default_model": "bench-model", "prices": {}},
        )
        session.add_all([user, provider])
        session.flush()
        session.add(UserProvider(user_id=user.id, provider_id=provider.id, allowed=True))
        issued = api_keys.create_key(session, user, user.id, "bench", None)
        model_id = f"{provider.name}/bench-model"
    return issued.plaintext + "\n" + model_id, engine


def _log_rows(engine: Any) -> int:
    from sqlalchemy import func, select

    from mindroute.db import transaction
    from mindroute.models import Log

    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(Log)) or 0


# --- load -----------------------------------------------------------------------------------------


async def _call(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on a kept-alive connection: (status, headers, body)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def _load(
    url: str, body: dict[str, Any], headers: dict[str, str], requests: int, concurrency: int
) -> tuple[list[float], list[float], int, float]:
    """(latencies ms, MindRoute's overhead headers ms, failures, seconds) for `requests` calls.

    A minimal HTTP/1.1 client on raw kept-alive connections, one per worker: a general-purpose
    client costs more CPU per request than the server under test, on the same two cores."""
    parts = httpx.URL(url)
    payload = json.dumps(body).encode()
    head = f"POST {parts.raw_path.decode()} HTTP/1.1\r\nhost: {parts.host}:{parts.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    request = head.encode() + payload
    latencies: list[float] = []
    overheads: list[float] = []
    failures = 0
    remaining = requests

    async def worker() -> None:
        nonlocal remaining, failures
        reader, writer = await asyncio.open_connection(parts.host, parts.port)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                status, answer_headers, _ = await _call(reader, writer, request)
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    failures += 1
                if "x-mindroute-overhead-ms" in answer_headers:
                    overheads.append(float(answer_headers["x-mindroute-overhead-ms"]))
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, overheads, failures, time.perf_counter() - started


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def _summary(latencies: list[float]) -> dict[str, float]:
    return {f"p{int(q * 100)}_ms": round(_percentile(latencies, q), 2) for q in (0.5, 0.95, 0.99)}


def _per_call_ms(seconds: float, requests: int) -> float | None:
    return round(seconds * 1000 / requests, 3) if seconds == seconds else None  # NaN: no /proc


def bench_body(model_id: str, tools: bool) -> dict[str, Any]:
    """The chat body every bench call sends: one short user message, with two tools and tool_choice auto if `tools`."""
    body: dict[str, Any] = {"model": model_id, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}
    if tools:
        body |= {"tools": BENCH_TOOLS, "tool_choice": "auto"}
    return body


def _check_answer(response: httpx.Response, tools: bool) -> None:
    """One call through MindRoute answers as the bench expects: a text, or with --tools a tool call."""
    response.raise_for_status()
    [choice] = response.json()["choices"]
    expected = "tool_calls" if tools else "stop"
    if choice["finish_reason"] != expected or bool(choice["message"].get("tool_calls")) != tools:
        raise RuntimeError(f"MindRoute answered {choice!r}, expected finish_reason {expected!r}")


def run_api_bench(
    requests: int,
    concurrency: int,
    delay_ms: float,
    database_url: str | None,
    entry: str = "api",
    tools: bool = False,
) -> dict[str, Any]:
    """Run the benchmark and return its figures (see the module docstring); `entry` "api" serves
    `mindroute.http.api:app` alone, "app" serves `streamlit run app.py`; `tools` sends bench_body's tools."""
    if entry not in ENTRIES:
        raise ValueError(f"entry must be one of {', '.join(ENTRIES)}")
    with tempfile.TemporaryDirectory(prefix="mindroute-bench-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        env = {
            **os.environ,
            "MINDROUTE_DATABASE_URL": url,
            "MINDROUTE_DATA_DIR": str(Path(tmp) / "data"),
            "MINDROUTE_SECRET_KEY": os.environ.get("MINDROUTE_SECRET_KEY") or Fernet.generate_key().decode(),
            "MINDROUTE_BENCH_DELAY_MS": str(delay_ms),
        }
        os.environ.update({k: env[k] for k in ("MINDROUTE_DATABASE_URL", "MINDROUTE_DATA_DIR", "MINDROUTE_SECRET_KEY")})
        upstream_port, api_port = _free_port(), _free_port()
        upstream_url, api_url = f"http://127.0.0.1:{upstream_port}", f"http://127.0.0.1:{api_port}"
        upstream = _serve("bench.api:upstream_app", upstream_port, env)
        api = None
        try:
            _wait_until_up(upstream_url)
            credentials, engine = _set_up(url, upstream_url)
            key, model_id = credentials.split("\n")
            api = _serve_entry(entry, api_port, env)
            _wait_until_up(api_url + "/healthz")
            body = bench_body(model_id, tools)
            auth = {"authorization": f"Bearer {key}"}
            through, direct = api_url + "/v1/chat/completions", upstream_url + "/v1/chat/completions"
            _check_answer(httpx.post(through, json=body, headers=auth, timeout=30), tools)
            asyncio.run(_load(through, body, auth, WARMUP_REQUESTS - 1, min(concurrency, 8)))
            asyncio.run(_load(direct, body, {}, WARMUP_REQUESTS, min(concurrency, 8)))
            # The warm-up's rows are written behind its answers: count from when they are all in.
            deadline = time.monotonic() + START_TIMEOUT_S
            while _log_rows(engine) < WARMUP_REQUESTS and time.monotonic() < deadline:
                time.sleep(0.05)
            rows_before = _log_rows(engine)
            cpu_before, upstream_before = _cpu_seconds(api.pid), _cpu_seconds(upstream.pid)
            load_before, ticks_before = time.process_time(), _machine_ticks()
            mr, overheads, failures, mr_s = asyncio.run(_load(through, body, auth, requests, concurrency))
            cpu_used = _cpu_seconds(api.pid) - cpu_before
            upstream_used = _cpu_seconds(upstream.pid) - upstream_before
            load_used, ticks = time.process_time() - load_before, _machine_ticks()
            busy, total = (after - before for before, after in zip(ticks_before, ticks, strict=True))
            _stop(api)  # a graceful stop: whatever is pending is written before the count
            api = None
            log_rows = _log_rows(engine) - rows_before
            up, _, direct_failures, up_s = asyncio.run(_load(direct, body, {}, requests, concurrency))
            engine.dispose()
        finally:
            if api is not None:
                _stop(api)
            _stop(upstream)
    mr_summary, up_summary = _summary(mr), _summary(up)
    return {
        "entry": entry,
        "tools": tools,
        "requests": requests,
        "concurrency": concurrency,
        "upstream_delay_ms": delay_ms,
        "database": url.split(":", 1)[0],
        "rps": round(requests / mr_s, 1),
        "direct_rps": round(requests / up_s, 1),
        "mindroute": mr_summary,
        "direct": up_summary,
        "p50_overhead_ms": round(mr_summary["p50_ms"] - up_summary["p50_ms"], 2),
        "p95_overhead_ms": round(mr_summary["p95_ms"] - up_summary["p95_ms"], 2),
        "p99_overhead_ms": round(mr_summary["p99_ms"] - up_summary["p99_ms"], 2),
        "header_overhead_ms": {
            "p50": round(_percentile(overheads, 0.5), 2),
            "p99": round(_percentile(overheads, 0.99), 2),
        },
        # CPU time of the MindRoute process per call (all its threads): what bounds its throughput.
        "cpu_ms_per_request": _per_call_ms(cpu_used, requests),
        # The rest of the machine during the run through MindRoute: the upstream's and this load
        # generator's CPU per call, and how many of the machine's cores were busy on average.
        "upstream_cpu_ms_per_request": _per_call_ms(upstream_used, requests),
        "load_cpu_ms_per_request": _per_call_ms(load_used, requests),
        "machine_busy_cores": round(busy / total * (os.cpu_count() or 1), 2) if total else None,
        "failures": failures + direct_failures,
        "log_rows": log_rows,
    }


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
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    figures = run_api_bench(args.requests, args.concurrency, args.delay_ms, args.database_url, args.entry, args.tools)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
