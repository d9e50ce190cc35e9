"""`python -m bench page usage --rows N`: how long a console page takes in a real browser, as JSON medians.

    python -m bench page usage --rows N [--database-url URL] [--runs K]

Fills the database with N demo calls (bench.analytics.prepare: seed-demo's rows, rollups in step),
adds a benchmark administrator, starts `streamlit run app.py` on a free port, signs in with headless
Chromium (/usr/bin/chromium, or MINDROUTE_CHROMIUM) and measures, K times each:

- `first_view_ms`: from navigation to /usage?range=30d to a settled page: the script done
  (`[data-testid='stApp'][data-test-script-state='notRunning']`), no spinner, the tiles shown and
  every visible plotly chart drawn. Each navigation opens a new Streamlit session, so nothing cached
  per session helps it.
- `controls_ms`: from a click on a chart control (stack by, the top-N metric, a top-N tab) to the
  page settled again.

Without --database-url the calls go to a SQLite file per N in the system's temporary folder,
reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from bench.analytics import prepare
from mindroute.db import make_engine, transaction
from mindroute.models import Log, User
from mindroute.security import hash_password
from mindroute.services.users import create_user

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("MINDROUTE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
ADMIN_EMAIL = "bench-admin@bench.mindroute.example"
START_TIMEOUT_S = 60.0
VIEWPORT = {"width": 1400, "height": 900}
RUNS = 5
PAGES = ("usage",)

# Settled: the script has finished, nothing spins, the tiles are there and plotly drew every chart in view.
SETTLED_JS = """
() => {
    const app = document.querySelector("[data-testid='stApp']");
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (document.querySelector("[data-testid='stSpinner'], [data-testid='stSkeleton']")) return false;
    if (!document.querySelector("[data-testid='stMetric']")) return false;
    const plots = Array.from(document.querySelectorAll("[data-testid='stPlotlyChart']")).filter(p => p.offsetParent);
    if (plots.length === 0) return false;
    return plots.every(p => p.querySelector('.main-svg'));
}
"""

# Clicks the element and resolves with the milliseconds until the page is settled again. A click that
# starts no rerun (a tab switched in the browser) is measured to the next painted frame.
CONTROL_JS = """
async ([selector, text]) => {
    const app = document.querySelector("[data-testid='stApp']");
    const target = Array.from(document.querySelectorAll(selector)).find(e => e.innerText.trim() === text);
    if (!target) throw new Error(`no ${selector} reading ${text}`);
    const settled = SETTLED;
    const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    let left = false;
    const watcher = new MutationObserver(() => {
        if (app.getAttribute('data-test-script-state') !== 'notRunning') left = true;
    });
    watcher.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
    const started = performance.now();
    target.click();
    while (!left && performance.now() - started < 250) await new Promise(r => setTimeout(r, 5));
    if (!left) { await frame(); watcher.disconnect(); return performance.now() - started; }
    while (!settled()) {
        if (performance.now() - started > 60000) throw new Error('the page did not settle');
        await new Promise(r => setTimeout(r, 5));
    }
    await frame();
    watcher.disconnect();
    return performance.now() - started;
}
""".replace("SETTLED", SETTLED_JS.strip())

# (name, CSS selector of the clickable element, its text): each control, then back, so every run starts alike.
CONTROLS = {
    "stack_by": [(".st-key-usage_stack_by button", "Model"), (".st-key-usage_stack_by button", "Provider")],
    "top_metric": [(".st-key-usage_top_metric button", "Cost"), (".st-key-usage_top_metric button", "Tokens")],
    "top_tab": [("[role='tab']", "Models"), ("[role='tab']", "Users")],
}


def default_url(rows: int) -> str:
    folder = Path(tempfile.gettempdir()) / "mindroute-bench"
    folder.mkdir(exist_ok=True)
    return f"sqlite:///{folder / f'page-{rows}.db'}"


def ensure_admin(engine: Engine) -> str:
    """The benchmark administrator, with a new random password each run (returned)."""
    password = secrets.token_urlsafe(16)
    with transaction(engine) as session:
        admin = session.scalar(select(User).where(User.email == ADMIN_EMAIL))
        if admin is None:
            create_user(session, None, email=ADMIN_EMAIL, name="Bench admin", password=password, role="admin")
        else:
            admin.password = hash_password(password)
    return password


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def app_server(url: str) -> Iterator[str]:
    """`streamlit run app.py` on a free port against `url`; yields its base address."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "MINDROUTE_DATABASE_URL": url,
            "MINDROUTE_DATA_DIR": str(Path(tmp) / "data"),
            "MINDROUTE_SECRET_KEY": os.environ.get("MINDROUTE_SECRET_KEY") or Fernet.generate_key().decode(),
            "MINDROUTE_SECRETS_FILE": str(Path(tmp) / "none.toml"),
        }
        command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
        command += ["--server.address", "127.0.0.1", "--server.headless", "true", "--logger.level", "warning"]
        log = (Path(tmp) / "server.log").open("wb")
        process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    if httpx.get(f"{base}/_stcore/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the app did not start:\n" + (Path(tmp) / "server.log").read_text())
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def _settle(page: Any) -> None:
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", state="attached")


