"""Shared by the limit tests: a real redis-server on a free port (session fixture), and a LimitRule builder."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mindroute.services.limit_rules import LimitRule

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REQUIRE_REDIS = os.environ.get("MINDROUTE_REQUIRE_REDIS") == "1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own on 127.0.0.1 and a free port, in a temp folder, without persistence; skips
    (fails under MINDROUTE_REQUIRE_REDIS=1) when redis-server is not installed."""
    if not Path(REDIS_SERVER).exists():
        if REQUIRE_REDIS:
            pytest.fail("redis-server is not installed (MINDROUTE_REQUIRE_REDIS=1)")
        pytest.skip("redis-server is not installed")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    command = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
    command += ["--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _answers(port):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.02)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()


def make_rule(
    counter_key: str | None = None,
    *,
    target: str | None = None,
    label: str = "the limit on Ann",
    rpm: int | None = None,
    tpm: int | None = None,
    budget_usd: float | None = None,
    budget_tokens: int | None = None,
    period: str = "month",
    timezone: str = "UTC",
    warn_percent: int = 80,
) -> LimitRule:
    """A rule as rules_for_call makes it, without rows behind it (the check needs none)."""
    key = counter_key or f"user:{uuid.uuid4()}"
    scope = key.split(":")[0]
    return LimitRule(
        target=target or key,
        scope=scope,
        set_by="owner" if (target or "").endswith(":owner") else "admin",
        counter_key=key,
        label=label,
        rpm=rpm,
        tpm=tpm,
        budget_usd=budget_usd,
        budget_tokens=budget_tokens,
        period=period,
        timezone=timezone,
        warn_percent=warn_percent,
    )
