"""Full-page screenshots of every page of the console, in Korean and in English, for looking at the pages.

    .venv/bin/python scripts/screenshots.py [OUT_DIR]      # default /tmp/mindroute-screens

Starts `streamlit run app.py` on a free port of 127.0.0.1 with a temporary SQLite file seeded with the
demo data (mindroute.cli.seed.seed_demo), an administrator and a user (both with language 'ko'), signs in
with headless Chromium (/usr/bin/chromium, or MINDROUTE_CHROMIUM) at 1400x900 and saves:

- ko-<page>.png and en-<page>.png for every page of mindroute/ui/navigation.py's PAGES (the user-only
  pages, Calls, as the user; every other page as the administrator), light theme;
- ko-<page>-light.png and ko-<page>-dark.png for Overview and Usage (the browser's colour scheme).

Prints the files written. Nothing is fetched from another host; the temporary database is deleted.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import Engine, update  # noqa: E402
from sqlalchemy.engine import URL  # noqa: E402

from mindroute.cli.seed import seed_demo  # noqa: E402
from mindroute.db import ensure_schema, make_engine, transaction  # noqa: E402
from mindroute.models import User  # noqa: E402
from mindroute.services.users import create_user  # noqa: E402
from mindroute.ui.navigation import PAGES, PageSpec  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = os.environ.get("MINDROUTE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
WIDTH, HEIGHT = 1400, 900
TALLEST = 12_000  # px: a page longer than this is cut there
ADMIN = ("admin@example.com", "screenshot admin 1", "김관리")
USER = ("user@example.com", "screenshot user 1", "김사용")
THEMED = ("overview", "usage")
DEFAULT_OUT = Path(tempfile.gettempdir()) / "mindroute-screens"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(directory: Path) -> Iterator[tuple[str, Engine]]:
    """`streamlit run app.py` on a free port of 127.0.0.1, on a SQLite file in `directory`."""
    url = URL.create("sqlite", database=str(directory / "screens.db"))
    port = _free_port()
    environment = {
        **os.environ,
        "MINDROUTE_DATABASE_URL": url.render_as_string(),
        "MINDROUTE_DATA_DIR": str(directory / "data"),
        "MINDROUTE_SECRET_KEY": Fernet.generate_key().decode(),
        "MINDROUTE_SECRETS_FILE": str(directory / "none.toml"),
    }
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    log_path = directory / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the app did not start:\n" + log_path.read_text(errors="replace"))
            time.sleep(0.3)
        engine = make_engine(url)
        try:
            yield base, engine
        finally:
            engine.dispose()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def seed(engine: Engine, rows: int) -> None:
    ensure_schema(engine)
    seed_demo(engine, rows=rows, days=14, seed=19, progress=False)
    with transaction(engine) as session:
        for (email, password, name), role in ((ADMIN, "admin"), (USER, "user")):
            create_user(session, None, email=email, name=name, password=password, role=role)
    set_language(engine, "ko")


def set_language(engine: Engine, language: str) -> None:
    with transaction(engine) as session:
        session.execute(update(User).where(User.email.in_([ADMIN[0], USER[0]])).values(language=language))


def settle(page: Page) -> None:
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", state="attached")
    page.wait_for_timeout(1200)  # charts and tables draw after the script has finished
    page.evaluate("document.fonts.ready")


def sign_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(base)
    form = page.locator("form[data-testid='mr-signin-form']")
    form.wait_for()
    form.locator("input[name='email']").fill(email)
    form.locator("input[name='password']").fill(password)
    with page.expect_navigation():
        form.locator("button[type='submit']").click()
    settle(page)


def shoot(page: Page, base: str, url_path: str, target: Path) -> Path:
    """The page at /url_path, the whole of it: the viewport grown to the content's height (Streamlit scrolls
    inside its own container, which a full-page screenshot alone does not unroll)."""
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    page.goto(f"{base}/{url_path}")
    settle(page)
    tall = page.evaluate(
        """() => Math.max(document.documentElement.scrollHeight,
            ...Array.from(document.querySelectorAll("[data-testid='stMain'], [data-testid='stAppViewContainer'],"
              + " [data-testid='stMainBlockContainer'], section")).map(e => e.scrollHeight))"""
    )
    page.set_viewport_size({"width": WIDTH, "height": min(max(HEIGHT, int(tall) + 40), TALLEST)})
    page.wait_for_timeout(600)
    page.screenshot(path=str(target), full_page=True)
    return target


def who(spec: PageSpec) -> str:
    return "admin" if "admin" in spec.roles else "user"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default=str(DEFAULT_OUT), help="directory for the PNG files")
    parser.add_argument("--rows", type=int, default=3000, help="demo log rows to seed (default 3000)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="mindroute-screens-") as tmp, running_app(Path(tmp)) as (base, engine):
        seed(engine, args.rows)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                for language, tag in (("ko", "ko-KR"), ("en", "en-US")):
                    set_language(engine, language)
                    for role, (email, password, _name) in (("admin", ADMIN), ("user", USER)):
                        context = browser.new_context(
                            locale=tag, color_scheme="light", viewport={"width": WIDTH, "height": HEIGHT}
                        )
                        context.set_default_timeout(60_000)
                        page = context.new_page()
                        sign_in(page, base, email, password)
                        for spec in PAGES:
                            if who(spec) == role:
                                target = out / f"{language}-{spec.url_path}.png"
                                written.append(shoot(page, base, spec.url_path, target))
                        context.close()
                set_language(engine, "ko")
                for scheme in ("light", "dark"):
                    context = browser.new_context(
                        locale="ko-KR", color_scheme=scheme, viewport={"width": WIDTH, "height": HEIGHT}
                    )
                    context.set_default_timeout(60_000)
                    page = context.new_page()
                    sign_in(page, base, ADMIN[0], ADMIN[1])
                    for url_path in THEMED:
                        written.append(shoot(page, base, url_path, out / f"ko-{url_path}-{scheme}.png"))
                    context.close()
            finally:
                browser.close()
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