def sign_in(page: Any, base: str, password: str) -> None:
    page.goto(base)
    form = page.locator("form[data-testid='mr-signin-form']")
    form.wait_for()
    form.locator("input[name='email']").fill(ADMIN_EMAIL)
    form.locator("input[name='password']").fill(password)
    with page.expect_navigation():
        form.locator("button[type='submit']").click()
    _settle(page)


def first_view(page: Any, base: str, path: str) -> float:
    started = time.perf_counter()
    page.goto(f"{base}{path}")
    page.wait_for_function(SETTLED_JS, timeout=120_000, polling=10)
    return (time.perf_counter() - started) * 1000


def control(page: Any, selector: str, text: str) -> float:
    return float(page.evaluate(CONTROL_JS, [selector, text]))


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def measure(base: str, password: str, runs: int, path: str = "/usage?range=30d") -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(120_000)
        page = context.new_page()
        try:
            sign_in(page, base, password)
            first_view(page, base, path)  # warm-up: the server's imports, plotly's script in the browser cache
            views: list[float] = []
            clicks: dict[str, list[float]] = {name: [] for name in CONTROLS}
            for _ in range(runs):
                views.append(first_view(page, base, path))
                for name, steps in CONTROLS.items():
                    for selector, text in steps:
                        clicks[name].append(control(page, selector, text))
        finally:
            context.close()
            browser.close()
    controls = {name: _median(values) for name, values in clicks.items()}
    return {
        "first_view_ms": _median(views),
        "first_view_runs_ms": [round(v) for v in views],
        "controls_ms": controls,
        "slowest_control_ms": max(controls.values()),
    }


def run_bench(page_name: str, rows: int, url: str, runs: int, *, log: Callable[[str], None]) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        log(f"preparing {rows:,} calls in {make_url(url).get_backend_name()}…")
        prepare(engine, rows)
        password = ensure_admin(engine)
        with engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(Log)) or 0
    finally:
        engine.dispose()
    log("starting the app and Chromium…")
    with app_server(url) as base:
        figures = measure(base, password, runs)
    return {"page": page_name, "database": make_url(url).get_backend_name(), "rows": total, "runs": runs, **figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench page", description=__doc__.split("\n\n")[0])
    parser.add_argument("page", choices=PAGES)
    parser.add_argument("--rows", type=int, required=True, help="demo calls to have in the database (seeded if fewer)")
    parser.add_argument("--database-url", help="default: a SQLite file per N in the temporary folder")
    parser.add_argument("--runs", type=int, default=RUNS, help="measurements of each; medians")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.runs < 1:
        parser.error("--rows and --runs must be at least 1")
    url = args.database_url or default_url(args.rows)
    result = run_bench(args.page, args.rows, url, args.runs, log=lambda line: print(line, file=sys.stderr))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
