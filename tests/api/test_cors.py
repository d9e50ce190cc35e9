"""CORS on /v1: off by default (preflights a JSON 403, no CORS headers), preflights from the origins
MINDROUTE_API_CORS_ORIGINS allows answered 204, and the allow/expose headers on a real answer."""

from __future__ import annotations

import httpx
import pytest

from mindroute import config
from mindroute.config import ConfigError, parse_cors_origins
from tests.api.conftest import add_account, add_provider, logged
from tests.api.test_refusals import chat
from tests.providers.conftest import make_target

APP = "https://app.example.com"
PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type, x-stainless-os, openai-beta, x-evil",
}


def preflight(server, origin: str | None, path: str = "/v1/chat/completions") -> httpx.Response:
    headers = dict(PREFLIGHT)
    if origin is not None:
        headers["origin"] = origin
    return httpx.options(f"{server.url}{path}", headers=headers, timeout=20)


@pytest.fixture
def cors_server(request, monkeypatch):
    """The API with CORS allowing APP and http://localhost:3000 (set before the server reads its settings)."""
    monkeypatch.setenv("MINDROUTE_API_CORS_ORIGINS", f"{APP}, http://localhost:3000")
    config.get_settings.cache_clear()
    running = request.getfixturevalue("server")
    yield running
    config.get_settings.cache_clear()


def assert_no_cors(response: httpx.Response) -> None:
    assert not [name for name in response.headers if name.startswith("access-control-")]


def test_cors_is_off_by_default(engine, server, monkeypatch, request):
    monkeypatch.delenv("MINDROUTE_API_CORS_ORIGINS", raising=False)
    config.get_settings.cache_clear()
    answer = preflight(server, APP)
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"]["code"] == "cors_not_allowed"
    assert_no_cors(answer)
    # A plain OPTIONS (no Origin) on a /v1 path is JSON too, not a 405 in text.
    bare = preflight(server, None, "/v1/models")
    assert bare.status_code == 403 and bare.json()["error"]["message"]
    # A real answer to a browser's call carries no CORS headers either.
    models = httpx.get(f"{server.url}/v1/models", headers={"origin": APP}, timeout=20)
    assert models.status_code == 401
    assert_no_cors(models)


def test_an_allowed_preflight_is_204_with_the_cors_headers(engine, cors_server):
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/models/Some/model"):
        answer = preflight(cors_server, APP, path)
        assert answer.status_code == 204, answer.text
        assert answer.headers["access-control-allow-origin"] == APP
        assert answer.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
        allowed = [h.strip() for h in answer.headers["access-control-allow-headers"].split(",")]
        assert allowed == ["authorization", "content-type", "x-stainless-os", "openai-beta"]  # not x-evil
        assert answer.headers["access-control-max-age"] == "600"
        assert answer.headers["vary"] == "Origin"
        assert "access-control-allow-credentials" not in answer.headers
    local = preflight(cors_server, "http://localhost:3000")
    assert local.status_code == 204 and local.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_a_preflight_from_another_origin_is_refused(engine, cors_server):
    for origin in ("https://evil.example.com", "https://app.example.com.evil.net", "http://app.example.com", "null"):
        answer = preflight(cors_server, origin)
        assert answer.status_code == 403, origin
        assert answer.json()["error"]["code"] == "cors_not_allowed"
        assert_no_cors(answer)


def test_real_answers_to_an_allowed_origin_carry_the_headers(engine, cors_server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, grant_to=account.user_id)
    headers = {"authorization": f"Bearer {account.key}", "origin": APP}
    answer = httpx.post(f"{cors_server.url}/v1/chat/completions", json=chat("Fake/test-model"), headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == APP
    assert answer.headers["vary"] == "Origin"
    exposed = answer.headers["access-control-expose-headers"]
    for name in ("x-request-id", "x-mindroute-overhead-ms", "retry-after", "x-ratelimit-remaining-requests"):
        assert name in exposed
    assert "access-control-allow-credentials" not in answer.headers
    logged(engine, 1)
    # Errors too (a browser must be able to read them); another origin gets nothing.
    refused = httpx.get(f"{cors_server.url}/v1/models", headers={"origin": APP}, timeout=20)
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP
    other = httpx.get(f"{cors_server.url}/v1/models", headers={"origin": "https://evil.example.com"}, timeout=20)
    assert other.status_code == 401
    assert_no_cors(other)
    # No Origin: not a cross-origin call, no CORS headers.
    plain = httpx.get(f"{cors_server.url}/v1/models", timeout=20)
    assert_no_cors(plain)


def test_a_star_allows_every_origin(engine, server, monkeypatch):
    monkeypatch.setenv("MINDROUTE_API_CORS_ORIGINS", "*")
    config.get_settings.cache_clear()
    try:
        answer = preflight(server, "https://anything.example.org")
        assert answer.status_code == 204
        assert answer.headers["access-control-allow-origin"] == "*"
    finally:
        config.get_settings.cache_clear()


def test_the_setting_is_checked():
    assert parse_cors_origins(None) == ()
    assert parse_cors_origins("") == ()
    assert parse_cors_origins("https://A.example.com:443/, *") == ("https://a.example.com", "*")
    for bad in ("app.example.com", "https://app.example.com/path", "ftp://x.example.com"):
        with pytest.raises(ConfigError, match="MINDROUTE_API_CORS_ORIGINS"):
            parse_cors_origins(bad)
