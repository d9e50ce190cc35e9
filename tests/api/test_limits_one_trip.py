"""Issue 16 (speed): on PostgreSQL a call on a remembered route reads its key in the one statement that counts
it against its limits; a refused key counts nothing there, and a moved fingerprint undoes the count."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update

from mindroute.db import transaction
from mindroute.models import ApiKey, utcnow
from mindroute.services import admission
from mindroute.services.limit_rules import user_target
from tests.api.conftest import add_account, add_provider, logged
from tests.api.test_limits_api import fresh_minute, set_rule
from tests.api.test_refusals import chat, post
from tests.pages.helpers import add_user
from tests.providers.conftest import make_target
from tests.test_limits_check import requests_counted

BUDGET = {"budget_usd": 1000.0, "period": "month"}  # budgets and rates: the one statement's case


@pytest.fixture
def world(engine, server, request, monkeypatch):
    if engine.dialect.name != "postgresql":
        pytest.skip("the one statement is PostgreSQL's (SQLite reads the key on the loop's thread)")
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, ["test-model"], grant_to=account.user_id)
    admin = add_user(engine, "admin@example.com", role="admin")
    reads: list[str] = []
    original = admission.aread_key

    async def counted_read(engine_, digest):  # a spy: the real read, counted
        reads.append(digest)
        return await original(engine_, digest)

    monkeypatch.setattr(admission, "aread_key", counted_read)
    return account, admin.id, reads


def test_a_remembered_route_reads_the_key_with_the_counters_and_a_revoked_key_counts_nothing(engine, server, world):
    account, admin_id, reads = world
    set_rule(engine, admin_id, user_target(account.user_id), rpm=4, **BUDGET)
    fresh_minute()
    statuses = [post(server, account.key, chat("Fake/test-model")).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    assert len(reads) == 1  # the first call routed; the next four read the key in the counters' statement
    counter = user_target(account.user_id)
    assert requests_counted(engine, counter) == 4
    rows = logged(engine, 5)
    assert sorted(row.status_code for row in rows) == [200, 200, 200, 200, 429]
    assert {row.model_id for row in rows} == {"test-model"}
    with transaction(engine) as session:
        session.execute(update(ApiKey).values(revoked_at=utcnow()))
    refused = post(server, account.key, chat("Fake/test-model"))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "revoked_api_key"
    assert requests_counted(engine, counter) == 4  # the statement's gate refused it: nothing to undo
    assert len(reads) == 2  # refused on admission's own path, which logs it as always
    assert sorted(row.status_code for row in logged(engine, 6)) == [200, 200, 200, 200, 401, 429]


def test_a_changed_rule_moves_the_fingerprint_the_count_is_undone_and_the_call_counted_once(engine, server, world):
    account, admin_id, reads = world
    target = user_target(account.user_id)
    set_rule(engine, admin_id, target, rpm=10, **BUDGET)
    fresh_minute()
    assert [post(server, account.key, chat("Fake/test-model")).status_code for _ in range(2)] == [200, 200]
    assert requests_counted(engine, target) == 2 and len(reads) == 1
    set_rule(engine, admin_id, target, rpm=3, **BUDGET)  # the limits' fingerprint moves
    assert post(server, account.key, chat("Fake/test-model")).status_code == 200
    assert len(reads) == 2  # the remembered route's fingerprint was out of date: routed again
    assert requests_counted(engine, target) == 3  # counted in the statement, undone, counted again: once
    answer = post(server, account.key, chat("Fake/test-model"))
    assert answer.status_code == 429  # the new rule (3 a minute) holds
    assert len(reads) == 2
    assert requests_counted(engine, target) == 3


def test_the_key_row_read_as_json_is_the_same_row_and_fingerprint(engine, world):
    account, _, _ = world
    with transaction(engine) as session:
        digest = session.get(ApiKey, account.key_id).key

    async def both():
        from mindroute.services.pg_async import aclose_pg_pools, pg_pool

        read = await admission.aread_key(engine, digest)
        sql = f"WITH gate AS ({admission._pg_sql(engine)}) SELECT row_to_json(gate)::text FROM gate"
        [[text]] = await pg_pool(engine).fetch(sql, {"digest": digest})
        await aclose_pg_pools()
        return read, admission.key_row_of_json(text)

    read, from_json = asyncio.run(both())
    assert read is not None and from_json == read and from_json.fingerprint == read.fingerprint
    assert admission.key_row_of_json(None) is None
