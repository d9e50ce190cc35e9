"""The demo data's definition: synthetic users, providers, models, prompts and failure rates for `seed-demo`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# --- demo data ------------------------------------------------------------------------------
#
# Everything below is synthetic and labelled as such: users at demo.mindroute.invalid (a domain
# that can never receive mail), providers named "Demo …" pointing at *.invalid hosts with no key,
# and "demo": true in every JSON body, so nobody mistakes it for real traffic or bills it.

DEMO_EMAIL_DOMAIN = "demo.mindroute.invalid"
DEMO_USER_COUNT = 40
DEMO_PROVIDER_PREFIX = "Demo "
# Users are in Seoul (UTC+9) mostly, so the hourly pattern peaks in their working hours.
DEMO_UTC_OFFSET_HOURS = 9


@dataclass(frozen=True)
class DemoModel:
    name: str
    input_price: float  # USD per million tokens
    output_price: float
    weight: float  # how popular, relative to the provider's other models
    prompt_median: int  # tokens
    completion_median: int
    first_token_ms: int
    ms_per_token: float


@dataclass(frozen=True)
class DemoProviderSpec:
    name: str
    protocol: str
    is_active: bool
    weight: float  # share of traffic
    models: tuple[DemoModel, ...]

    @property
    def endpoint_url(self) -> str:
        slug = self.name.removeprefix(DEMO_PROVIDER_PREFIX).split()[0].lower()
        return f"https://{slug}.{DEMO_EMAIL_DOMAIN}/v1"

    def settings(self) -> dict[str, Any]:
        return {
            "models": [m.name for m in self.models],
            "default_model": self.models[0].name,
            # The documented settings shape only; demo providers are told apart by their name and endpoint.
            "prices": {m.name: {"input": m.input_price, "output": m.output_price} for m in self.models},
        }


DEMO_PROVIDERS: tuple[DemoProviderSpec, ...] = (
    DemoProviderSpec(
        "Demo OpenAI",
        "openai",
        True,
        0.45,
        (
            DemoModel("gpt-4o", 2.5, 10.0, 0.35, 900, 350, 450, 12.0),
            DemoModel("gpt-4o-mini", 0.15, 0.6, 0.5, 700, 300, 300, 7.0),
            DemoModel("o3-mini", 1.1, 4.4, 0.15, 1200, 900, 1500, 9.0),
        ),
    ),
    DemoProviderSpec(
        "Demo Anthropic",
        "anthropic",
        True,
        0.3,
        (
            DemoModel("claude-sonnet-4-5", 3.0, 15.0, 0.55, 1500, 500, 700, 14.0),
            DemoModel("claude-haiku-4-5", 1.0, 5.0, 0.45, 800, 280, 350, 6.0),
        ),
    ),
    DemoProviderSpec(
        "Demo Google",
        "google",
        True,
        0.18,
        (
            DemoModel("gemini-2.5-flash", 0.3, 2.5, 0.7, 1000, 350, 380, 5.0),
            DemoModel("gemini-2.5-pro", 1.25, 10.0, 0.3, 2000, 700, 900, 11.0),
        ),
    ),
    DemoProviderSpec(
        "Demo Local Llama",
        "openai-compatible",
        False,  # shows an inactive provider whose history still counts
        0.07,
        (
            DemoModel("llama3.1:8b", 0.0, 0.0, 0.7, 500, 250, 150, 20.0),
            DemoModel("qwen2.5:14b", 0.0, 0.0, 0.3, 600, 300, 250, 30.0),
        ),
    ),
)

FIRST_NAMES = (
    "Minji", "Jisoo", "Hyunwoo", "Seojun", "Yuna", "Dohyun", "Haeun", "Jiho", "Sora", "Taeyang",
    "Alice", "Bruno", "Chloé", "Dmitri", "Esther", "Farid", "Grace", "Hiro", "Ines", "Jonas",
)  # fmt: skip
LAST_NAMES = (
    "Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Yoon", "Han", "Lim", "Shin",
    "Martin", "Silva", "Novak", "Tanaka", "Okafor", "Müller", "Rossi", "Haddad", "Larsen", "Dubois",
)  # fmt: skip
USER_AGENTS = (
    "MindRoute-Playground/1.0",
    "python-httpx/0.28.1",
    "openai-python/1.99.0",
    "langchain-openai/0.3.28",
    "curl/8.5.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/139.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/139.0 Safari/537.36",
    "node-fetch/3.3.2",
)
PROMPTS = (
    "Summarise this meeting transcript in five bullet points.",
    "Translate the release notes into Korean.",
    "Write a SQL query that finds the top ten customers by revenue.",
    "Explain this stack trace and suggest a fix.",
    "Draft a polite reply declining the vendor's offer.",
    "Classify these support tickets by urgency.",
    "Generate unit tests for the attached function.",
    "Rewrite this paragraph for a non-technical reader.",
    "Extract the invoice number, date and total as JSON.",
    "Suggest three names for an internal analytics dashboard.",
    "Review this pull request for security problems.",
    "Compare PostgreSQL and SQLite for a small internal tool.",
)
# (status, share of requests); failures carry no tokens, as providers do not bill them.
STATUS_SHARES = ((200, 0.955), (429, 0.02), (500, 0.006), (502, 0.005), (504, 0.007), (401, 0.003), (400, 0.004))
ERROR_MESSAGES: dict[int, tuple[str, ...]] = {
    400: ("Bad request: max_tokens is too large for this model", "Bad request: messages must not be empty"),
    401: ("Invalid API key (demo)", "Authentication failed: the provider rejected the key (demo)"),
    429: ("Rate limit exceeded: too many requests, retry later", "Rate limit exceeded: tokens per minute"),
    500: ("The provider had an internal error", "Internal server error"),
    502: ("Bad gateway: the provider returned an invalid response", "Upstream connection reset"),
    504: ("Timed out waiting for the provider after 60 s", "Gateway timeout"),
}
INCIDENT_STATUSES = (502, 504, 500)


def demo_email(number: int) -> str:
    return f"demo-user-{number:02d}@{DEMO_EMAIL_DOMAIN}"


def demo_grants(user_number: int) -> list[int]:
    """Which demo providers a demo user may use; fixed per user, so re-runs agree whatever --seed is."""
    granted = [0]  # everybody has the biggest provider
    if user_number % 3 != 0:
        granted.append(1)
    if user_number % 2 == 0:
        granted.append(2)
    if user_number % 5 == 0:
        granted.append(3)
    return granted
