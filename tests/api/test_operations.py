"""What operators call on the API's port: /healthz/live, /healthz/ready, /metrics behind its token, and the
x-request-id on every answer; against the real server, on both databases."""

from __future__ import annotations

import time

import httpx
import pytest

from mindroute import config
from tests.api.conftest import logged
from tests.api.test_admission import ok, world
from tests.api.test_refusals import chat, post

__all__ = ["world"]  # a fixture, used by name

TOKEN = "metrics-token-0123456789"


def test_live_and_ready(server) -> None:
    assert httpx.get(f"{server.url}/healthz/live").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/healthz/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "migrations": "ok", "log_writer": "ok"}


def test_metrics_are_not_public_without_a_token(server) -> None:
    assert httpx.get(f"{server.url}/metrics").status_code == 404


@pytest.fixture
def metrics_token(monkeypatch):
    """Asked for before `server`, whose set-up reads the settings afresh."""
    monkeypatch.setenv("MINDROUTE_METRICS_TOKEN", TOKEN)
    config.get_settings.cache_clear()


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_the_calls_made(engine, metrics_token, server, world) -> None:
    account, _, _ = world
    for _ in range(3):
        ok(server, account.key)
    assert post(server, account.key, chat("Fake/no-such-model")).status_code in (400, 403, 404)
    logged(engine, 4)  # written (and so counted) by the Logs writer
    wrong = httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    deadline = time.monotonic() + 10
    while True:
        answer = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        text = answer.text
        if _sample(text, "mindroute_requests_total", provider="Fake", model="test-model", status="200") >= 3:
            break
        assert time.monotonic() < deadline, text[-2000:]
        time.sleep(0.1)
    assert _sample(text, "mindroute_request_duration_seconds_count", provider="Fake", model="test-model") >= 3
    assert "mindroute_log_writer_queue_rows" in text
    assert _sample(text, "mindroute_overhead_seconds_count", source="api") >= 3


@pytest.mark.parametrize(
    ("sent", "kept"), [("client-id-123", True), ("has spaces", False), ("x" * 200, False), (None, False)]
)
def test_every_answer_carries_a_request_id(server, sent, kept) -> None:
    headers = {"x-request-id": sent} if sent is not None else {}
    for answer in (
        httpx.get(f"{server.url}/v1/models", headers=headers),  # 401 without a key
        httpx.get(f"{server.url}/v1/nowhere", headers=headers),  # 404
    ):
        got = answer.headers["x-request-id"]
        assert (got == sent) is kept
        if not kept:
            assert len(got) == 32
