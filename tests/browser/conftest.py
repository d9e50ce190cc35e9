"""A real MindRoute server (`streamlit run app.py`) and a real headless Chromium for browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from mindroute.db import make_engine
from tests.conftest import TEST_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MINDROUTE_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("MINDROUTE_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base_url: str
    engine: Engine
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_app(
    tmp_path: Path, entry: str = "app.py", env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> Iterator[Server]:
    """`streamlit run <entry>` on a free port, on an empty SQLite file of its own; `env` and `args` added."""
    url = URL.create("sqlite", database=str(tmp_path / "browser.db"))
    port = _free_port()
    environment = {
        **os.environ,
        "MINDROUTE_DATABASE_URL": url.render_as_string(),
        "MINDROUTE_DATA_DIR": str(tmp_path / "data"),
        "MINDROUTE_SECRET_KEY": TEST_SECRET_KEY,
        "MINDROUTE_SECRETS_FILE": str(tmp_path / "none.toml"),
        **(env or {}),
    }
    log_path = tmp_path / "server.log"
    command = [sys.executable, "-m", "streamlit", "run", entry, "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true", *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/_stcore/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the app did not start:\n" + log_path.read_text(errors="replace"))
        time.sleep(0.3)
    engine = make_engine(url)
    try:
        yield Server(base_url=base, engine=engine, process=process, log_path=log_path)
    finally:
        engine.dispose()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """`streamlit run app.py` on a free port, on an empty SQLite file of its own."""
    with running_app(tmp_path) as running:
        yield running


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[object]:
    """A fresh Chromium profile; skips (or fails under MINDROUTE_REQUIRE_BROWSER=1) without Chromium."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if problem:
        if REQUIRE_BROWSER:
            pytest.fail(problem + " (MINDROUTE_REQUIRE_BROWSER=1)")
        pytest.skip(problem)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()
            browser.close()
