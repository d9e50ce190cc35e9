"""Fake provider servers (one per protocol, for the whole session) and sync/async ways to call the adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from mindroute.providers.adapter import ProviderAdapter
from mindroute.providers.registry import adapter_for
from mindroute.providers.shapes import ChatMessage, ChatRequest, ChatResult, StreamChunk, StreamEnd
from mindroute.providers.transport_aiohttp import aclose_shared_async_client
from mindroute.providers.transport_httpx import close_shared_client
from tests.providers.fakes import (
    ANTHROPIC_KEY,
    GOOGLE_KEY,
    OPENAI_KEY,
    FakeAnthropic,
    FakeGemini,
    FakeOpenAI,
    FakeProvider,
    FakeServer,
)

T = TypeVar("T")
# Well under the fakes' slow first byte, so timeout tests take half a second, not two minutes.
SHORT_TIMEOUT = httpx.Timeout(5.0, read=0.5)


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine in a fresh loop, closing that loop's pooled client before the loop ends."""

    async def main() -> T:
        try:
            return await make()
        finally:
            await aclose_shared_async_client()

    return asyncio.run(main())


def ask(text: str, model: str = "test-model", system: str | None = None, **options: Any) -> ChatRequest:
    messages = [ChatMessage("system", system)] if system else []
    return ChatRequest(model=model, messages=[*messages, ChatMessage("user", text)], **options)


def _served(fake: FakeProvider) -> Iterator[FakeServer]:
    server = FakeServer(fake).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openai_server() -> Iterator[FakeServer]:
    yield from _served(FakeOpenAI())


@pytest.fixture(scope="session")
def compatible_server() -> Iterator[FakeServer]:
    # Like a local Ollama behind no auth that reports no token counts.
    yield from _served(FakeOpenAI(key=None, report_usage=False))


@pytest.fixture(scope="session")
def anthropic_server() -> Iterator[FakeServer]:
    yield from _served(FakeAnthropic())


@pytest.fixture(scope="session")
def google_server() -> Iterator[FakeServer]:
    yield from _served(FakeGemini())


@pytest.fixture(scope="session", autouse=True)
def _close_pool() -> Iterator[None]:
    yield
    close_shared_client()


@dataclass
class Target:
    """One protocol's adapter pointed at its fake, with the key the fake accepts."""

    protocol: str
    server: FakeServer
    key: str | None
    reports_usage: bool = True

    @property
    def adapter(self) -> ProviderAdapter:
        return adapter_for(self.protocol)

    @property
    def fake(self) -> FakeProvider:
        return self.server.fake

    @property
    def endpoint(self) -> str:
        # As the admin types them: OpenAI-style endpoints carry /v1, the others are the bare host.
        return self.server.url + "/v1" if self.protocol.startswith("openai") else self.server.url


_TARGETS = {
    "openai": ("openai_server", OPENAI_KEY, True),
    "openai-compatible": ("compatible_server", None, False),
    "anthropic": ("anthropic_server", ANTHROPIC_KEY, True),
    "google": ("google_server", GOOGLE_KEY, True),
}


def make_target(request: pytest.FixtureRequest, protocol: str) -> Target:
    fixture, key, usage = _TARGETS[protocol]
    server = request.getfixturevalue(fixture)
    server.fake.reset()
    return Target(protocol, server, key, usage)


@pytest.fixture(params=list(_TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    """Every protocol in turn."""
    return make_target(request, request.param)


@pytest.fixture(params=[name for name, (_, key, _) in _TARGETS.items() if key])
def keyed_target(request: pytest.FixtureRequest) -> Target:
    """Every protocol whose server checks a key."""
    return make_target(request, request.param)


@pytest.fixture
def openai(request: pytest.FixtureRequest) -> Target:
    return make_target(request, "openai")


@pytest.fixture
def compatible(request: pytest.FixtureRequest) -> Target:
    return make_target(request, "openai-compatible")


@pytest.fixture
def anthropic(request: pytest.FixtureRequest) -> Target:
    return make_target(request, "anthropic")


@pytest.fixture
def google(request: pytest.FixtureRequest) -> Target:
    return make_target(request, "google")


class Caller:
    """The sync or the async path of an adapter, behind one interface so each test runs on both."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def complete(self, target: Target, request: ChatRequest, key: str | None = "", **kw: Any) -> ChatResult:
        key = target.key if key == "" else key
        if self.mode == "sync":
            return target.adapter.complete(request, target.endpoint, key, **kw)
        return run_async(lambda: target.adapter.acomplete(request, target.endpoint, key, **kw))

    def stream(
        self, target: Target, request: ChatRequest, key: str | None = "", **kw: Any
    ) -> list[StreamChunk | StreamEnd]:
        key = target.key if key == "" else key
        if self.mode == "sync":
            return list(target.adapter.stream(request, target.endpoint, key, **kw))

        async def collect() -> list[StreamChunk | StreamEnd]:
            return [item async for item in target.adapter.astream(request, target.endpoint, key, **kw)]

        return run_async(collect)

    def __repr__(self) -> str:
        return self.mode


@pytest.fixture(params=["sync", "async"])
def caller(request: pytest.FixtureRequest) -> Caller:
    return Caller(request.param)
