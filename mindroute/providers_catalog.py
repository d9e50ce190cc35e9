"""Well-known providers: official endpoints and sensible defaults per protocol."""

from __future__ import annotations

DEFAULT_ENDPOINTS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "google": "https://generativelanguage.googleapis.com",
    "openai-compatible": "http://localhost:11434/v1",  # Ollama's default
}

# name, protocol: what `seed-providers` adds (inactive until a key is set).
OFFICIAL_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("OpenAI", "openai"),
    ("Anthropic", "anthropic"),
    ("Google AI", "google"),
)
