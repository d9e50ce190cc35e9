"""Admission remembers routes per key and model, but never past a change: every call re-reads the key,
its owner and the fingerprint of providers and grants, so changes made after a key was used apply to
the very next call."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import Engine, text, update

from mindroute import config
from mindroute.db import transaction
from mindroute.models import Provider, User, UserProvider
from mindroute.provider_settings import read_settings
from mindroute.services import admission, api_keys, permissions
from tests.api.conftest import add_account, add_provider, logged
from tests.api.test_refusals import assert_error, chat, post
from tests.pages.helpers import add_user
from tests.providers.conftest import make_target


@pytest.fixture
def world(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    provider_id = add_provider(
        engine, "Fake", "openai", target.server, target.key, ["test-model", "other-model"], grant_to=account.user_id
    )
    admin = add_user(engine, "admin@example.com", role="admin")
    return account, provider_id, admin


def ok(server, key: str, model: str = "Fake/test-model") -> httpx.Response:
    response = post(server, key, chat(model))
    assert response.status_code == 200, response.text
    return response


def test_a_key_revoked_after_use_is_refused_on_the_next_call(engine, server, world):
    account, _, admin = world
    ok(server, account.key)
    ok(server, account.key)  # now answered from the remembered route
    with transaction(engine) as session:
        api_keys.revoke_key(session, session.get(User, admin.id), account.key_id)
    assert assert_error(post(server, account.key, chat("Fake/test-model")), 401)["code"] == "revoked_api_key"
    assert [r.status_code for r in logged(engine, 3)] == [200, 200, 401]


def test_an_owner_deactivated_after_use_is_refused_on_the_next_call(engine, server, world):
    account, _, _ = world
    ok(server, account.key)
    with transaction(engine) as session:
        session.execute(update(User).where(User.id == account.user_id).values(is_active=False))
    assert assert_error(post(server, account.key, chat("Fake/test-model")), 401)["code"] == "account_deactivated"


def test_a_grant_changed_after_use_applies_to_the_next_call(engine, server, world):
    account, provider_id, admin = world
    ok(server, account.key)

    def grant(**values) -> None:
        with transaction(engine) as session:
            permissions.set_grant(session, session.get(User, admin.id), account.user_id, provider_id, **values)

    grant(allowed=False)
    # Issue #13 item 10: without an allowed grant the provider is as unknown as a missing model (was 403).
    assert_error(post(server, account.key, chat("Fake/test-model")), 404, "does not exist")
    grant(allowed=True, models=["other-model"])
    assert_error(post(server, account.key, chat("Fake/test-model")), 403, "other-model")
    ok(server, account.key, "Fake/other-model")
    grant(allowed=True, max_tokens_override=5)
    assert_error(post(server, account.key, chat("Fake/test-model", max_tokens=50)), 400, "limit of 5")


def test_a_grant_deleted_after_use_applies_to_the_next_call(engine, server, world):
    account, provider_id, _ = world
    ok(server, account.key)
    with transaction(engine) as session:
        session.execute(UserProvider.__table__.delete().where(UserProvider.provider_id == provider_id))
    assert_error(post(server, account.key, chat("Fake/test-model")), 404, "does not exist")  # was 403 (issue #13)


def test_a_provider_changed_after_use_applies_to_the_next_call(engine, server, world):
    account, provider_id, _ = world
    ok(server, account.key)
    with transaction(engine) as session:
        provider = session.get(Provider, provider_id)
        provider.settings = {**read_settings(provider.settings), "models": ["other-model"]}
    assert_error(post(server, account.key, chat("Fake/test-model")), 404, "does not exist")
    with transaction(engine) as session:
        session.get(Provider, provider_id).is_active = False
    assert_error(post(server, account.key, chat("Fake/other-model")), 403, "deactivated")


def test_without_the_route_memory_every_call_routes_afresh(engine, server, world, monkeypatch):
    monkeypatch.setenv(admission.ROUTE_CACHE_ENV, "0")
    config.get_settings.cache_clear()  # settings are read once per process
    admission.clear_route_cache()
    account, _, _ = world
    ok(server, account.key)
    ok(server, account.key)
    assert admission._routes._entries == {}


def terminate_other_connections(engine: Engine) -> int:
    """End every other connection to the test database (PostgreSQL); how many there were."""
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()


def test_read_connections_the_server_dropped_are_replaced(engine, server, world):
    if engine.dialect.name != "postgresql":
        pytest.skip("terminating server connections is a PostgreSQL matter")
    account, _, _ = world
    ok(server, account.key)
    dropped = terminate_other_connections(engine)
    assert dropped >= 1
    ok(server, account.key)
    ok(server, account.key)


def test_the_read_works_again_after_its_connections_are_closed(engine, world):
    account, _, _ = world
    digest = api_keys.presented_digest(account.key)

    async def read() -> admission.KeyRow | None:
        try:
            return await admission.aread_key(engine, digest)
        finally:
            await admission.aclose_async_readers()

    first = asyncio.run(read())
    admission.dispose_read_engines()
    again = asyncio.run(read())
    assert first is not None and again == first
    assert (first.id, first.user_id, first.is_active) == (account.key_id, account.user_id, True)
    assert asyncio.run(_read_unknown(engine)) is None


async def _read_unknown(engine) -> admission.KeyRow | None:
    try:
        return await admission.aread_key(engine, "0" * 64)
    finally:
        await admission.aclose_async_readers()
