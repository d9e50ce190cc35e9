"""Issue 17: one model under one name in Logs, whether its call was answered or refused."""

from __future__ import annotations

import httpx
from sqlalchemy import update

from mindroute.db import transaction
from mindroute.models import Provider
from mindroute.services.limit_rules import user_target
from tests.api.conftest import add_account, add_provider, logged
from tests.api.test_limits_api import fresh_minute, set_rule
from tests.api.test_refusals import chat, post
from tests.pages.helpers import add_user
from tests.providers.conftest import make_target


def embed(server, key: str, model: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(f"{server.url}/v1/embeddings", json={"model": model, "input": "hi"}, headers=headers, timeout=20)


def test_refusals_that_know_the_provider_log_the_bare_model_as_answered_calls_do(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    fake = add_provider(
        engine, "Fake", "openai", target.server, target.key, ["test-model"], grant_to=account.user_id, max_tokens=100
    )
    off = add_provider(engine, "Off", "openai", target.server, target.key, ["off-model"], grant_to=account.user_id)
    with transaction(engine) as session:
        session.execute(update(Provider).where(Provider.name == "Off").values(is_active=False))
    admin = add_user(engine, "admin@example.com", role="admin")
    fresh_minute()
    statuses = [
        post(server, account.key, chat("Fake/test-model")).status_code,  # answered
        post(server, account.key, chat("Fake/test-model", max_tokens=500)).status_code,  # over the request limit
        post(server, account.key, {"model": "Fake/test-model", "messages": []}).status_code,  # unread: no model
        post(server, account.key, chat("Off/off-model")).status_code,  # the policy: a deactivated provider
        post(server, account.key, chat("Nowhere/x")).status_code,  # no provider: the id as sent
    ]
    set_rule(engine, admin.id, user_target(account.user_id), rpm=1)
    statuses.append(post(server, account.key, chat("Fake/test-model")).status_code)  # the rule's first call
    statuses.append(post(server, account.key, chat("Fake/test-model")).status_code)  # refused by the limit
    statuses.append(embed(server, account.key, "Off/off-model").status_code)  # the embeddings route's policy
    assert statuses == [200, 400, 400, 403, 404, 200, 429, 403]
    rows = logged(engine, len(statuses))
    named = sorted(((row.status_code, row.model_id, row.provider_id) for row in rows), key=str)
    assert named == sorted(
        [
            (200, "test-model", fake),
            (400, "test-model", fake),
            (400, None, None),
            (403, "off-model", off),
            (404, "Nowhere/x", None),
            (200, "test-model", fake),
            (429, "test-model", fake),
            (403, "off-model", off),
        ],
        key=str,
    )
