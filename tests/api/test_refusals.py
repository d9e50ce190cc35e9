"""Every refusal of the API: its status, its OpenAI-style body, and its one Logs row."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from mindroute import config
from mindroute.db import transaction
from mindroute.models import ApiKey, Provider, User, utcnow
from mindroute.providers import transport as base
from tests.api.conftest import add_account, add_provider, logged
from tests.providers.conftest import SHORT_TIMEOUT, make_target


def post(server, key: str | None, body: dict | bytes, **headers: str) -> httpx.Response:
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else None
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        json=None if content is not None else body,
        content=content,
        headers=headers,
        timeout=20,
    )


def chat(model: str, text: str = "hi", **options) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **options}


def assert_error(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    for word in words:
        assert word in error["message"]
    return error


@pytest.fixture
def world(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(
        engine,
        "Fake",
        "openai",
        target.server,
        target.key,
        ["test-model", "error-429", "error-500", "slow", "shared"],
        grant_to=account.user_id,
        max_tokens=100,
    )
    return target, account


def test_unknown_key_is_refused_with_401_and_logged(engine, server, world):
    response = post(server, "mr-" + "x" * 40, chat("Fake/test-model"))
    assert assert_error(response, 401, "Unknown API key")["code"] == "invalid_api_key"
    assert assert_error(post(server, None, chat("Fake/test-model")), 401)
    rows = logged(engine, 2)
    assert [r.status_code for r in rows] == [401, 401]
    assert rows[0].request_body["source"] == "api"
    assert "mr-xxxx" not in response.text


@pytest.mark.parametrize(
    ("change", "code"),
    [("revoked", "revoked_api_key"), ("expired", "expired_api_key"), ("deactivated", "account_deactivated")],
)
def test_revoked_expired_or_deactivated_keys_get_401(engine, server, world, change, code):
    _, account = world
    with transaction(engine) as session:
        if change == "revoked":
            session.execute(update(ApiKey).values(revoked_at=utcnow() - timedelta(seconds=1)))
        elif change == "expired":
            session.execute(update(ApiKey).values(expires_at=utcnow() - timedelta(seconds=1)))
        else:
            session.execute(update(User).values(is_active=False))
    assert assert_error(post(server, account.key, chat("Fake/test-model")), 401)["code"] == code
    [row] = logged(engine, 1)
    assert row.status_code == 401


def test_policy_refusals_are_403_and_unknown_models_404(engine, server, world):
    """Issue #13 item 10: a provider the user holds no allowed grant on answers as an unknown model
    (404, the same message, no provider in the row), so 403-vs-404 does not reveal it exists; 403 is
    kept for a provider granted to the user (deactivated, model not allowed)."""
    target, account = world
    add_provider(engine, "Other", "openai", target.server, target.key, ["other-only", "shared"])
    add_provider(engine, "Off", "openai", target.server, target.key, ["off-model"], grant_to=account.user_id)
    add_provider(engine, "Hidden", "openai", target.server, target.key, ["hidden-model"])
    with transaction(engine) as session:
        session.execute(update(Provider).where(Provider.name.in_(["Off", "Hidden"])).values(is_active=False))
    hidden = [
        assert_error(post(server, account.key, chat(model)), 404)["message"]
        for model in ("Other/other-only", "other-only", "Hidden/hidden-model", "Nowhere/other-only", "nowhere")
    ]
    assert hidden == [
        f"The model {m} does not exist"
        for m in ("Other/other-only", "other-only", "Hidden/hidden-model", "Nowhere/other-only", "nowhere")
    ]
    assert_error(post(server, account.key, chat("Off/off-model")), 403, "deactivated")
    assert_error(post(server, account.key, chat("Fake/no-such-model")), 404, "does not exist")
    assert_error(post(server, account.key, chat("no-such-model")), 404, "does not exist")
    rows = logged(engine, 8)
    assert sorted(r.status_code for r in rows) == [403] + [404] * 7
    assert all(r.provider_id is None for r in rows if r.status_code == 404)
    assert all(r.request_body["api_key_id"] == str(account.key_id) for r in rows)


def test_model_outside_the_grant_is_403(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(
        engine,
        "Fake",
        "openai",
        target.server,
        target.key,
        grant_to=account.user_id,
        grant={"settings": {"models": ["test-model"]}},
    )
    assert_error(post(server, account.key, chat("Fake/other-model")), 403, "may not use other-model")


def test_ambiguous_bare_model_names_the_choices(engine, server, world):
    target, account = world
    add_provider(engine, "Second", "openai", target.server, target.key, ["shared"], grant_to=account.user_id)
    assert_error(post(server, account.key, chat("shared")), 400, "Fake/shared", "Second/shared")


def test_over_the_token_limit_is_400_saying_the_limit(engine, server, world):
    _, account = world
    assert_error(post(server, account.key, chat("Fake/test-model", max_tokens=500)), 400, "limit of 100")
    [row] = logged(engine, 1)
    assert row.status_code == 400


def test_images_the_provider_does_not_allow_are_400(engine, server, world):
    _, account = world
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    body = {"model": "Fake/test-model", "messages": [{"role": "user", "content": [image]}]}
    assert_error(post(server, account.key, body), 400, "does not accept images")


def test_remote_image_urls_are_refused_not_fetched(engine, server, world):
    _, account = world
    image = {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}
    body = {"model": "Fake/test-model", "messages": [{"role": "user", "content": [image]}]}
    assert_error(post(server, account.key, body), 400, "does not fetch remote URLs")


def test_malformed_bodies_are_400(engine, server, world):
    _, account = world
    assert_error(post(server, account.key, b"{not json"), 400, "not valid JSON")
    assert_error(post(server, account.key, {"model": "Fake/test-model", "messages": []}), 400, "messages")
    assert len(logged(engine, 2)) == 2


def test_bodies_over_the_limit_are_413_by_length_or_by_count(engine, server, world, monkeypatch):
    _, account = world
    monkeypatch.setenv("MINDROUTE_API_MAX_BODY_BYTES", "1000")
    config.get_settings.cache_clear()  # settings are read once per process
    big = chat("Fake/test-model", "x" * 2000)
    assert_error(post(server, account.key, big), 413, "1,000 bytes")

    def chunks():
        yield b'{"model": "Fake/test-model", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}]}'

    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=chunks(),  # chunked: no Content-Length to go by
        headers={"authorization": f"Bearer {account.key}"},
        timeout=20,
    )
    assert_error(response, 413)
    assert [r.status_code for r in logged(engine, 2)] == [413, 413]


def test_upstream_rate_limit_is_429_with_retry_after(engine, server, world):
    _, account = world
    for stream in (False, True):
        response = post(server, account.key, chat("Fake/error-429", stream=stream))
        assert_error(response, 429, "Rate limit")
        assert response.headers["retry-after"] == "20"


def test_upstream_failure_is_502_and_timeout_504(engine, server, world, monkeypatch):
    _, account = world
    assert_error(post(server, account.key, chat("Fake/error-500")), 502)
    monkeypatch.setattr(base, "DEFAULT_TIMEOUT", SHORT_TIMEOUT)
    assert_error(post(server, account.key, chat("Fake/slow")), 504)
    assert sorted(r.status_code for r in logged(engine, 2)) == [502, 504]


def test_models_needs_a_valid_key(server):
    response = httpx.get(f"{server.url}/v1/models", headers={"authorization": "Bearer nope"})
    assert_error(response, 401)
