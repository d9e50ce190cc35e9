"""The C load generator for `bench api --load wrk`: wrk with a Lua script that sends a fixed number of calls."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

MARK = "BENCH-WRK "
# wrk runs for a duration; the script stops each thread after its share of the calls, well within it.
MAX_DURATION_S = 600
STREAM_END = "data: [DONE]\n\n"

# `request` counts what each thread sends (the calls still in flight when a thread stops are answered and
# logged by MindRoute too); `response` counts the answers and the failed ones and stops the thread after
# its share; `done` prints wrk's distribution (microseconds) as one JSON line.
SCRIPT = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
int getpid(void);
int kill(int pid, int signal);
]]
local clock = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) / 1e9
end
local body = [==[{body}]==]
local headers = {{{headers}}}
local share, stream = {share}, {stream}
local threads = {{}}
function setup(thread)
  thread:set("share", share)
  table.insert(threads, thread)
end
function init(args)
  -- wrk asks for one request right after init that it never sends: sent starts at -1.
  sent, answered, failed, first, last = -1, 0, 0, 0, 0
end
function request()
  if sent == 0 then
    first = now()  -- the first request sent
  end
  sent = sent + 1
  return wrk.format("POST", "{path}", headers, body)
end
function response(status, head, answer)
  answered = answered + 1
  if status ~= 200 or (stream and string.sub(answer, -{end_len}) ~= "{stream_end}") then
    failed = failed + 1
  end
  if answered == share then
    last = now()
    wrk.thread:stop()
    -- wrk's main thread sleeps out -d unless interrupted: its SIGINT handler ends the run now.
    ffi.C.kill(ffi.C.getpid(), 2)
  end
end
function done(summary, latency, requests)
  local total_sent, total_failed, seconds = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_sent = total_sent + thread:get("sent")
    total_failed = total_failed + thread:get("failed")
    -- From the thread's first request to its last answer (wrk's own duration includes its start and stop).
    seconds = math.max(seconds, thread:get("last") - thread:get("first"))
  end
  local errors = summary.errors
  io.write(string.format(
    '{mark}{{"answered":%d,"sent":%d,"failed":%d,"socket_errors":%d,"seconds":%.6f,' ..
    '"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d}}\\n',
    summary.requests, total_sent, total_failed,
    errors.connect + errors.read + errors.write + errors.timeout, seconds,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run measured: calls answered and sent, failures (not 200, a stream without [DONE], a
    socket error), the run's seconds and the latency percentiles (ms, request sent to answer complete)."""

    answered: int
    sent: int
    failures: int
    seconds: float
    summary: dict[str, float]


def available() -> bool:
    """Whether wrk is on the PATH (Debian: `apt-get install wrk`)."""
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    if "]==]" in text:
        raise ValueError("the body must not contain ]==]")
    return text


def script(path: str, body: bytes, headers: dict[str, str], share: int, stream: bool) -> str:
    """The Lua script for `share` calls per thread of POST `path` with `body` and `headers`."""
    pairs = {**headers, "content-type": "application/json"}
    lua_headers = ", ".join(f'["{name}"] = "{value}"' for name, value in pairs.items())
    return SCRIPT.format(
        body=_lua_string(body.decode()),
        headers=lua_headers,
        share=share,
        stream="true" if stream else "false",
        path=path,
        end_len=len(STREAM_END),
        stream_end=STREAM_END.replace("\n", "\\n"),
        mark=MARK,
    )


def run(url: str, body: bytes, headers: dict[str, str], requests: int, concurrency: int, stream: bool) -> WrkRun:
    """`requests` calls of POST `url` at concurrency `concurrency` from one wrk thread (on two cores a
    second thread would only take a core from the processes measured)."""
    base, _, path = url.partition("://")[2].partition("/")
    with tempfile.TemporaryDirectory(prefix="mindroute-wrk-") as tmp:
        lua = Path(tmp) / "bench.lua"
        lua.write_text(script("/" + path, body, headers, requests, stream))
        command = ["wrk", "-t1", f"-c{concurrency}", f"-d{MAX_DURATION_S}s", "--timeout", "30s", "-s", str(lua)]
        done = subprocess.run([*command, f"http://{base}"], capture_output=True, text=True, check=True)
    [line] = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    figures = json.loads(line.removeprefix(MARK))
    summary = {f"p{q}_ms": round(figures[f"p{q}_us"] / 1000, 2) for q in (50, 95, 99)}
    summary.update(not_200=figures["failed"], socket_errors=figures["socket_errors"])  # the failures, told apart
    failures = figures["failed"] + figures["socket_errors"]
    return WrkRun(figures["answered"], figures["sent"], failures, figures["seconds"], summary)
