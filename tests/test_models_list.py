"""Refresh models and test connection against local servers that answer like each provider's model list."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mindroute.db import transaction
from mindroute.models import User
from mindroute.providers import models_list
from mindroute.redaction import redact_secrets
from mindroute.services import providers as provider_service

GOOD_KEY = "sk-good-0123456789abcdefghijWXYZ"
WRONG_KEY = "sk-wrong-9876543210zyxwvutsrqABCD"

OPENAI_MODELS = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
ANTHROPIC_MODELS = [
    "claude-opus-4-1-20250805",
    "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-20250219",
    "claude-3-5-haiku-20241022",
    "claude-3-haiku-20240307",
]
GOOGLE_MODELS = [
    ("models/gemini-2.0-flash", ["generateContent", "countTokens"]),
    ("models/gemini-2.5-pro", ["generateContent", "countTokens", "createCachedContent"]),
    ("models/text-embedding-004", ["embedContent"]),
    ("models/gemini-1.5-flash", ["generateContent", "countTokens"]),
]


def _openai_masked(key: str) -> str:
    # How OpenAI's 401 echoes the key it was given: its start, asterisks, its last 4 characters.
    return key[:8] + "*" * max(len(key) - 12, 3) + key[-4:]


class FakeProvider:
    """Answers GET on the model-list path as `protocol`'s real API does, including its error bodies."""

    def __init__(
        self,
        protocol: str,
        *,
        key: str | None = GOOD_KEY,
        page_size: int = 1000,
        delay_s: float = 0.0,
        google_401: bool = False,
        echo_key_in_error: bool = False,
        not_json: bool = False,
    ) -> None:
        self.protocol = protocol
        self.key = key
        self.page_size = page_size
        self.delay_s = delay_s
        self.google_401 = google_401
        self.echo_key_in_error = echo_key_in_error
        self.not_json = not_json
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        self.endpoint = ""

    # -- the answers, per protocol --

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if self.not_json:
            return 200, "<html>Welcome to nginx!</html>"
        if self.protocol in ("openai", "openai-compatible"):
            return self._openai(parts.path, headers)
        if self.protocol == "anthropic":
            return self._anthropic(parts.path, query, headers)
        return self._google(parts.path, query, headers)

    def _openai(self, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        if path != "/v1/models":
            return 404, {"error": {"message": f"Invalid URL (GET {path})", "type": "invalid_request_error"}}
        auth = headers.get("authorization")
        if self.key is not None:
            if auth is None:
                if self.protocol == "openai-compatible":
                    return 401, {"error": "Unauthorized"}  # vLLM started with --api-key
                return 401, {
                    "error": {
                        "message": "You didn't provide an API key. You need to provide your API key in an "
                        "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                }
            given = auth.removeprefix("Bearer ")
            if given != self.key:
                if self.echo_key_in_error:
                    return 401, {"error": {"message": f"The key {given} was revoked", "type": "auth"}}
                if self.protocol == "openai-compatible":
                    return 401, {"error": "Unauthorized"}
                return 401, {
                    "error": {
                        "message": f"Incorrect API key provided: {_openai_masked(given)}. You can find your "
                        "API key at https://platform.openai.com/account/api-keys.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                }
        owner = "library" if self.protocol == "openai-compatible" else "system"
        data = [{"id": m, "object": "model", "created": 1715367049, "owned_by": owner} for m in OPENAI_MODELS]
        return 200, {"object": "list", "data": data}

    def _anthropic(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        if path != "/v1/models":
            return 404, {"type": "error", "error": {"type": "not_found_error", "message": "Not Found"}}
        if headers.get("anthropic-version") is None:
            return 400, {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "anthropic-version: header is required"},
            }
        given = headers.get("x-api-key")
        if given is None:
            return 401, {
                "type": "error",
                "error": {"type": "authentication_error", "message": "x-api-key header is required"},
            }
        if given != self.key:
            return 401, {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
            }
        limit = min(int(query.get("limit", "20")), self.page_size)
        start = ANTHROPIC_MODELS.index(query["after_id"]) + 1 if "after_id" in query else 0
        page = ANTHROPIC_MODELS[start : start + limit]
        return 200, {
            "data": [
                {"type": "model", "id": m, "display_name": m.title(), "created_at": "2025-05-22T00:00:00Z"}
                for m in page
            ],
            "has_more": start + limit < len(ANTHROPIC_MODELS),
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }

    def _google(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        if path != "/v1beta/models":
            return 404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}
        given = headers.get("x-goog-api-key")
        if given is None:
            return 403, {
                "error": {
                    "code": 403,
                    "message": "Method doesn't allow unregistered callers (callers without established identity). "
                    "Please use API Key or other form of API consumer identity to call this API.",
                    "status": "PERMISSION_DENIED",
                }
            }
        if given != self.key:
            if self.google_401:
                return 401, {
                    "error": {
                        "code": 401,
                        "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                        "login cookie or other valid authentication credential.",
                        "status": "UNAUTHENTICATED",
                    }
                }
            return 400, {
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"},
                        }
                    ],
                }
            }
        size = min(int(query.get("pageSize", "50")), self.page_size)
        start = int(query.get("pageToken", "0"))
        page = GOOGLE_MODELS[start : start + size]
        body: dict[str, Any] = {
            "models": [
                {
                    "name": name,
                    "version": "001",
                    "displayName": name.removeprefix("models/"),
                    "inputTokenLimit": 1048576,
                    "outputTokenLimit": 8192,
                    "supportedGenerationMethods": methods,
                }
                for name, methods in page
            ]
        }
        if start + size < len(GOOGLE_MODELS):
            body["nextPageToken"] = str(start + size)
        return 200, body


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        fake = self.server.fake
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake.requests.append((self.path, headers))
        if fake.delay_s:
            fake.release.wait(fake.delay_s)
        status, body = fake.answer(self.path, headers)
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:  # the client gave up (the timeout test)
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeProvider


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeProvider]]:
    """Start a fake provider on 127.0.0.1 (a free port); stopped when the test ends."""
    servers: list[tuple[_Server, FakeProvider]] = []

    def start(protocol: str, **options: Any) -> FakeProvider:
        fake = FakeProvider(protocol, **options)
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = fake
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        fake.endpoint = base + "/v1" if protocol in ("openai", "openai-compatible") else base
        servers.append((server, fake))
        return fake

    yield start
    for server, fake in servers:
        fake.release.set()
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _assert_no_key_text(text: str | None, key: str) -> None:
    assert text is not None
    assert key not in text
    for start in range(len(key) - 4):
        assert key[start : start + 5] not in text, f"a piece of the key shows in {text!r}"


