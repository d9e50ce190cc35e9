"""Budget spend on both databases: spend per period with the Logs rows, two rules on one key counted once,
periods in half-hour zones, backfill from Logs rows (provider, built-in and no price), statuses and who may
read them."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from mindroute import security
from mindroute.db import transaction
from mindroute.errors import NotFound, PermissionDenied
from mindroute.models import BudgetSpend, LimitCounter, Log, Provider, User, utcnow
from mindroute.provider_settings import price_for
from mindroute.services import api_keys, budget_spend, limit_admin, limits
from mindroute.services import limit_rules as lr
from mindroute.services.call_log import CallRecord, write_call_log, write_call_logs
from mindroute.services.limit_charges import BudgetCharge, Charges

PASSWORD_HASH = security.hash_password("correct horse battery")
PRICES = {"house-model": {"input": 1000.0, "output": 2000.0}}  # USD per million tokens: $0.001 / $0.002 a token


def _user(session: Session, email: str, role: str = "user") -> User:
    user = User(email=email, name=email.split("@")[0], role=role, is_active=True, password=PASSWORD_HASH)
    session.add(user)
    session.flush()
    return user


def make_world(engine: Engine) -> dict[str, uuid.UUID]:
    """An admin, Ann (with API key 'ci') and Bob, and a provider with a price for house-model."""
    with transaction(engine) as session:
        admin = _user(session, "admin@example.com", "admin")
        ann = _user(session, "ann@example.com")
        bob = _user(session, "bob@example.com")
        provider = Provider(
            name="OpenAI",
            protocol="openai",
            settings={"models": ["house-model"], "default_model": None, "prices": PRICES},
        )
        session.add(provider)
        session.flush()
        key = api_keys.create_key(session, ann, ann.id, "ci", None).key
        return {"admin": admin.id, "ann": ann.id, "bob": bob.id, "provider": provider.id, "key": key.id}


@pytest.fixture
def world(engine: Engine) -> dict[str, uuid.UUID]:
    return make_world(engine)


def _get(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    assert user is not None
    return user


def set_budget(engine: Engine, target: str, **settings: object) -> None:
    with transaction(engine) as session:
        limit_admin.set_limit(session, None, target, lr.validate_settings(**settings))


def a_call(
    engine: Engine,
    world: dict[str, uuid.UUID],
    when: datetime,
    *,
    tokens: tuple[int, int] = (100, 50),
    cost: float | None = 0.2,
    key: bool = False,
    user: str = "ann",
) -> CallRecord:
    """A finished call as the check and the call tracker leave it: charged to the budgets it met at `when`."""
    key_id = world["key"] if key else None
    with transaction(engine) as session:
        rules = lr.rules_for_call(session, world[user], key_id, world["provider"])
    budgets = tuple(BudgetCharge(rule, rule.window(when).key) for rule in rules if rule.has_budget)
    return CallRecord(
        user_id=world[user],
        provider_id=world["provider"],
        model="house-model",
        request=None,
        status_code=200,
        duration_ms=10,
        source="api" if key else "playground",
        api_key_id=key_id,
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        total_tokens=sum(tokens),
        usage_reported=True,
        ended_at=when,
        charges=Charges(rate_keys=(), window=lr.minute_window(when), budgets=budgets),
        cost_usd=cost,
    )


def spend_rows(engine: Engine) -> dict[tuple[str, str], tuple[float, int, int]]:
    with transaction(engine) as session:
        return {
            (row.target, row.period_key): (round(row.spent_usd, 6), row.tokens, row.unpriced_calls)
            for row in session.scalars(select(BudgetSpend))
        }


def test_spend_adds_up_per_period_in_the_logs_transaction(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=10, period="day")
    today, yesterday = datetime(2026, 12, 3, 9), datetime(2026, 12, 2, 23, 59)
    ids = write_call_logs(engine, [a_call(engine, world, today), a_call(engine, world, today, cost=0.5)])
    write_call_log(engine, a_call(engine, world, yesterday, tokens=(7, 3), cost=0.01))
    assert None not in ids
    user = lr.user_target(world["ann"])
    # set_budget seeds the current period's row from the Logs (empty): only on another day than these two.
    current = (user, lr.period_window("day", "UTC").key)
    rows = {pair: spent for pair, spent in spend_rows(engine).items() if pair != current or spent != (0.0, 0, 0)}
    assert rows == {
        (user, "day:UTC:2026-12-03"): (0.7, 300, 0),
        (user, "day:UTC:2026-12-02"): (0.01, 10, 0),
    }
    # A batch that fails writes neither its Logs rows nor its spend (one transaction).
    bad = a_call(engine, world, today)
    bad.user_id = uuid.uuid4()  # no such user: the Logs row's foreign key refuses it
    assert write_call_log(engine, bad) is None
    assert spend_rows(engine)[(user, "day:UTC:2026-12-03")] == (0.7, 300, 0)


def test_unpriced_calls_are_counted_never_zero_dollars(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=10, budget_tokens=1000, period="total")
    when = datetime(2026, 12, 3, 9)
    write_call_logs(engine, [a_call(engine, world, when, cost=None), a_call(engine, world, when, cost=0.25)])
    # A call with no tokens and no cost (an upstream error) adds nothing.
    write_call_log(engine, a_call(engine, world, when, tokens=(0, 0), cost=None))
    assert spend_rows(engine) == {(lr.user_target(world["ann"]), "total"): (0.25, 300, 1)}
    with transaction(engine) as session:
        [status] = budget_spend.budget_statuses(session, _get(session, world["ann"]), world["ann"], when)
    assert (status.spent_usd, status.spent_tokens, status.unpriced_calls) == (0.25, 300, 1)
    assert status.forecast_usd is None and status.resets_at is None  # a total never resets
    assert status.percent == pytest.approx(30.0)  # tokens (30 %) over USD (2.5 %)


def test_two_rules_on_one_key_count_once(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    key = world["key"]
    set_budget(engine, lr.key_target(key), budget_usd=5, period="month")
    with transaction(engine) as session:
        owner = _get(session, world["ann"])
        limit_admin.set_limit(
            session, owner, lr.key_target(key, owner=True), lr.validate_settings(budget_usd=1, period="month")
        )
    set_budget(engine, lr.DEFAULT_TARGET, budget_tokens=10_000, period="month")
    when = datetime(2026, 12, 3, 9)
    write_call_log(engine, a_call(engine, world, when, key=True, cost=0.3))
    assert spend_rows(engine) == {
        (lr.key_target(key), "month:UTC:2026-12-01"): (0.3, 150, 0),
        (lr.user_target(world["ann"]), "month:UTC:2026-12-01"): (0.3, 150, 0),  # the default, counted on Ann
    }
    with transaction(engine) as session:
        statuses = budget_spend.key_statuses(session, _get(session, world["ann"]), key, when)
    assert [(s.rule.target, s.spent_usd) for s in statuses] == [
        (lr.key_target(key), 0.3),
        (lr.key_target(key, owner=True), 0.3),
    ]
    assert [round(s.percent or 0, 3) for s in statuses] == [6.0, 30.0]


@pytest.mark.parametrize(
    ("zone", "last_minute", "first_minute", "before", "after"),
    [
        # India is UTC+05:30 all year: its midnight is 18:30 UTC the day before.
        ("Asia/Kolkata", datetime(2026, 12, 3, 18, 29), datetime(2026, 12, 3, 18, 31), "2026-12-03", "2026-12-04"),
        # Adelaide is UTC+10:30 in December (daylight time): its midnight is 13:30 UTC the day before.
        (
            "Australia/Adelaide",
            datetime(2026, 12, 3, 13, 29),
            datetime(2026, 12, 3, 13, 31),
            "2026-12-03",
            "2026-12-04",
        ),
    ],
)
def test_a_period_boundary_in_a_half_hour_zone(
    engine: Engine,
    world: dict[str, uuid.UUID],
    zone: str,
    last_minute: datetime,
    first_minute: datetime,
    before: str,
    after: str,
) -> None:
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=10, period="day", timezone=zone)
    write_call_logs(engine, [a_call(engine, world, last_minute, cost=1.0), a_call(engine, world, first_minute)])
    user = lr.user_target(world["ann"])
    # Setting the budget backfills the period current in the zone now: an empty row unless it is one of these.
    spent = {period: values for period, values in spend_rows(engine).items() if values != (0.0, 0, 0)}
    assert spent == {
        (user, f"day:{zone}:{before}"): (1.0, 150, 0),
        (user, f"day:{zone}:{after}"): (0.2, 150, 0),
    }
    with transaction(engine) as session:
        [status] = budget_spend.budget_statuses(session, _get(session, world["ann"]), world["ann"], first_minute)
    assert status.window.key == f"day:{zone}:{after}" and status.spent_usd == pytest.approx(0.2)
    assert status.resets_at == first_minute.replace(minute=30) + timedelta(days=1)


def _log(session: Session, world: dict[str, uuid.UUID], when: datetime, model: str, **fields: object) -> None:
    values: dict[str, object] = {
        "user_id": world["ann"],
        "provider_id": world["provider"],
        "model_id": model,
        "request_type": "chat",
        "request_body": {"source": "api", "api_key_id": str(world["key"])},
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "tokens_used": 1500,
        "status_code": 200,
        "duration": 5,
        "created_at": when,
    }
    values.update(fields)
    session.add(Log(**values))


def _earlier(period: str, zone: str = "UTC") -> datetime:
    """A few minutes ago, but inside the current period."""
    start = lr.period_window(period, zone).start
    assert start is not None
    return max(start, utcnow().replace(microsecond=0) - timedelta(minutes=5))


def test_a_budget_set_mid_period_starts_from_the_logs_rows(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    earlier = _earlier("month")
    with transaction(engine) as session:
        _log(session, world, earlier, "house-model")  # the provider's price: 1000*0.001 + 500*0.002 = $2
        _log(session, world, earlier, "gpt-4o-mini")  # the built-in table's price for OpenAI
        _log(session, world, earlier, "my-local-model")  # no price anywhere: unpriced, not $0
        _log(session, world, earlier, "house-model", prompt_tokens=None, completion_tokens=None)  # total only
        _log(session, world, earlier, "house-model", tokens_used=None, prompt_tokens=None, completion_tokens=None)
        _log(session, world, earlier - timedelta(days=40), "house-model")  # an earlier month
        _log(session, world, earlier, "house-model", user_id=world["bob"], request_body={"source": "playground"})
    mini = price_for({}, "gpt-4o-mini", "openai")
    assert mini.priced
    mini_cost = (1000 * (mini.input or 0) + 500 * (mini.output or 0)) / 1_000_000
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=100, period="month")
    set_budget(engine, lr.key_target(world["key"]), budget_tokens=10**6, period="total")
    set_budget(engine, lr.provider_target(world["provider"]), budget_usd=100, period="total")
    rows = spend_rows(engine)
    month = lr.period_window("month", "UTC").key
    assert rows[(lr.user_target(world["ann"]), month)] == (round(2 + mini_cost, 6), 6000, 2)
    assert rows[(lr.key_target(world["key"]), "total")] == (round(4 + mini_cost, 6), 7500, 2)
    assert rows[(lr.provider_target(world["provider"]), "total")] == (round(6 + mini_cost, 6), 9000, 2)
    # Idempotent: setting it again recomputes, it does not add.
    with transaction(engine) as session:
        [rule] = [r for r in lr.rules_for_call(session, world["ann"], None, None)]
        budget_spend.backfill(session, rule)
        budget_spend.backfill(session, rule)
    assert spend_rows(engine)[(lr.user_target(world["ann"]), month)] == (round(2 + mini_cost, 6), 6000, 2)


def test_the_default_budget_is_backfilled_for_each_user(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    earlier = _earlier("week", "Asia/Kolkata")
    with transaction(engine) as session:
        _log(session, world, earlier, "house-model")
        _log(session, world, earlier, "house-model", user_id=world["bob"], prompt_tokens=10, completion_tokens=0)
    set_budget(engine, lr.DEFAULT_TARGET, budget_usd=50, period="week", timezone="Asia/Kolkata")
    week = lr.period_window("week", "Asia/Kolkata").key
    assert spend_rows(engine) == {
        (lr.user_target(world["ann"]), week): (2.0, 1500, 0),
        (lr.user_target(world["bob"]), week): (0.01, 1500, 0),
    }


def test_status_percent_level_forecast_and_reset(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=4, period="day", warn_percent=50)
    write_call_log(engine, a_call(engine, world, datetime(2026, 12, 3, 1), cost=2.0))
    noon = datetime(2026, 12, 3, 12)
    with transaction(engine) as session:
        ann = _get(session, world["ann"])
        [status] = budget_spend.budget_statuses(session, ann, world["ann"], noon)
    assert status.spent_usd == 2.0 and status.percent == pytest.approx(50.0)
    assert status.forecast_usd == pytest.approx(4.0)  # half the day gone, $2 spent
    assert status.forecast_tokens == 300
    assert status.level == "warning"
    assert status.resets_at == datetime(2026, 12, 4)
    write_call_log(engine, a_call(engine, world, datetime(2026, 12, 3, 2), cost=2.5))
    with transaction(engine) as session:
        [status] = budget_spend.budget_statuses(session, _get(session, world["ann"]), world["ann"], noon)
    assert status.level == "spent" and status.percent == pytest.approx(112.5)
    # The next period starts from nothing.
    with transaction(engine) as session:
        [status] = budget_spend.budget_statuses(
            session, _get(session, world["ann"]), world["ann"], datetime(2026, 12, 4, 0, 1)
        )
    assert (status.spent_usd, status.level, status.percent) == (0.0, "ok", 0.0)


def test_statuses_list_the_users_and_their_keys_budgets(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    set_budget(engine, lr.DEFAULT_TARGET, budget_usd=20, period="month")
    set_budget(engine, lr.key_target(world["key"]), budget_tokens=5000, period="week")
    set_budget(engine, lr.key_target(world["key"]), rpm=5)  # replaced by a rate-only rule: not a budget
    set_budget(engine, lr.provider_target(world["provider"]), budget_usd=500, period="month")
    with transaction(engine) as session:
        ann = _get(session, world["ann"])
        owner_rule = lr.validate_settings(budget_usd=2, period="day")
        limit_admin.set_limit(session, ann, lr.key_target(world["key"], owner=True), owner_rule)
    with transaction(engine) as session:
        ann = _get(session, world["ann"])
        statuses = budget_spend.budget_statuses(session, ann, world["ann"])
        assert [s.rule.target for s in statuses] == [lr.DEFAULT_TARGET, lr.key_target(world["key"], owner=True)]
        assert statuses[0].rule.counter_key == lr.user_target(world["ann"])
        admin = _get(session, world["admin"])
        assert len(budget_spend.budget_statuses(session, admin, world["ann"])) == 2
        assert [s.rule.scope for s in budget_spend.provider_statuses(session, admin)] == ["provider"]
        assert [s.rule.scope for s in budget_spend.provider_statuses(session, None)] == ["provider"]  # the CLI
        bob = _get(session, world["bob"])
        assert [s.rule.target for s in budget_spend.budget_statuses(session, bob, world["bob"])] == ["default"]


def test_who_may_read_which_status(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=20)
    with Session(engine) as session:  # never committed: the deactivations below are only for the checks
        bob = _get(session, world["bob"])
        with pytest.raises(PermissionDenied):
            budget_spend.budget_statuses(session, bob, world["ann"])
        with pytest.raises(PermissionDenied):
            budget_spend.key_statuses(session, bob, world["key"])
        with pytest.raises(PermissionDenied):
            budget_spend.provider_statuses(session, bob)
        with pytest.raises(NotFound):
            budget_spend.key_statuses(session, bob, uuid.uuid4())
        ann = _get(session, world["ann"])
        ann.is_active = False
        with pytest.raises(PermissionDenied):
            budget_spend.budget_statuses(session, ann, world["ann"])
        admin = _get(session, world["admin"])
        admin.is_active = False
        with pytest.raises(PermissionDenied):
            budget_spend.budget_statuses(session, admin, world["ann"])


def test_the_checks_charges_reach_the_minute_counters_and_the_budget(
    engine: Engine, world: dict[str, uuid.UUID]
) -> None:
    set_budget(engine, lr.user_target(world["ann"]), tpm=10_000, budget_tokens=10**6, period="day")
    with transaction(engine) as session:
        rules = lr.rules_for_call(session, world["ann"], None, world["provider"])
    if utcnow().second >= 58:  # the tokens count in the call's own minute: keep check and write in one
        time.sleep(2.5)
    checked = limits.check(engine, rules)
    assert checked.refusal is None and checked.charges is not None
    record = a_call(engine, world, utcnow())
    record.charges = checked.charges
    write_call_log(engine, record)
    with transaction(engine) as session:
        counter = session.get(LimitCounter, lr.user_target(world["ann"]))
        assert counter is not None and counter.window_start == checked.charges.window
        assert (counter.requests, counter.tokens) == (1, 150)
        spend = session.get(BudgetSpend, (lr.user_target(world["ann"]), checked.charges.budgets[0].period_key))
        assert spend is not None and (spend.tokens, spend.spent_usd) == (150, pytest.approx(0.2))


def test_a_failure_to_charge_never_costs_the_logs_row(
    engine: Engine, world: dict[str, uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=10, period="day")

    def broken(session: Session, records: object) -> list[uuid.UUID]:
        raise RuntimeError("a bug in the accounting")

    monkeypatch.setattr(budget_spend, "apply_charges", broken)
    ids = write_call_logs(engine, [a_call(engine, world, utcnow()), a_call(engine, world, utcnow())])
    assert None not in ids and len(set(ids)) == 2
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Log)) == 2
    assert list(spend_rows(engine).values()) == [(0.0, 0, 0)]  # as the backfill left it: the calls uncounted
