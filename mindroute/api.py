"""`uvicorn mindroute.api:app`: the OpenAI-compatible API alone, the short name of mindroute.http.api:app."""

from mindroute.http.api import app

__all__ = ["app"]
