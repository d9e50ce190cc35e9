"""The built-in protocols' names, in display order: what the providers table's CHECK constraint allows.

Its own module, importing nothing, so `mindroute.models` can read it without pulling in the registry
or an HTTP stack. The modules that speak these protocols register them in `registry.py`; a name added
here needs a migration (migrations/versions/0002 wrote the constraint).
"""

from __future__ import annotations

BUILTIN_PROTOCOLS: tuple[str, ...] = ("openai", "anthropic", "google", "openai-compatible")
# The modules whose `register_protocols(register)` hook registers exactly the names above.
BUILTIN_MODULES: tuple[str, ...] = (
    "mindroute.providers.openai",
    "mindroute.providers.anthropic",
    "mindroute.providers.google",
)
