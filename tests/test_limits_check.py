"""The limit check on SQLite and PostgreSQL (the database counters): every rule kind refuses at its limit with
OpenAI's code, type and headers, the tightest rule wins and is named, TPM counts a finished call's tokens,
windows roll over, budgets refuse when spent (half-hour time zones included), and 100 concurrent checks in one
process admit exactly RPM."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Coroutine, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from mindroute import security
from mindroute.db import transaction
from mindroute.models import BudgetSpend, LimitCounter, Provider, User
from mindroute.services import api_keys, limit_admin, limits
from mindroute.services import limit_rules as lr
from mindroute.services.limit_charges import Charges
from mindroute.services.limit_counters import aclose_pools
from tests.limit_helpers import make_rule

NOW = datetime(2026, 12, 3, 10, 0, 37)  # 23 s before the minute ends
T = TypeVar("T")
PASSWORD_HASH = security.hash_password("correct horse battery")


@pytest.fixture(autouse=True)
def fresh_stores() -> Iterator[None]:
    limits.close_stores()
    yield
    limits.close_stores()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on a loop of its own, closing the loop's database connections after it."""
    return asyncio.run(_closing(coro))


async def _closing(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return await coro
    finally:
        await aclose_pools()


def requests_counted(engine: Engine, key: str) -> int:
    with transaction(engine) as session:
        row = session.get(LimitCounter, key)
        return row.requests if row is not None else 0


# --- no rules ----------------------------------------------------------------------------------------


def test_no_rules_cost_nothing(engine: Engine) -> None:
    assert limits.check(engine, ()) is limits.NO_LIMITS
    assert run(limits.acheck(engine, ())) is limits.NO_LIMITS
    assert limits.NO_LIMITS == limits.LimitCheck(None, {}, None)


def test_reset_text_is_openais_format() -> None:
    assert [limits.reset_text(s) for s in (0.12, 1, 23, 59.5, 60, 360, 3725)] == [
        "120ms",
        "1s",
        "23s",
        "59.5s",
        "1m0s",
        "6m0s",
        "1h2m5s",
    ]


# --- RPM -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rpm_refuses_at_its_limit_with_headers(engine: Engine, mode: str) -> None:
    label = "the limit on API key 'ci' (set by an administrator)"
    rule = make_rule("key:11111111-1111-1111-1111-111111111111", rpm=3, label=label)

    def call(now: datetime = NOW) -> limits.LimitCheck:
        if mode == "sync":
            return limits.check(engine, (rule,), now)
        return run(limits.acheck(engine, (rule,), now))

    seen = [call() for _ in range(3)]
    for remaining, result in zip((2, 1, 0), seen, strict=True):
        assert result.refusal is None
        assert result.headers == {
            "x-ratelimit-limit-requests": "3",
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": "23s",
        }
        assert result.charges == Charges(rate_keys=(), window=lr.minute_window(NOW), budgets=())
    refused = call()
    assert refused.refusal == limits.LimitRefusal(
        status=429,
        code="rate_limit_exceeded",
        type="requests",
        message="Rate limit reached: 3 requests per minute (the limit on API key 'ci' (set by an administrator)); "
        "try again in 23 s",
        retry_after_s=23,
        rule_target=rule.target,
    )
    assert refused.headers["retry-after"] == "23"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.charges is None
    assert requests_counted(engine, rule.counter_key) == 3  # the refused call did not count
    # Half a second before the minute ends, then the next minute starts afresh.
    late = call(NOW.replace(second=59, microsecond=500_000))
    assert late.refusal is not None and late.headers["x-ratelimit-reset-requests"] == "500ms"
    assert late.refusal.retry_after_s == 1
    fresh = call(NOW + timedelta(seconds=60))
    assert fresh.refusal is None and fresh.headers["x-ratelimit-remaining-requests"] == "2"


def test_a_refused_call_counts_on_no_counter(engine: Engine) -> None:
    user = make_rule(rpm=5)
    key = make_rule("key:22222222-2222-2222-2222-222222222222", rpm=1, label="the limit on API key 'ci'")
    assert limits.check(engine, (user, key), NOW).refusal is None
    for _ in range(3):
        refused = limits.check(engine, (user, key), NOW).refusal
        assert refused is not None and refused.rule_target == key.target
    assert requests_counted(engine, user.counter_key) == 1
    assert requests_counted(engine, key.counter_key) == 1
    result = run(limits.acheck(engine, (user, key), NOW))
    assert result.refusal is not None and requests_counted(engine, user.counter_key) == 1


def test_headers_come_from_the_tightest_counter(engine: Engine) -> None:
    user = make_rule(rpm=10, tpm=1000)
    provider = make_rule("provider:33333333-3333-3333-3333-333333333333", rpm=4, tpm=5000)
    rules = (user, provider)
    first = limits.check(engine, rules, NOW)
    assert first.headers == {
        "x-ratelimit-limit-requests": "4",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": "23s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "1000",
        "x-ratelimit-reset-tokens": "23s",
    }
    assert first.charges is not None and set(first.charges.rate_keys) == {user.counter_key, provider.counter_key}
    with transaction(engine) as session:
        limits.record_tokens(session, first.charges, 400, NOW)
    second = limits.check(engine, rules, NOW + timedelta(seconds=7))
    assert second.headers["x-ratelimit-remaining-requests"] == "2"
    assert second.headers["x-ratelimit-remaining-tokens"] == "600"
    assert second.headers["x-ratelimit-reset-tokens"] == "16s"


# --- TPM -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_tpm_refuses_the_call_after_the_minutes_tokens_reached_it(engine: Engine, mode: str) -> None:
    rule = make_rule(tpm=100, label="the limit on Ann")

    def call(now: datetime = NOW) -> limits.LimitCheck:
        return limits.check(engine, (rule,), now) if mode == "sync" else run(limits.acheck(engine, (rule,), now))

    admitted = call()
    assert admitted.refusal is None and admitted.headers["x-ratelimit-remaining-tokens"] == "100"
    assert "x-ratelimit-limit-requests" not in admitted.headers
    assert admitted.charges is not None and admitted.charges.rate_keys == (rule.counter_key,)
    in_flight = call()  # admitted too: the first one's tokens are not known yet
    assert in_flight.refusal is None
    with transaction(engine) as session:
        limits.record_tokens(session, admitted.charges, 60, NOW)
    assert call().refusal is None  # 60 < 100
    with transaction(engine) as session:
        limits.record_tokens(session, admitted.charges, 45, NOW)
    refused = call()
    assert refused.refusal is not None
    assert (refused.refusal.code, refused.refusal.type) == ("rate_limit_exceeded", "tokens")
    assert refused.refusal.message == "Rate limit reached: 100 tokens per minute (the limit on Ann); try again in 23 s"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.headers["retry-after"] == "23"
    # The next minute restarts the counts.
    assert call(NOW + timedelta(minutes=1)).refusal is None


def test_record_tokens_is_a_no_op_once_the_minute_passed_or_without_tpm(engine: Engine) -> None:
    rule = make_rule(tpm=100)
    admitted = limits.check(engine, (rule,), NOW)
    assert admitted.charges is not None
    with transaction(engine) as session:
        limits.record_tokens(session, admitted.charges, 500, NOW + timedelta(minutes=1))  # too late
        limits.record_tokens(session, Charges((), admitted.charges.window, ()), 500, NOW)
        limits.record_tokens(session, admitted.charges, 0, NOW)
    assert limits.check(engine, (rule,), NOW).refusal is None
    with transaction(engine) as session:
        assert session.get(LimitCounter, rule.counter_key).tokens == 0


# --- tightest wins, with real rules ------------------------------------------------------------------


def _user(session: Session, email: str, name: str) -> User:
    user = User(email=email, name=name, role="user", is_active=True, password=PASSWORD_HASH)
    session.add(user)
    session.flush()
    return user


def _set(session: Session, admin: User, target: str, **values: object) -> None:
    limit_admin.set_limit(session, admin, target, lr.validate_settings(**values))


def test_tightest_wins_across_user_default_key_and_provider(engine: Engine) -> None:
    with transaction(engine) as session:
        admin = User(email="admin@example.com", name="Admin", role="admin", is_active=True, password=PASSWORD_HASH)
        session.add(admin)
        ann = _user(session, "ann@example.com", "Ann")
        bob = _user(session, "bob@example.com", "Bob")
        provider = Provider(name="OpenAI", protocol="openai")
        session.add(provider)
        session.flush()
        key = api_keys.create_key(session, ann, ann.id, "ci", None).key
        _set(session, admin, lr.DEFAULT_TARGET, rpm=2)
        _set(session, admin, lr.user_target(ann.id), rpm=6)
        _set(session, admin, lr.key_target(key.id), rpm=5)
        limit_admin.set_limit(session, ann, lr.key_target(key.id, owner=True), lr.validate_settings(rpm=3))
        _set(session, admin, lr.provider_target(provider.id), rpm=4)
        ids = (ann.id, bob.id, key.id, provider.id)
    ann_id, bob_id, key_id, provider_id = ids
    with transaction(engine) as session:
        ann_rules = lr.rules_for_call(session, ann_id, key_id, provider_id)
        bob_rules = lr.rules_for_call(session, bob_id, None, provider_id)
    assert lr.DEFAULT_TARGET not in [r.target for r in ann_rules]  # Ann has her own rule
    assert [r.target for r in bob_rules] == [lr.DEFAULT_TARGET, lr.provider_target(provider_id)]

    results = [limits.check(engine, ann_rules, NOW) for _ in range(4)]
    assert [r.refusal is None for r in results] == [True, True, True, False]
    assert results[0].headers["x-ratelimit-limit-requests"] == "3"
    refusal = results[3].refusal
    assert refusal is not None and refusal.rule_target == lr.key_target(key_id, owner=True)
    assert "3 requests per minute (the limit on API key 'ci' (set by its owner))" in refusal.message

    # Bob meets the default (2 a minute, counted on him alone) and the provider's 4, which Ann used 3 of.
    bob_first = limits.check(engine, bob_rules, NOW)
    assert bob_first.refusal is None and bob_first.headers["x-ratelimit-remaining-requests"] == "0"
    bob_second = limits.check(engine, bob_rules, NOW).refusal
    assert bob_second is not None and bob_second.rule_target == lr.provider_target(provider_id)
    assert "the organisation's limit on OpenAI" in bob_second.message
    # Next minute: the default's 2 is Bob's tightest.
    later = NOW + timedelta(minutes=1)
    assert [limits.check(engine, bob_rules, later).refusal is None for _ in range(3)] == [True, True, False]
    assert limits.check(engine, bob_rules, later).refusal.rule_target == lr.DEFAULT_TARGET  # type: ignore[union-attr]


def test_smallest_rpm_is_named_when_several_refuse(engine: Engine) -> None:
    wide = make_rule(rpm=2, label="the limit on Ann")
    narrow = make_rule("key:44444444-4444-4444-4444-444444444444", rpm=1, label="the limit on API key 'ci'")
    assert limits.check(engine, (wide, narrow), NOW).refusal is None
    assert limits.check(engine, (wide,), NOW).refusal is None  # the user's counter is at 2 now
    refusal = limits.check(engine, (wide, narrow), NOW).refusal
    assert refusal is not None and refusal.rule_target == narrow.target


def test_a_refusal_whose_counts_moved_names_the_nearest_limit() -> None:
    user = make_rule(rpm=10, label="the limit on Ann")
    key = make_rule("key:77777777-7777-7777-7777-777777777777", rpm=5, tpm=1000, label="the key")
    limits_ = limits._counter_limits((user, key))
    counts = {user.counter_key: (7, 0), key.counter_key: (4, 990)}  # read after an undo: under every limit
    refusal = limits._rate_refusal((user, key), limits_, counts, 23.0)
    assert (refusal.type, refusal.rule_target) == ("tokens", key.target)
    assert refusal.message == "Rate limit reached: 1,000 tokens per minute (the key); try again in 23 s"


# --- budgets -------------------------------------------------------------------------------------------


def _spent(engine: Engine, target: str, period_key: str, usd: float = 0.0, tokens: int = 0) -> None:
    with transaction(engine) as session:
        session.add(BudgetSpend(target=target, period_key=period_key, spent_usd=usd, tokens=tokens))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_spent_usd_budget_refuses_and_uses_no_request(engine: Engine, mode: str) -> None:
    rule = make_rule(rpm=10, budget_usd=5.0, period="month", timezone="Asia/Seoul", label="the limit on Ann")

    def call() -> limits.LimitCheck:
        return limits.check(engine, (rule,), NOW) if mode == "sync" else run(limits.acheck(engine, (rule,), NOW))

    period = rule.window(NOW)
    admitted = call()
    assert admitted.refusal is None and admitted.charges is not None
    assert [(c.rule, c.period_key) for c in admitted.charges.budgets] == [(rule, "month:Asia/Seoul:2026-12-01")]
    _spent(engine, rule.counter_key, period.key, usd=4.99)
    assert call().refusal is None
    with transaction(engine) as session:
        session.get(BudgetSpend, (rule.counter_key, period.key)).spent_usd = 5.0
    refused = call()
    assert refused.refusal == limits.LimitRefusal(
        429,
        "insufficient_quota",
        "insufficient_quota",
        "Budget spent: $5.00 of $5.00 this month (Asia/Seoul) (the limit on Ann); "
        "it resets on 2027-01-01 00:00 Asia/Seoul",
        math.ceil((period.end - NOW).total_seconds()),  # type: ignore[operator]
        rule.target,
    )
    assert refused.headers == {"retry-after": str(refused.refusal.retry_after_s)}
    assert requests_counted(engine, rule.counter_key) == 2  # the refusal used no request


def test_token_and_total_budgets_and_which_is_named(engine: Engine) -> None:
    daily = make_rule(budget_tokens=1000, period="day", label="the limit on Ann")
    total = make_rule("key:55555555-5555-5555-5555-555555555555", budget_usd=20, period="total", label="the key")
    _spent(engine, daily.counter_key, daily.window(NOW).key, tokens=1000)
    refusal = limits.check(engine, (daily,), NOW).refusal
    assert refusal is not None and refusal.type == "insufficient_quota"
    assert refusal.message == (
        "Budget spent: 1,000 of 1,000 tokens today (UTC) (the limit on Ann); it resets on 2026-12-04 00:00 UTC"
    )
    assert refusal.retry_after_s == int((datetime(2026, 12, 4) - NOW).total_seconds())
    assert limits.check(engine, (total,), NOW).refusal is None
    _spent(engine, total.counter_key, "total", usd=25.5)
    both = limits.check(engine, (daily, total), NOW)
    assert both.refusal is not None and both.refusal.rule_target == total.target  # never resets: named
    assert both.refusal.retry_after_s is None and both.headers == {}
    assert both.refusal.message == "Budget spent: $25.50 of $20.00 in total (the key); a total budget does not reset"


def test_half_hour_zone_day_boundary(engine: Engine) -> None:
    rule = make_rule(budget_usd=1.0, period="day", timezone="Asia/Kolkata")
    before = datetime(2026, 12, 3, 18, 29, 59)  # 23:59:59 in Kolkata
    after = datetime(2026, 12, 3, 18, 30, 0)  # 00:00:00 on the 4th
    first = limits.check(engine, (rule,), before)
    second = limits.check(engine, (rule,), after)
    assert first.charges is not None and second.charges is not None
    assert first.charges.budgets[0].period_key == "day:Asia/Kolkata:2026-12-03"
    assert second.charges.budgets[0].period_key == "day:Asia/Kolkata:2026-12-04"
    _spent(engine, rule.counter_key, "day:Asia/Kolkata:2026-12-03", usd=1.0)
    refused = limits.check(engine, (rule,), before).refusal
    assert refused is not None and refused.retry_after_s == 1
    assert "it resets on 2026-12-04 00:00 Asia/Kolkata" in refused.message
    assert limits.check(engine, (rule,), after).refusal is None


# --- concurrency in one process --------------------------------------------------------------------


def test_100_concurrent_checks_admit_exactly_rpm(engine: Engine) -> None:
    rule = make_rule(rpm=10)
    other = make_rule("provider:66666666-6666-6666-6666-666666666666", rpm=1000)

    async def many() -> list[limits.LimitCheck]:
        now = datetime(2026, 12, 3, 10, 0, 1)
        return await asyncio.gather(*(limits.acheck(engine, (rule, other), now) for _ in range(100)))

    results = run(many())
    assert sum(r.refusal is None for r in results) == 10  # the bound: 0 over
    assert requests_counted(engine, rule.counter_key) == 10
    assert requests_counted(engine, other.counter_key) == 10  # refused calls were undone
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in results if r.refusal is None) == list(
        range(10)
    )


