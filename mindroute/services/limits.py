"""The limit check that runs before every upstream call: budgets, then requests and tokens per minute.

`acheck` (the API's event loop) and `check` (the playground) take the rules a call meets
(limit_rules.rules_for_call) and answer a LimitCheck: a refusal naming the rule and when it resets, or the
call's Charges (what the Logs writer adds its tokens and cost to), and OpenAI's x-ratelimit-* headers.
No rule: NO_LIMITS at once, with no I/O.

1. Budgets (rules with budget_usd / budget_tokens): the spend of each rule's counted target in the rule's
   current period (budgetspend, one query for all; no row is nothing spent). A budget whose USD or tokens
   reached the limit refuses (429 insufficient_quota) before anything is counted, so a spent budget uses no
   request.
2. Requests and tokens per minute: per counted target (several rules may share one, e.g. a key's admin and
   owner rules) the tightest RPM and TPM apply; the call is admitted only if every counter has requests < RPM
   and tokens < TPM in this minute (fixed one-minute windows, limit_rules.minute_window), and then counts one
   request on all of them, atomically across processes (limit_counters: the database, or Redis with
   MINDROUTE_REDIS_URL; a Redis that is down falls back to the database for that call and a warning is
   logged at most once a minute).

Bounds. RPM: exact, never more than RPM calls admitted per minute per counter (0 over), on one process or
many. TPM: a call's tokens are known only when it ends (record_tokens, just after its Logs row commits), so
the call after the minute's tokens reached TPM is refused, and the overshoot is at most the tokens of the
calls in flight (admitted, not yet logged) when the limit is reached. Budgets: the same, with spend. The
headers' reset is the end of the current minute.

Which rule is named when several refuse: a budget before a rate limit (budgets are checked first); among
budgets, the one that resets last (a total budget never resets, so it wins; then the period that ends
last; ties: the first rule in the call's order: user, key (admin, owner), provider); among rate limits
(which all reset at the minute's end), requests before tokens, and the smallest limit, then the first rule.
The headers come from the tightest counter: the one with the fewest requests (tokens) remaining.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import URL, Engine
from sqlalchemy.orm import Session

from mindroute import i18n
from mindroute.config import get_settings
from mindroute.i18n import Message, _l
from mindroute.models import utcnow
from mindroute.observability import metrics
from mindroute.services.limit_charges import BudgetCharge, Charges
from mindroute.services.limit_counters import (
    CounterLimit,
    CounterOutcome,
    CounterStore,
    DatabaseStore,
    Gate,
    GatedTake,
    RedisStore,
    Spend,
    aread_spend,
    aspend_and_take,
    aundo_counts,
    read_spend,
    refused_by,
)
from mindroute.services.limit_rules import LimitRule, PeriodWindow, minute_window

REDIS_URL_ENV = "MINDROUTE_REDIS_URL"


def _period_words(period: str, timezone: str) -> Message:
    """The period of a spent budget as its refusal names it ("this month (Asia/Seoul)")."""
    if period == "day":
        return _l("today ({zone})", zone=timezone)
    if period == "week":
        return _l("this week ({zone})", zone=timezone)
    if period == "month":
        return _l("this month ({zone})", zone=timezone)
    return _l("in total")


@dataclass(frozen=True)
class LimitRefusal:
    status: int  # 429
    code: str  # "rate_limit_exceeded" (RPM/TPM) or "insufficient_quota" (a spent budget)
    type: str  # OpenAI's error type: "requests", "tokens" or "insufficient_quota"
    message: str  # names the rule (LimitRule.label) and when it resets: a Message (English as a str)
    retry_after_s: int | None  # seconds to the reset (None for a "total" budget: it never resets)
    rule_target: str  # LimitRule.target of the rule that refused


@dataclass(frozen=True)
class LimitCheck:
    refusal: LimitRefusal | None
    headers: dict[str, str]  # OpenAI's x-ratelimit-* headers; {} when no RPM/TPM rule applies
    charges: Charges | None  # for an admitted call (None when no rule or refused)


NO_LIMITS = LimitCheck(None, {}, None)


# --- the store -----------------------------------------------------------------------------------------

_stores: dict[tuple[URL, str], CounterStore] = {}
_databases: dict[URL, DatabaseStore] = {}
_stores_lock = threading.Lock()


def _database_store(engine: Engine) -> DatabaseStore:
    url = engine.url  # immutable and hashable: equal URLs share a store
    store = _databases.get(url)
    if store is None:
        with _stores_lock:
            store = _databases.setdefault(url, DatabaseStore(engine))
    return store


def counter_store(engine: Engine) -> CounterStore:
    """Redis when MINDROUTE_REDIS_URL is set, else the database; one per database (and Redis) per process."""
    redis_url = get_settings().redis_url or ""
    url = engine.url
    store = _stores.get((url, redis_url))
    if store is None:
        database = _database_store(engine)
        with _stores_lock:
            store = _stores.get((url, redis_url))
            if store is None:
                store = _stores[(url, redis_url)] = RedisStore(redis_url, database) if redis_url else database
    return store


def close_stores() -> None:
    """Close every store's connections in this process (tests; shutdown)."""
    with _stores_lock:
        for store in _stores.values():
            if isinstance(store, RedisStore):
                store.close()
        for database in _databases.values():
            database.close()
        _stores.clear()
        _databases.clear()


