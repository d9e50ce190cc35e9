"""HTTP entry points: the OpenAI-compatible API, cookie routes and browser guard, OpenAI shapes, limits."""
