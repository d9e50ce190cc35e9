"""Local servers that speak OpenAI's, Anthropic's and Gemini's chat protocols, checking what the real APIs check.

Each fake is a plain ASGI app run by uvicorn on 127.0.0.1 in a background thread. The model name
picks the scenario, as a test would pick a real model: "error-429" answers a rate limit, "slow"
waits before the first byte, "endless" streams until the client goes away, "cutoff" drops the
connection half-way, "malformed" sends broken JSON. Any other model gets a normal answer that
echoes the last user text. The fakes are no stricter than the real APIs.

The shared plumbing is in fake_base.py, each protocol's server in its own module; this module names them all.
"""

from tests.providers.fake_anthropic import FakeAnthropic
from tests.providers.fake_base import (
    ANTHROPIC_KEY,
    COMPLETION_TOKENS,
    ENDLESS_EVENT_GAP_S,
    ENDLESS_EVENTS,
    GOOGLE_KEY,
    OPENAI_KEY,
    PROMPT_TOKENS,
    SLOW_FIRST_BYTE_S,
    FakeProvider,
    FakeServer,
    Received,
    Reply,
    answer_pieces,
    expected_answer,
    sse,
)
from tests.providers.fake_gemini import FakeGemini
from tests.providers.fake_openai import FakeOpenAI

__all__ = [
    "ANTHROPIC_KEY",
    "COMPLETION_TOKENS",
    "ENDLESS_EVENTS",
    "ENDLESS_EVENT_GAP_S",
    "GOOGLE_KEY",
    "OPENAI_KEY",
    "PROMPT_TOKENS",
    "SLOW_FIRST_BYTE_S",
    "FakeAnthropic",
    "FakeGemini",
    "FakeOpenAI",
    "FakeProvider",
    "FakeServer",
    "Received",
    "Reply",
    "answer_pieces",
    "expected_answer",
    "sse",
]