# --- OpenAI and OpenAI-compatible -----------------------------------------------------------


def test_openai_models_are_listed_with_a_bearer_key(serve) -> None:
    fake = serve("openai")
    result = models_list.fetch_models("openai", fake.endpoint, GOOD_KEY)
    assert result.ok and result.status_code == 200 and result.error is None
    assert result.models == tuple(sorted(OPENAI_MODELS))
    assert result.latency_ms >= 0
    path, headers = fake.requests[0]
    assert path == "/v1/models"
    assert headers["authorization"] == f"Bearer {GOOD_KEY}"


def test_openai_wrong_key_gives_its_401_message_without_the_masked_key(serve) -> None:
    fake = serve("openai")
    result = models_list.test_connection("openai", fake.endpoint, WRONG_KEY)
    assert not result.ok and result.status_code == 401 and result.models == ()
    assert "Incorrect API key provided" in result.error
    assert "invalid_request_error" in result.error
    assert models_list.REDACTED in result.error
    _assert_no_key_text(result.error, WRONG_KEY)


def test_openai_compatible_server_without_a_key_gets_no_authorization_header(serve) -> None:
    fake = serve("openai-compatible", key=None)  # Ollama: no key at all
    result = models_list.test_connection("openai-compatible", fake.endpoint, None)
    assert result.ok and result.models == tuple(sorted(OPENAI_MODELS))
    assert "authorization" not in fake.requests[0][1]


