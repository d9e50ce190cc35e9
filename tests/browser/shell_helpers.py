"""Browser helpers for the shell's tests: a Chromium context with a colour scheme, users, a tab-session server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from sqlalchemy.engine import URL

from mindroute.db import ensure_schema, make_engine
from mindroute.services.users import create_user
from tests.browser.conftest import ROOT, Server, _free_port
from tests.browser.test_auth_browser import ADMIN_EMAIL, ADMIN_PASSWORD, USER_EMAIL, USER_PASSWORD, settle
from tests.browser.test_auth_browser import fill_sign_in as cookie_sign_in
from tests.conftest import TEST_SECRET_KEY

# The two palettes' backgrounds in .streamlit/config.toml, as the browser computes them.
LIGHT_BACKGROUND, DARK_BACKGROUND = "rgb(255, 255, 255)", "rgb(15, 17, 23)"


def add_people(engine) -> None:
    create_user(engine, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
    create_user(engine, None, email=USER_EMAIL, name="Plain", password=USER_PASSWORD, role="user")


@contextmanager
def chromium(browser_context, color_scheme: str = "light") -> Iterator[object]:
    """Another fresh profile in the browser_context fixture's Chromium, whose prefers-color-scheme is
    `color_scheme` (the fixture's own context cannot take one)."""
    context = browser_context.browser.new_context(color_scheme=color_scheme, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


def background(page) -> str:
    return page.locator("[data-testid='stApp']").evaluate("e => getComputedStyle(e).backgroundColor")


@contextmanager
def tab_session_server(tmp_path) -> Iterator[Server]:
    """`streamlit run Home.py`: no cookie routes, so a sign-in lives in the browser tab (as conftest's
    `server`, which runs app.py)."""
    url = URL.create("sqlite", database=str(tmp_path / "tab.db"))
    port = _free_port()
    env = {
        **os.environ,
        "MINDROUTE_DATABASE_URL": url.render_as_string(),
        "MINDROUTE_DATA_DIR": str(tmp_path / "data"),
        "MINDROUTE_SECRET_KEY": TEST_SECRET_KEY,
        "MINDROUTE_SECRETS_FILE": str(tmp_path / "none.toml"),
    }
    log_path = tmp_path / "tab-server.log"
    args = ["--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "Home.py", *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
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
            raise AssertionError("the app did not start:\n" + log_path.read_text(errors="replace"))
        time.sleep(0.3)
    engine = make_engine(url)
    ensure_schema(engine)  # Home.py alone has no lifespan that migrates
    try:
        yield Server(base_url=base, engine=engine, process=process, log_path=log_path)
    finally:
        engine.dispose()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


__all__ = [
    "ADMIN_EMAIL",
    "ADMIN_PASSWORD",
    "DARK_BACKGROUND",
    "LIGHT_BACKGROUND",
    "USER_EMAIL",
    "USER_PASSWORD",
    "add_people",
    "background",
    "chromium",
    "cookie_sign_in",
    "settle",
    "tab_session_server",
]