# --- formats ------------------------------------------------------------------------------------------


def reset_text(seconds: float) -> str:
    """A duration as OpenAI writes its reset headers (Go's style): "120ms", "1s", "59.5s", "6m0s"."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    rest_text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    if minutes >= 60:
        hours, minutes = divmod(int(minutes), 60)
        return f"{hours}h{minutes}m{rest_text}"
    return f"{int(minutes)}m{rest_text}" if minutes else rest_text


def _seconds_left(window: int, now: datetime) -> float:
    return (window + 1) * 60 - now.replace(tzinfo=UTC).timestamp()


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds - 1e-9))


def _usd(amount: float) -> str:
    return f"${amount:,.2f}"


class _LocalMoment(Message):
    """A moment in a rule's zone inside a refusal: "2027-01-01 00:00 UTC" as a str (the API's words), and as the
    reader's language writes it where shown ("2027. 1. 1. 오전 12:00 (UTC)")."""

    local: datetime
    zone: str

    def translated(self, language: str | None = None) -> str:
        lang = language or i18n.current()
        if lang == i18n.DEFAULT_LANGUAGE or not hasattr(self, "local"):
            return str(self)
        with i18n.using(lang):
            return f"{i18n.moment(self.local)} ({self.zone})"


def _reset_moment(window: PeriodWindow, timezone: str) -> Message:
    assert window.end is not None
    local = window.end.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone))
    moment = _LocalMoment(f"{local:%Y-%m-%d %H:%M} {timezone}")
    moment.local, moment.zone = local, timezone
    return moment


# --- budgets -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Budget:
    rule: LimitRule
    window: PeriodWindow

    @property
    def pair(self) -> tuple[str, str]:
        return (self.rule.counter_key, self.window.key)


def _budgets(rules: Sequence[LimitRule], now: datetime) -> list[_Budget]:
    return [_Budget(rule, rule.window(now)) for rule in rules if rule.has_budget]


def _budget_refusal(budgets: Sequence[_Budget], spend: Spend, now: datetime) -> LimitRefusal | None:
    spent: list[tuple[_Budget, Message]] = []
    for budget in budgets:
        usd, tokens = spend.get(budget.pair, (0.0, 0))
        rule = budget.rule
        if rule.budget_usd is not None and usd >= rule.budget_usd:
            spent.append((budget, _l("{spent} of {budget}", spent=_usd(usd), budget=_usd(rule.budget_usd))))
        elif rule.budget_tokens is not None and tokens >= rule.budget_tokens:
            spent.append((budget, _l("{spent} of {budget} tokens", spent=tokens, budget=rule.budget_tokens)))
    if not spent:
        return None
    # The one that resets last: a total (no end) first, then the latest end; the first rule on a tie.
    budget, amounts = min(
        spent, key=lambda item: (item[0].window.end is not None, -(item[0].window.end or now).timestamp())
    )
    rule, window = budget.rule, budget.window
    period = _period_words(rule.period, rule.timezone)
    if window.end is None:
        when, retry = _l("a total budget does not reset"), None
    else:
        when = _l("it resets on {moment}", moment=_reset_moment(window, rule.timezone))
        retry = _whole_seconds((window.end - now).total_seconds())
    message = _l(
        "Budget spent: {amounts} {period} ({rule}); {when}", amounts=amounts, period=period, rule=rule.label, when=when
    )
    metrics.count_limit_refusal("budget")
    return LimitRefusal(429, "insufficient_quota", "insufficient_quota", message, retry, rule.target)


def _budget_charges(budgets: Sequence[_Budget]) -> tuple[BudgetCharge, ...]:
    return tuple(BudgetCharge(budget.rule, budget.window.key) for budget in budgets)


# --- rates ---------------------------------------------------------------------------------------------


def _counter_limits(rules: Sequence[LimitRule]) -> list[CounterLimit]:
    """One CounterLimit per counted target with an RPM or TPM rule: the tightest of its rules."""
    tightest: dict[str, tuple[int | None, int | None]] = {}
    for rule in rules:
        if not rule.has_rate:
            continue
        rpm, tpm = tightest.get(rule.counter_key, (None, None))
        if rule.rpm is not None:
            rpm = rule.rpm if rpm is None else min(rpm, rule.rpm)
        if rule.tpm is not None:
            tpm = rule.tpm if tpm is None else min(tpm, rule.tpm)
        tightest[rule.counter_key] = (rpm, tpm)
    return [CounterLimit(key, rpm, tpm) for key, (rpm, tpm) in tightest.items()]


