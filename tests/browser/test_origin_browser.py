"""A page on another port of the same host cannot drive or frame the app (`streamlit run app.py`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from mindroute.db import transaction
from mindroute.services.users import create_user
from tests.browser.test_auth_browser import ADMIN_EMAIL, ADMIN_PASSWORD, settle, sign_in

STREAM = "/_stcore/stream"


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + STREAM


def open_stream(base: str, origin: str | None) -> int:
    """101 when the websocket opens, else the HTTP status that refused it."""
    try:
        with connect(ws_url(base), origin=origin, subprotocols=["streamlit"], open_timeout=15):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def test_the_real_server_opens_its_websocket_only_to_its_own_origin(server) -> None:
    base = server.base_url
    port = base.rsplit(":", 1)[1]
    assert open_stream(base, base) == 101
    for foreign in (
        "http://127.0.0.1:1",
        f"http://localhost:{port}",
        f"https://127.0.0.1:{port}",
        "https://evil.example",
        None,  # no Origin at all
    ):
        assert open_stream(base, foreign) == 403, foreign
    assert "refused a websocket from origin 'http://127.0.0.1:1'" in server.log()


def test_the_real_server_refuses_other_origins_on_cookie_routes_and_sends_the_headers(server) -> None:
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
    form = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    other_port = httpx.post(f"{server.base_url}/auth/signin", data=form, headers={"Origin": "http://127.0.0.1:1"})
    assert other_port.status_code == 403 and "set-cookie" not in other_port.headers
    own = httpx.post(f"{server.base_url}/auth/signin", data=form, headers={"Origin": server.base_url})
    assert own.status_code == 303 and "mindroute_session=" in own.headers["set-cookie"]
    upload = f"{server.base_url}/_stcore/upload_file/some-session/some-file"
    foreign_put = httpx.put(upload, files={"file": b"x"}, headers={"Origin": "http://127.0.0.1:1"})
    assert foreign_put.status_code == 403 and foreign_put.json() == {"error": "cross-site request refused"}
    own_put = httpx.put(upload, files={"file": b"x"}, headers={"Origin": server.base_url})
    assert "cross-site request refused" not in own_put.text  # Streamlit's own checks decide
    page = httpx.get(server.base_url + "/", headers={"Accept": "text/html"})
    assert page.headers["content-security-policy"] == "frame-ancestors 'self'"
    assert page.headers["x-frame-options"] == "SAMEORIGIN"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"


ATTACK_PAGE = """<!doctype html><html><body>
<iframe id="framed" src="{app}/" width="800" height="600"></iframe>
<script>
const ws = new WebSocket("{ws}", ["streamlit"]);
ws.onopen = () => {{ document.title = "opened"; }};
ws.onerror = () => {{ document.title = "refused"; }};
</script></body></html>"""


@pytest.fixture
def attacker(server) -> Iterator[str]:
    """A page served from another port of 127.0.0.1 that opens the app's websocket and frames it."""
    body = ATTACK_PAGE.format(app=server.base_url, ws=ws_url(server.base_url)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_page_on_another_port_can_neither_open_the_websocket_nor_frame_the_app(
    server, browser_context, attacker
) -> None:
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
    app_page = browser_context.new_page()
    sign_in(app_page, server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)  # a signed-in admin's browser
    app_page.get_by_role("heading", name="Overview").wait_for()
    # The control: the app's own page opens the websocket (its cookie goes with it).
    assert (
        app_page.evaluate(
            """url => new Promise(done => { const ws = new WebSocket(url, ["streamlit"]);
           ws.onopen = () => { ws.close(); done("opened"); }; ws.onerror = () => done("refused"); })""",
            ws_url(server.base_url),
        )
        == "opened"
    )

    evil = browser_context.new_page()
    evil.goto(attacker)
    evil.wait_for_function("document.title !== ''", timeout=30_000)
    assert evil.title() == "refused"
    assert "refused a websocket from origin '" + attacker.rstrip("/") + "'" in server.log()
    # The framed copy never renders: the browser blocks it (frame-ancestors / X-Frame-Options).
    evil.wait_for_timeout(2000)
    framed = [f for f in evil.frames if f != evil.main_frame]
    assert framed, "the iframe exists"
    for frame in framed:
        assert frame.locator("[data-testid='stApp']").count() == 0
        assert not frame.url.startswith(server.base_url) or frame.locator("body *").count() == 0
    settle(app_page)
