"""Which adapter speaks which wire protocol: `adapter_for(provider.protocol)`."""

from __future__ import annotations

from mindroute.providers.anthropic import AnthropicAdapter
from mindroute.providers.base import ProviderAdapter
from mindroute.providers.google import GoogleAdapter
from mindroute.providers.openai import OpenAIAdapter

# Adapters hold no per-call state, so one instance per protocol serves every thread and task.
_ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": OpenAIAdapter("openai"),
    "openai-compatible": OpenAIAdapter("openai-compatible"),
    "anthropic": AnthropicAdapter(),
    "google": GoogleAdapter(),
}


def adapter_for(protocol: str) -> ProviderAdapter:
    """The adapter for a provider's `protocol` column; ValueError for one MindRoute does not speak."""
    try:
        return _ADAPTERS[protocol]
    except KeyError:
        raise ValueError(f"Unknown provider protocol {protocol!r}: expected one of {', '.join(_ADAPTERS)}") from None


def supported_protocols() -> tuple[str, ...]:
    return tuple(_ADAPTERS)