def test_counter_rows_are_one_per_key(engine: Engine) -> None:
    rule = make_rule(rpm=5)
    for _ in range(3):
        limits.check(engine, (rule, rule), NOW)
    with transaction(engine) as session:
        rows = list(session.scalars(select(LimitCounter)))
    assert [(r.counter_key, r.window_start, r.requests) for r in rows] == [(rule.counter_key, lr.minute_window(NOW), 3)]


def test_unknown_user_ids_are_fine(engine: Engine) -> None:
    rule = make_rule(f"user:{uuid.uuid4()}", rpm=1)
    assert limits.check(engine, (rule,), NOW).refusal is None


def test_budgets_and_rates_together_admit_exactly_rpm_and_count_nothing_once_spent(engine: Engine) -> None:
    """On PostgreSQL the spend and the counters go in one statement (limit_counters.aspend_and_take): the same
    verdicts as two, under concurrency too."""
    rule = make_rule(rpm=10, budget_usd=5.0, budget_tokens=10_000)
    key = make_rule("key:77777777-7777-7777-7777-777777777777", rpm=1000, budget_tokens=50_000, period="day")
    now = datetime(2026, 12, 3, 10, 0, 1)
    _spent(engine, rule.counter_key, rule.window(now).key, usd=4.0)

    async def many() -> list[limits.LimitCheck]:
        return await asyncio.gather(*(limits.acheck(engine, (rule, key), now) for _ in range(100)))

    results = run(many())
    assert sum(r.refusal is None for r in results) == 10
    assert {r.refusal.code for r in results if r.refusal is not None} == {"rate_limit_exceeded"}
    assert requests_counted(engine, rule.counter_key) == requests_counted(engine, key.counter_key) == 10
    admitted = next(r for r in results if r.refusal is None)
    assert admitted.charges is not None and len(admitted.charges.budgets) == 2
    _spent(engine, key.counter_key, key.window(now).key, tokens=50_000)  # the key's daily tokens are spent
    later = now + timedelta(minutes=1)  # a new minute: the RPM has room again
    refused = run(limits.acheck(engine, (rule, key), later))
    assert refused.refusal is not None and refused.refusal.code == "insufficient_quota"
    assert refused.refusal.rule_target == key.target
    with transaction(engine) as session:  # the spent budget counted no request in the new minute
        assert {row.window_start for row in session.scalars(select(LimitCounter))} == {lr.minute_window(now)}
