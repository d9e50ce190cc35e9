"""Exact-origin checks on the cookie routes and websockets, proxy headers, and the security headers."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from mindroute import config
from mindroute.config import ConfigError, normalize_origin, parse_public_origins
from mindroute.http import web
from tests.test_auth import PASSWORD, add_user


@pytest.fixture
def app_client(engine, monkeypatch) -> TestClient:
    import mindroute.db as db

    monkeypatch.setattr(db, "_engine", engine)

    async def page(_request):
        return PlainTextResponse("page")

    async def stream(websocket: WebSocket) -> None:  # stands in for Streamlit's /_stcore/stream
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    async def upload(_request):  # stands in for Streamlit's upload endpoint
        return PlainTextResponse("stored")

    app = Starlette(
        routes=[
            *web.routes(),
            Route("/", page),
            Route("/_stcore/upload_file/{rest:path}", upload, methods=["PUT", "DELETE", "OPTIONS"]),
            WebSocketRoute("/_stcore/stream", stream),
        ],
        middleware=web.middleware(),
    )
    return TestClient(app, base_url="http://127.0.0.1:8501")


def settings_env(monkeypatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    config.get_settings.cache_clear()


def sign_in(client: TestClient, headers: dict[str, str]) -> int:
    form = {"email": "a@example.com", "password": PASSWORD}
    return client.post("/auth/signin", data=form, headers=headers, follow_redirects=False).status_code


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9999",  # another port of the same host: the attack
        "http://127.0.0.1",
        "https://127.0.0.1:8501",  # another scheme
        "http://localhost:8501",  # another host name for the same machine
        "http://127.0.0.1:8501.evil.example",
        "null",
    ],
)
def test_cookie_routes_refuse_every_origin_but_the_exact_own_one(app_client, engine, origin) -> None:
    add_user(engine, "a@example.com")
    assert sign_in(app_client, {"Origin": origin}) == 403
    assert app_client.post("/auth/signout", headers={"Origin": origin}).status_code == 403
    assert sign_in(app_client, {"Referer": origin + "/x"}) == 403
    assert sign_in(app_client, {"Origin": "http://127.0.0.1:8501"}) == 303
    assert sign_in(app_client, {"Referer": "http://127.0.0.1:8501/some/page"}) == 303  # no Origin: its Referer


def test_forwarded_host_and_proto_count_only_behind_a_trusted_proxy(app_client, engine, monkeypatch) -> None:
    add_user(engine, "a@example.com")
    forged = {"Origin": "https://evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    assert sign_in(app_client, forged) == 403
    settings_env(monkeypatch, MINDROUTE_TRUST_PROXY="true")
    proxied = {"Origin": "https://console.example", "X-Forwarded-Host": "console.example", "X-Forwarded-Proto": "https"}
    assert sign_in(app_client, proxied) == 303
    assert sign_in(app_client, {**proxied, "Origin": "http://console.example"}) == 403


def test_a_configured_public_origin_is_the_only_one(app_client, engine, monkeypatch) -> None:
    add_user(engine, "a@example.com")
    settings_env(monkeypatch, MINDROUTE_PUBLIC_ORIGIN="https://console.example.com, http://10.0.0.5:8501")
    assert sign_in(app_client, {"Origin": "http://127.0.0.1:8501"}) == 403  # the Host header no longer counts
    assert sign_in(app_client, {"Origin": "https://console.example.com"}) == 303
    assert sign_in(app_client, {"Origin": "https://console.example.com:443"}) == 303  # the default port
    assert sign_in(app_client, {"Origin": "http://10.0.0.5:8501"}) == 303
    assert sign_in(app_client, {"Origin": "https://console.example.com:8443"}) == 403


def test_public_origin_setting_is_checked() -> None:
    assert parse_public_origins("https://A.example:443/ , http://b.example:8080") == (
        "https://a.example",
        "http://b.example:8080",
    )
    assert normalize_origin("http://[::1]:8501") == "http://[::1]:8501"
    for bad in ("console.example.com", "ftp://x.example", "https://x.example/app", "https://u:p@x.example"):
        with pytest.raises(ConfigError, match="MINDROUTE_PUBLIC_ORIGIN"):
            parse_public_origins(bad)


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:9999", "http://localhost:8501", "null"])
def test_a_websocket_from_another_origin_is_refused_before_the_app_sees_it(app_client, origin) -> None:
    headers = {} if origin is None else {"Origin": origin}
    with pytest.raises(WebSocketDisconnect) as refused:
        with app_client.websocket_connect("ws://127.0.0.1:8501/_stcore/stream", headers=headers) as ws:
            ws.receive_text()
    assert refused.value.code == 1008
    with app_client.websocket_connect(
        "ws://127.0.0.1:8501/_stcore/stream", headers={"Origin": "http://127.0.0.1:8501"}
    ) as ws:
        assert ws.receive_text() == "hello"


def test_every_response_but_the_apis_carries_the_security_headers(app_client) -> None:
    for path in ("/", "/healthz"):
        headers = app_client.get(path).headers
        assert headers["content-security-policy"] == "frame-ancestors 'self'"
        assert headers["x-frame-options"] == "SAMEORIGIN"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"


def test_other_unsafe_requests_from_another_origin_are_refused(app_client) -> None:
    url = "/_stcore/upload_file/session/file"
    for method in ("PUT", "DELETE", "OPTIONS"):
        refused = app_client.request(method, url, headers={"Origin": "http://127.0.0.1:9999"})
        assert refused.status_code == 403 and refused.json() == {"error": "cross-site request refused"}
        assert refused.headers["x-frame-options"] == "SAMEORIGIN"
        assert app_client.request(method, url, headers={"Origin": "http://127.0.0.1:8501"}).text == "stored"
        assert app_client.request(method, url).text == "stored"  # a program, no Origin: Streamlit decides
    assert (
        app_client.get(url.replace("upload_file", "x"), headers={"Origin": "http://127.0.0.1:9999"}).status_code == 404
    )
