"""HTTP entry points: the OpenAI-compatible API (api.py assembles chat, models and openapi routes), OpenAI's
shapes (chat_request.py in, openai_compat.py out), the cookie routes and browser guard (web.py, cookies.py,
origins.py, guard.py) and the server's limits (limits.py)."""