def test_openai_compatible_401_with_a_plain_string_error(serve) -> None:
    fake = serve("openai-compatible")  # vLLM started with --api-key
    result = models_list.test_connection("openai-compatible", fake.endpoint, WRONG_KEY)
    assert not result.ok and result.status_code == 401
    assert result.error == "HTTP 401: Unauthorized"


def test_a_key_echoed_verbatim_by_the_provider_is_removed(serve) -> None:
    fake = serve("openai", echo_key_in_error=True)
    result = models_list.test_connection("openai", fake.endpoint, WRONG_KEY)
    assert result.status_code == 401 and "was revoked" in result.error
    _assert_no_key_text(result.error, WRONG_KEY)


def test_a_missing_key_is_reported_without_calling_the_provider(serve) -> None:
    fake = serve("openai")
    result = models_list.test_connection("openai", fake.endpoint, "  ")
    assert not result.ok and result.status_code is None and "No API key" in result.error
    assert fake.requests == []


def test_an_answer_that_is_not_a_model_list_is_reported(serve) -> None:
    fake = serve("openai", not_json=True)
    result = models_list.fetch_models("openai", fake.endpoint, GOOD_KEY)
    assert not result.ok and result.status_code == 200
    assert "not JSON" in result.error


# --- Anthropic ------------------------------------------------------------------------------


def test_anthropic_sends_its_key_and_version_and_follows_every_page(serve) -> None:
    fake = serve("anthropic", page_size=2)
    result = models_list.fetch_models("anthropic", fake.endpoint, GOOD_KEY)
    assert result.ok and result.models == tuple(sorted(ANTHROPIC_MODELS))
    assert len(fake.requests) == 3
    path, headers = fake.requests[0]
    assert urlsplit(path).path == "/v1/models"
    assert headers["x-api-key"] == GOOD_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert "after_id=" in fake.requests[1][0]


def test_anthropic_test_connection_makes_one_request(serve) -> None:
    fake = serve("anthropic", page_size=2)
    result = models_list.test_connection("anthropic", fake.endpoint, GOOD_KEY)
    assert result.ok and len(result.models) == 2 and len(fake.requests) == 1


def test_anthropic_wrong_key_gives_its_401_message(serve) -> None:
    fake = serve("anthropic")
    result = models_list.test_connection("anthropic", fake.endpoint, WRONG_KEY)
    assert not result.ok and result.status_code == 401
    assert result.error == "HTTP 401: invalid x-api-key (authentication_error)"


def test_anthropic_endpoint_typed_with_v1_is_not_doubled(serve) -> None:
    fake = serve("anthropic")
    result = models_list.test_connection("anthropic", fake.endpoint + "/v1/", GOOD_KEY)
    assert result.ok
    assert urlsplit(fake.requests[0][0]).path == "/v1/models"


# --- Google ---------------------------------------------------------------------------------


def test_google_names_lose_their_prefix_and_non_chat_models_are_skipped(serve) -> None:
    fake = serve("google", page_size=3)
    result = models_list.fetch_models("google", fake.endpoint, GOOD_KEY)
    assert result.ok
    assert result.models == ("gemini-1.5-flash", "gemini-2.0-flash", "gemini-2.5-pro")
    assert len(fake.requests) == 2 and "pageToken=3" in fake.requests[1][0]
    path, headers = fake.requests[0]
    assert urlsplit(path).path == "/v1beta/models"
    assert headers["x-goog-api-key"] == GOOD_KEY
    assert "key=" not in path  # the key travels in a header, never in a URL that may be logged


def test_google_wrong_key_gives_its_api_key_invalid_message(serve) -> None:
    fake = serve("google")
    result = models_list.test_connection("google", fake.endpoint, WRONG_KEY)
    assert not result.ok and result.status_code == 400
    assert result.error == "HTTP 400: API key not valid. Please pass a valid API key. (INVALID_ARGUMENT)"


