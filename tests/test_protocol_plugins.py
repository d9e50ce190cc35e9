"""A protocol is one plug-in: registered once, it is offered everywhere; the built-in names match the database's."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mindroute.models import PROTOCOLS, Provider
from mindroute.providers import registry
from mindroute.providers.adapter import ProviderAdapter
from mindroute.providers.builtin import BUILTIN_PROTOCOLS
from mindroute.providers.models_list import models_url
from mindroute.providers.registry import DEFAULT_ENDPOINTS, ProtocolSpec
from mindroute.providers.shapes import ChatRequest, ChatResult, HttpCall
from mindroute.providers.sse import SSEEvent, StreamTranslator
from mindroute.services.providers import needs_key, protocol_choices
from mindroute.validation import ValidationError, validate_protocol
from tests.pages.helpers import texts
from tests.pages.test_admin_providers import admin_on_page

ROOT = Path(__file__).resolve().parents[1]
TOY = "toy-chat"
TOY_LABEL = "Toy Chat (a protocol from a test)"
TOY_ENDPOINT = "http://toy.invalid/api"


# --- a protocol module, as small as one can be ----------------------------------------------


class ToyTranslator(StreamTranslator):
    def feed(self, event: SSEEvent) -> list:
        self.done = event.data == "[END]"
        return [] if self.done else self.text_chunk(event.data)


class ToyAdapter(ProviderAdapter):
    protocol = TOY
    key_required = False

    def build_call(self, request: ChatRequest, endpoint: str, api_key: str | None, *, stream: bool) -> HttpCall:
        body = {"model": request.model, "prompt": [m.text for m in request.messages], "stream": stream}
        return HttpCall(url=endpoint.rstrip("/") + "/chat", headers=self.auth_headers(api_key), body=body)

    def parse_response(self, body: Any, request: ChatRequest) -> ChatResult:
        return ChatResult(body["text"], None, None, None, False, "stop", request.model, body)

    def stream_translator(self, request: ChatRequest) -> StreamTranslator:
        return ToyTranslator(request.model)

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"x-toy-key": api_key} if api_key else {}

    def models_url(self, endpoint: str) -> str:
        return endpoint.rstrip("/") + "/models"

    def models_page(self, body: Any) -> tuple[list[str], dict[str, str] | None]:
        return list(body["names"]), None


def register_protocols(register) -> None:
    register(ProtocolSpec(name=TOY, label=TOY_LABEL, default_endpoint=TOY_ENDPOINT, adapter=ToyAdapter()))


@pytest.fixture
def toy_protocol() -> Iterator[str]:
    register_protocols(registry.register)
    yield TOY
    registry.unregister(TOY)


# --- registered once, offered everywhere ----------------------------------------------------


def test_a_registered_protocol_is_in_the_registry_after_the_built_in_ones(toy_protocol) -> None:
    names = [spec.name for spec in registry.protocols()]
    assert names == [*BUILTIN_PROTOCOLS, TOY]
    spec = registry.protocol(TOY)
    assert (spec.label, spec.default_endpoint, spec.key_required) == (TOY_LABEL, TOY_ENDPOINT, False)
    assert isinstance(registry.adapter_for(TOY), ToyAdapter)
    assert DEFAULT_ENDPOINTS[TOY] == TOY_ENDPOINT
    assert models_url(TOY, TOY_ENDPOINT + "/") == TOY_ENDPOINT + "/models"


def test_a_registered_protocol_is_one_a_provider_may_have(toy_protocol) -> None:
    assert validate_protocol(TOY) == TOY
    assert not needs_key(TOY)
    choice = next(c for c in protocol_choices() if c.name == TOY)
    assert (choice.label, choice.default_endpoint, choice.key_required) == (TOY_LABEL, TOY_ENDPOINT, False)


def test_an_unregistered_protocol_is_refused_everywhere() -> None:
    with pytest.raises(ValueError):
        registry.protocol(TOY)
    with pytest.raises(ValidationError):
        validate_protocol(TOY)
    assert TOY not in DEFAULT_ENDPOINTS
    assert TOY not in [c.name for c in protocol_choices()]


def test_a_name_is_registered_once() -> None:
    with pytest.raises(ValueError):
        registry.register(ProtocolSpec(name="openai", label="Another", default_endpoint="", adapter=ToyAdapter()))
    with pytest.raises(ValueError):
        registry.unregister("openai")


def test_a_registered_protocol_is_offered_on_the_providers_page(toy_protocol, engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    assert not at.exception, at.exception
    box = at.selectbox(key="new_provider_protocol")
    assert TOY_LABEL in box.options
    assert TOY_ENDPOINT in texts(at) or any(TOY_ENDPOINT in str(e.proto) for e in at.main)


# --- the built-in names are the database's -------------------------------------------------


def _check_literal(source: str) -> list[str]:
    match = re.search(r"protocol IN \(([^)]*)\)", source)
    assert match, "no protocol CHECK found"
    return re.findall(r"'([^']+)'", match.group(1))


def test_the_migrations_check_constraint_lists_the_built_in_protocols() -> None:
    migration = (ROOT / "migrations/versions/0002_mindroute_additions.py").read_text()
    assert _check_literal(migration) == list(BUILTIN_PROTOCOLS)
    model_check = next(c for c in Provider.__table__.constraints if c.name == "providers_protocol_check")
    assert _check_literal(str(model_check.sqltext)) == list(BUILTIN_PROTOCOLS)
    assert PROTOCOLS == BUILTIN_PROTOCOLS


def test_the_built_in_modules_register_exactly_the_built_in_names_in_display_order() -> None:
    assert [spec.name for spec in registry.protocols()[: len(BUILTIN_PROTOCOLS)]] == list(BUILTIN_PROTOCOLS)
    assert [spec.adapter.protocol for spec in registry.protocols()[: len(BUILTIN_PROTOCOLS)]] == list(BUILTIN_PROTOCOLS)
    assert registry.official_providers() == (("OpenAI", "openai"), ("Anthropic", "anthropic"), ("Google AI", "google"))


def test_the_models_read_the_protocol_names_without_an_http_stack() -> None:
    code = "import sys, mindroute.models; print(sorted(m for m in ('httpx', 'aiohttp') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