def _headers(limits: Sequence[CounterLimit], counts: dict[str, tuple[int, int]], seconds: float) -> dict[str, str]:
    headers: dict[str, str] = {}
    reset = reset_text(seconds)
    with_rpm = [(limit.rpm - counts.get(limit.key, (0, 0))[0], limit.rpm) for limit in limits if limit.rpm]
    if with_rpm:
        remaining, limit = min(with_rpm)
        headers["x-ratelimit-limit-requests"] = str(limit)
        headers["x-ratelimit-remaining-requests"] = str(max(0, remaining))
        headers["x-ratelimit-reset-requests"] = reset
    with_tpm = [(limit.tpm - counts.get(limit.key, (0, 0))[1], limit.tpm) for limit in limits if limit.tpm]
    if with_tpm:
        remaining, limit = min(with_tpm)
        headers["x-ratelimit-limit-tokens"] = str(limit)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, remaining))
        headers["x-ratelimit-reset-tokens"] = reset
    return headers


def _rate_refusal(
    rules: Sequence[LimitRule], limits: Sequence[CounterLimit], counts: dict[str, tuple[int, int]], seconds: float
) -> LimitRefusal:
    refusing = {limit.key for limit in limits if refused_by(limit, counts.get(limit.key, (0, 0)))}
    candidates: list[tuple[float, int, int, str, LimitRule]] = []
    for order, rule in enumerate(rules):
        if rule.counter_key not in refusing:
            continue
        requests, tokens = counts.get(rule.counter_key, (0, 0))
        if rule.rpm is not None and requests >= rule.rpm:
            candidates.append((0, rule.rpm, order, "requests", rule))
        elif rule.tpm is not None and tokens >= rule.tpm:
            candidates.append((1, rule.tpm, order, "tokens", rule))
    if not candidates:
        # The counts moved between the refusal and their read (another call's undo on PostgreSQL, a new
        # minute): name the limit with the least room left, as a share of the limit.
        for order, rule in enumerate(rules):
            requests, tokens = counts.get(rule.counter_key, (0, 0))
            for rank, kind, limit, used in ((0, "requests", rule.rpm, requests), (1, "tokens", rule.tpm, tokens)):
                if limit is not None:
                    candidates.append(((limit - used) / limit, limit, order * 2 + rank, kind, rule))
    _, limit, _, kind, rule = min(candidates, key=lambda item: item[:3])
    retry = _whole_seconds(seconds)
    what = (
        _l("{limit} requests per minute", limit=limit)
        if kind == "requests"
        else _l("{limit} tokens per minute", limit=limit)
    )
    message = _l("Rate limit reached: {what} ({rule}); try again in {retry} s", what=what, rule=rule.label, retry=retry)
    metrics.count_limit_refusal(kind)
    return LimitRefusal(429, "rate_limit_exceeded", kind, message, retry, rule.target)


# --- the check -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    now: datetime
    budgets: list[_Budget]
    limits: list[CounterLimit]
    window: int


def _plan(rules: Sequence[LimitRule], now: datetime | None) -> _Plan:
    moment = now or utcnow()
    return _Plan(moment, _budgets(rules, moment), _counter_limits(rules), minute_window(moment))


def _refused_by_budget(plan: _Plan, spend: Spend) -> LimitCheck | None:
    refusal = _budget_refusal(plan.budgets, spend, plan.now)
    if refusal is None:
        return None
    headers = {"retry-after": str(refusal.retry_after_s)} if refusal.retry_after_s is not None else {}
    return LimitCheck(refusal, headers, None)


def _verdict(rules: Sequence[LimitRule], plan: _Plan, outcome: CounterOutcome | None) -> LimitCheck:
    charges = Charges(
        rate_keys=tuple(limit.key for limit in plan.limits if limit.tpm is not None),
        window=plan.window,
        budgets=_budget_charges(plan.budgets),
    )
    if outcome is None:
        return LimitCheck(None, {}, charges)
    seconds = _seconds_left(plan.window, plan.now)
    headers = _headers(plan.limits, outcome.counts, seconds)
    if outcome.admitted:
        return LimitCheck(None, headers, charges)
    refusal = _rate_refusal(rules, plan.limits, outcome.counts, seconds)
    headers["retry-after"] = str(refusal.retry_after_s)
    return LimitCheck(refusal, headers, None)