def test_google_401_unauthenticated_message(serve) -> None:
    fake = serve("google", google_401=True)
    result = models_list.test_connection("google", fake.endpoint, WRONG_KEY)
    assert not result.ok and result.status_code == 401
    assert "invalid authentication credentials" in result.error and "UNAUTHENTICATED" in result.error


# --- the network ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "google", "openai-compatible"])
def test_a_slow_provider_times_out(serve, protocol: str) -> None:
    fake = serve(protocol, delay_s=10)
    result = models_list.test_connection(protocol, fake.endpoint, GOOD_KEY, timeout_s=0.3)
    assert not result.ok and result.status_code is None
    assert result.error == "No answer from " + urlsplit(fake.endpoint).netloc + " within 0.3 s"
    assert 250 <= result.latency_ms < 5000


def test_nothing_listening_is_reported(serve) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}/v1"
    result = models_list.test_connection("openai", endpoint, GOOD_KEY, timeout_s=2)
    assert not result.ok and result.status_code is None
    assert result.error.startswith("Could not reach 127.0.0.1:")


def test_model_list_urls_per_protocol() -> None:
    assert models_list.models_url("openai", "https://api.openai.com/v1/") == "https://api.openai.com/v1/models"
    assert models_list.models_url("anthropic", "https://api.anthropic.com") == "https://api.anthropic.com/v1/models"
    assert (
        models_list.models_url("google", "https://generativelanguage.googleapis.com")
        == "https://generativelanguage.googleapis.com/v1beta/models"
    )
    with pytest.raises(ValueError):
        models_list.models_url("smtp", "https://example.com")


def test_redaction_catches_masked_and_partial_keys() -> None:
    key = "sk-proj-AbCdEfGhIjKlMnOp1234"
    message = f"bad key sk-proj-****1234 and {key[:12]}… and {key}; the project is fine"
    cleaned = redact_secrets(message, key)
    assert "the project is fine" in cleaned
    _assert_no_key_text(cleaned, key)


# --- with a stored provider -----------------------------------------------------------------


def _admin(engine) -> User:
    with transaction(engine) as session:
        admin = User(email="admin@example.com", name="Admin", role="admin", password="x", is_active=True)
        session.add(admin)
        session.flush()
        return admin


def test_refresh_models_with_the_stored_key_saves_them_and_keeps_prices(engine, serve) -> None:
    fake = serve("anthropic")
    admin = _admin(engine)
    with transaction(engine) as session:
        view = provider_service.create_provider(
            session,
            admin,
            name="Claude",
            protocol="anthropic",
            endpoint_url=fake.endpoint,
            api_key=GOOD_KEY,
            settings={"models": ["claude-2"], "prices": {"claude-2": {"input": 8, "output": 24}}},
        )
    with transaction(engine) as session:
        target = provider_service.provider_connection(session, admin, view.id)
    assert GOOD_KEY not in repr(target)
    fetched = models_list.fetch_models(target.protocol, target.endpoint_url, target.api_key)
    assert fetched.ok
    with transaction(engine) as session:
        saved = provider_service.update_provider_settings(
            session,
            admin,
            view.id,
            provider_service.settings_with_models(view.settings, fetched.models),
            expected_updated_at=view.updated_at,
        )
    assert saved.models == sorted(ANTHROPIC_MODELS)
    assert saved.prices == {"claude-2": {"input": 8.0, "output": 24.0}}  # old logs still need their cost


def test_test_connection_with_a_just_typed_key_overrides_the_stored_one(engine, serve) -> None:
    fake = serve("google")
    admin = _admin(engine)
    with transaction(engine) as session:
        view = provider_service.create_provider(
            session, admin, name="Gemini", protocol="google", endpoint_url=fake.endpoint, api_key=WRONG_KEY
        )
    with transaction(engine) as session:
        stored = provider_service.provider_connection(session, admin, view.id)
        typed = provider_service.provider_connection(session, admin, view.id, typed_api_key=GOOD_KEY)
    assert not models_list.test_connection(stored.protocol, stored.endpoint_url, stored.api_key).ok
    assert models_list.test_connection(typed.protocol, typed.endpoint_url, typed.api_key).ok