async def acheck(engine: Engine, rules: tuple[LimitRule, ...], now: datetime | None = None) -> LimitCheck:
    """The check from the event loop (the API). `now` is naive UTC (tests); default now."""
    if not rules:
        return NO_LIMITS
    plan = _plan(rules, now)
    store = counter_store(engine)
    if _in_one_statement(plan, store):
        assert isinstance(store, DatabaseStore)
        return await _acheck_in_one_statement(rules, plan, store)
    if plan.budgets:
        refused = _refused_by_budget(plan, await aread_spend(_database_store(engine), [b.pair for b in plan.budgets]))
        if refused is not None:
            return refused
    outcome = await store.atake(plan.limits, plan.window) if plan.limits else None
    return _verdict(rules, plan, outcome)


def _in_one_statement(plan: _Plan, store: CounterStore) -> bool:
    return bool(plan.budgets and plan.limits) and isinstance(store, DatabaseStore) and store.dialect == "postgresql"


def checks_in_one_statement(engine: Engine, rules: tuple[LimitRule, ...]) -> bool:
    """Whether `rules` are checked in one PostgreSQL statement (budgets and rates, counters in the database),
    so that acheck_gated can read a gate row in it too."""
    # As _in_one_statement on the plan, without working out the periods' windows a second time per call.
    if not (any(rule.has_budget for rule in rules) and any(rule.has_rate for rule in rules)):
        return False
    store = counter_store(engine)
    return isinstance(store, DatabaseStore) and store.dialect == "postgresql"


def _gated_verdict(rules: Sequence[LimitRule], plan: _Plan, took: GatedTake) -> LimitCheck:
    refused = _refused_by_budget(plan, took.spend)
    if refused is not None:
        return refused
    return _verdict(rules, plan, took.outcome)


async def _acheck_in_one_statement(rules: Sequence[LimitRule], plan: _Plan, store: DatabaseStore) -> LimitCheck:
    """Budgets and rates on PostgreSQL's counters in one round trip (limit_counters.aspend_and_take): the
    same verdicts, in the same order, as reading the spend and then taking the counters."""
    budgets = [(*b.pair, b.rule.budget_usd, b.rule.budget_tokens) for b in plan.budgets]
    return _gated_verdict(rules, plan, await aspend_and_take(store, budgets, plan.limits, plan.window))


@dataclass(frozen=True)
class GatedCheck:
    """acheck_gated's answer: the check (None when the gate refused and nothing was counted), the gate's row
    as JSON (None: no row), and what was counted, for `aundo` if the caller refuses the call after all."""

    check: LimitCheck | None
    gate_row: str | None
    counted: tuple[tuple[str, int], ...]


async def acheck_gated(engine: Engine, rules: tuple[LimitRule, ...], gate: Gate, now: datetime) -> GatedCheck:
    """acheck in the same one statement as reading `gate`'s row (only when checks_in_one_statement): the
    call is counted only if that row meets the gate's condition."""
    plan = _plan(rules, now)
    store = counter_store(engine)
    assert isinstance(store, DatabaseStore) and _in_one_statement(plan, store)
    budgets = [(*b.pair, b.rule.budget_usd, b.rule.budget_tokens) for b in plan.budgets]
    took = await aspend_and_take(store, budgets, plan.limits, plan.window, gate)
    if not took.passed:
        return GatedCheck(None, took.gate_row, ())
    return GatedCheck(_gated_verdict(rules, plan, took), took.gate_row, took.counted)


async def aundo(engine: Engine, counted: Sequence[tuple[str, int]]) -> None:
    """Take back what acheck_gated counted, for a call refused after all."""
    store = counter_store(engine)
    assert isinstance(store, DatabaseStore)
    await aundo_counts(store, counted)


def check(engine: Engine, rules: tuple[LimitRule, ...], now: datetime | None = None) -> LimitCheck:
    """The check, blocking (the playground)."""
    if not rules:
        return NO_LIMITS
    plan = _plan(rules, now)
    if plan.budgets:
        refused = _refused_by_budget(plan, read_spend(_database_store(engine), [b.pair for b in plan.budgets]))
        if refused is not None:
            return refused
    outcome = counter_store(engine).take(plan.limits, plan.window) if plan.limits else None
    return _verdict(rules, plan, outcome)


def record_tokens(session: Session, charges: Charges, tokens: int, now: datetime | None = None) -> None:
    """Add a finished call's tokens to its minute counters: in the caller's transaction (`session`, the Logs
    writer's) for the database store, in Redis with Redis. No-op without a TPM counter, without tokens, or
    once the call's minute has passed (the counters have moved on)."""
    if not charges.rate_keys or tokens <= 0 or minute_window(now) != charges.window:
        return
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    counter_store(engine).add_tokens(session, charges.rate_keys, charges.window, tokens)
