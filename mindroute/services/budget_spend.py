"""Budget spend: what each counted target has spent in each budget period, kept with the Logs rows.

Every Logs row of a call admitted under budgets (CallRecord.charges) adds its tokens and cost to the
`budgetspend` row of each (counted target, period) it was charged to, in the Logs row's transaction
(apply_charges, called by call_log.write_call_logs). A call whose model has no price adds its tokens
and one to `unpricedcalls`, never $0. A budget set mid-period starts from what the period's Logs rows
already spent (backfill, from limit_admin.set_limit when a budget starts counting in a period). When
a rule's spend reaches its warning threshold or its budget, one `budgetalerts` row is inserted per
(rule, period, level, metric): the unique key makes that once across every process, and the webhook
(budget_alerts.deliver_pending) goes once per row.

Statuses (budget_statuses, key_statuses, provider_statuses) read the current period of each budget
rule with its spend, percent used, level and a forecast to the period's end at the rate so far.

Bounds. A call is charged to the budgets it met when it was admitted (its Charges), in the period it was
admitted in; its spend lands when its Logs row commits, so the calls under way when a budget is spent
still finish and count (the check refuses the next). A budget set while calls are under way misses those
that were admitted before it and end after the backfill read the Logs rows. Backfill recomputes the row
from Logs; when another rule already counts on the same (target, period), an increment committed while
the backfill runs may be overwritten by it (set_limit backfills only when a budget starts counting in a
period, which makes that rare).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, and_, case, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mindroute.db import transaction
from mindroute.errors import NotFound, PermissionDenied
from mindroute.i18n import _l
from mindroute.models import ApiKey, BudgetAlert, BudgetSpend, Limit, Log, Provider, User, utcnow
from mindroute.provider_settings import price_for, read_settings
from mindroute.services import budget_alerts, limit_rules, limits
from mindroute.services.limit_charges import Charged, Charges
from mindroute.services.limit_counters import lock_counters
from mindroute.services.limit_rules import LimitRule, PeriodWindow
from mindroute.services.roles import require_active, require_admin

log = logging.getLogger("mindroute.budget_spend")

LEVEL_OK = "ok"
LEVEL_WARNING = "warning"
LEVEL_SPENT = "spent"
METRIC_USD = "usd"
METRIC_TOKENS = "tokens"
_NOBODY = uuid.UUID(int=0)  # rules_for_call wants a user; provider rules do not count on one


# --- statuses -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetStatus:
    """One budget rule in its current period: spend, share of the budget used, level and forecast."""

    rule: LimitRule
    window: PeriodWindow
    spent_usd: float
    spent_tokens: int
    unpriced_calls: int  # calls in the period whose model has no price (their cost is not in spent_usd)
    forecast_usd: float | None  # at the period's rate so far, what it will have spent at its end (None: total)
    forecast_tokens: int | None
    percent: float | None  # of the budget used, the larger of USD % and tokens %
    level: str  # "ok", "warning" (>= warn_percent) or "spent" (>= 100 %)
    resets_at: datetime | None  # naive UTC; None for total


def _percent(spent: float, budget: float | int | None) -> float | None:
    return None if budget is None or budget <= 0 else 100.0 * spent / budget


def level_of(percent: float | None, warn_percent: int) -> str:
    if percent is None:
        return LEVEL_OK
    if percent >= 100.0:
        return LEVEL_SPENT
    return LEVEL_WARNING if percent >= warn_percent else LEVEL_OK


def _forecast(spent: float, window: PeriodWindow, now: datetime) -> float | None:
    """Spend at the period's end at the rate so far: spent / the share of the period gone by."""
    fraction = window.elapsed_fraction(now)
    if fraction is None:
        return None
    return spent / fraction if fraction > 0 else spent


def status_of(rule: LimitRule, window: PeriodWindow, row: BudgetSpend | None, now: datetime) -> BudgetStatus:
    """The BudgetStatus of `rule` in `window` from its budgetspend row (None: nothing spent yet)."""
    spent_usd = float(row.spent_usd) if row is not None else 0.0
    spent_tokens = int(row.tokens) if row is not None else 0
    percents = [
        p for p in (_percent(spent_usd, rule.budget_usd), _percent(spent_tokens, rule.budget_tokens)) if p is not None
    ]
    percent = max(percents) if percents else None
    forecast_usd = _forecast(spent_usd, window, now)
    forecast_tokens = _forecast(spent_tokens, window, now)
    return BudgetStatus(
        rule=rule,
        window=window,
        spent_usd=spent_usd,
        spent_tokens=spent_tokens,
        unpriced_calls=int(row.unpriced_calls) if row is not None else 0,
        forecast_usd=forecast_usd,
        forecast_tokens=round(forecast_tokens) if forecast_tokens is not None else None,
        percent=percent,
        level=level_of(percent, rule.warn_percent),
        resets_at=window.end,
    )


def statuses_of(session: Session, rules: Iterable[LimitRule], now: datetime | None = None) -> list[BudgetStatus]:
    """The statuses of the budget rules among `rules`, in order, read in one query."""
    moment = now or utcnow()
    budgets = [(rule, rule.window(moment)) for rule in rules if rule.has_budget]
    if not budgets:
        return []
    wanted = {(rule.counter_key, window.key) for rule, window in budgets}
    rows = session.scalars(
        select(BudgetSpend).where(
            or_(*(and_(BudgetSpend.target == t, BudgetSpend.period_key == p) for t, p in sorted(wanted)))
        )
    )
    found = {(row.target, row.period_key): row for row in rows}
    return [status_of(rule, window, found.get((rule.counter_key, window.key)), moment) for rule, window in budgets]


def _key_rules(session: Session, user_id: uuid.UUID, key_id: uuid.UUID) -> list[LimitRule]:
    return [rule for rule in limit_rules.rules_for_call(session, user_id, key_id, None) if rule.scope == "key"]


def _live_key(key: ApiKey, now: datetime) -> bool:
    return key.revoked_at is None or key.revoked_at > now


def budget_statuses(
    session: Session, viewer: User, user_id: uuid.UUID, now: datetime | None = None
) -> list[BudgetStatus]:
    """The budgets that apply to `user_id`: their own rule (or the default, counted on them), then each of
    their live keys' rules (the administrator's and the owner's). `viewer` is that user or an active admin."""
    active = require_active(viewer, _l("Sign in to see budgets"))
    if active.id != user_id and active.role != "admin":
        raise PermissionDenied(_l("You can see only your own budgets"))
    moment = now or utcnow()
    rules = [rule for rule in limit_rules.rules_for_call(session, user_id, None, None) if rule.scope != "key"]
    key_ids = {row.api_key_id for row in limit_rules.rules_of_user(session, user_id) if row.api_key_id is not None}
    if key_ids:
        keys = session.scalars(select(ApiKey).where(ApiKey.id.in_(key_ids)).order_by(ApiKey.created_at, ApiKey.id))
        for key in keys:
            if key.user_id == user_id and _live_key(key, moment):
                rules += _key_rules(session, user_id, key.id)
    return statuses_of(session, rules, moment)


def key_statuses(session: Session, viewer: User, key_id: uuid.UUID, now: datetime | None = None) -> list[BudgetStatus]:
    """The budgets set on one API key (the administrator's and the owner's); its owner or an active admin."""
    active = require_active(viewer, _l("Sign in to see budgets"))
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(_l("No such API key"))
    if key.user_id != active.id and active.role != "admin":
        raise PermissionDenied(_l("You can see only your own API keys' budgets"))
    return statuses_of(session, _key_rules(session, key.user_id, key_id), now)


def provider_statuses(session: Session, actor: User | None, now: datetime | None = None) -> list[BudgetStatus]:
    """Every provider's budget (the organisation's spend on it), by provider name (admins; the CLI)."""
    require_admin(actor)
    ids = session.scalars(
        select(Limit.provider_id)
        .join(Provider, Provider.id == Limit.provider_id)
        .where(Limit.scope == "provider", or_(Limit.budget_usd.is_not(None), Limit.budget_tokens.is_not(None)))
        .order_by(Provider.name, Provider.id)
    )
    rules: list[LimitRule] = []
    for provider_id in ids:
        rules += [r for r in limit_rules.rules_for_call(session, _NOBODY, None, provider_id) if r.scope == "provider"]
    return statuses_of(session, rules, now)


# --- the Logs rows a target's period holds (backfill) ------------------------------------------------


@dataclass
class _Sums:
    spent_usd: float = 0.0
    tokens: int = 0
    unpriced_calls: int = 0


def _target_condition(counter_key: str) -> Any:
    scope, _, raw = counter_key.partition(":")
    ident = uuid.UUID(raw)
    if scope == "user":
        return Log.user_id == ident
    if scope == "provider":
        return Log.provider_id == ident
    if scope == "key":
        return Log.request_body["api_key_id"].as_string() == str(ident)
    raise ValueError(f"{counter_key!r} is not a counted target")


def _logs_query(window: PeriodWindow, condition: Any, by_user: bool) -> Select[Any]:
    """Logs rows of the window with tokens, summed per (user,) provider, model and whether the prompt and
    completion counts are known (a row with only a total cannot be priced)."""
    prompt = func.coalesce(Log.prompt_tokens, 0)
    completion = func.coalesce(Log.completion_tokens, 0)
    split = case((or_(Log.prompt_tokens.is_not(None), Log.completion_tokens.is_not(None)), 1), else_=0)
    tokens = func.coalesce(Log.tokens_used, Log.prompt_tokens + Log.completion_tokens, 0)
    keys = [Log.user_id] if by_user else []
    query = select(
        *keys,
        Log.provider_id,
        Log.model_id,
        split.label("split"),
        func.sum(prompt),
        func.sum(completion),
        func.sum(tokens),
        func.count(),
    ).where(or_(tokens > 0, prompt > 0, completion > 0))
    if condition is not None:
        query = query.where(condition)
    if window.start is not None and window.end is not None:
        query = query.where(Log.created_at >= window.start, Log.created_at < window.end)
    return query.group_by(*keys, Log.provider_id, Log.model_id, split)


class _Prices:
    """price_for per (provider, model), each provider's settings read once."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._providers: dict[uuid.UUID, tuple[dict[str, dict[str, float]], str, str] | None] = {}

    def rates(self, provider_id: uuid.UUID | None, model: str | None) -> tuple[float, float] | None:
        """USD per token in and out, or None when unpriced."""
        if provider_id is None or not model:
            return None
        if provider_id not in self._providers:
            provider = self._session.get(Provider, provider_id)
            self._providers[provider_id] = (
                (read_settings(provider.settings)["prices"], provider.protocol, provider.endpoint_url or "")
                if provider is not None
                else None
            )
        pricing = self._providers[provider_id]
        if pricing is None:
            return None
        price = price_for(pricing[0], model, pricing[1], pricing[2])
        if not price.priced:
            return None
        return (price.input or 0.0) / 1_000_000, (price.output or 0.0) / 1_000_000


def _add_group(sums: _Sums, prices: _Prices, provider_id: Any, model: Any, split: Any, values: Sequence[Any]) -> None:
    prompt, completion, tokens, calls = (int(v or 0) for v in values)
    sums.tokens += tokens
    rates = prices.rates(provider_id, model) if split else None
    if rates is None:
        sums.unpriced_calls += calls
    else:
        sums.spent_usd += prompt * rates[0] + completion * rates[1]


def _set_spend(session: Session, target: str, period_key: str, sums: _Sums) -> None:
    """Write the budgetspend row as `sums` (insert or replace)."""
    values = {
        "target": target,
        "periodkey": period_key,
        "spentusd": sums.spent_usd,
        "tokens": sums.tokens,
        "unpricedcalls": sums.unpriced_calls,
        "updatedat": utcnow(),
    }
    statement = _insert(session, BudgetSpend).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=["target", "periodkey"],
        set_={name: statement.excluded[name] for name in ("spentusd", "tokens", "unpricedcalls", "updatedat")},
    )
    session.execute(statement)


def backfill(session: Session, rule: LimitRule, now: datetime | None = None) -> None:
    """Fill budgetspend for the rule's current period from the Logs rows already in it, so that a budget set
    mid-period starts from what was spent, not 0. Idempotent: the row is recomputed."""
    window = rule.window(now)
    sums = _Sums()
    prices = _Prices(session)
    for provider_id, model, split, *values in session.execute(
        _logs_query(window, _target_condition(rule.counter_key), by_user=False)
    ):
        _add_group(sums, prices, provider_id, model, split, values)
    _set_spend(session, rule.counter_key, window.key, sums)


def backfill_limit(session: Session, row: Limit, now: datetime | None = None) -> None:
    """backfill for a rule as stored (set_limit's): the default rule counts on each user apart, so every user
    with Logs rows in the period gets their row recomputed."""
    if row.budget_usd is None and row.budget_tokens is None:
        return
    window = limit_rules.period_window(row.period, row.timezone, now)
    parsed = limit_rules.parse_target(row.target)
    if parsed.counter_key is not None:
        condition = _target_condition(parsed.counter_key)
        per_user: dict[str, _Sums] = {parsed.counter_key: _Sums()}
        by_user = False
    else:
        condition, per_user, by_user = Log.user_id.is_not(None), {}, True
    prices = _Prices(session)
    for found in session.execute(_logs_query(window, condition, by_user=by_user)):
        if by_user:
            user_id, provider_id, model, split, *values = found
            target = limit_rules.user_target(user_id)
        else:
            provider_id, model, split, *values = found
            target = parsed.counter_key or ""
        _add_group(per_user.setdefault(target, _Sums()), prices, provider_id, model, split, values)
    for target in sorted(per_user):
        _set_spend(session, target, window.key, per_user[target])


# --- a batch of calls charged (apply_charges) --------------------------------------------------------


def _insert(session: Session, model: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model)


def tokens_of(record: Charged) -> int:
    """The tokens a call is charged: its total, else prompt + completion."""
    if record.total_tokens is not None:
        return max(0, record.total_tokens)
    return max(0, (record.prompt_tokens or 0) + (record.completion_tokens or 0))


@dataclass(frozen=True)
class _Crossing:
    target: str
    period_key: str
    level: str
    metric: str
    budget: float
    spent: float


# Alerts this process saw already stored (a conflict on insert): not tried again. Bounded; cleared when full.
_KNOWN_ALERTS: set[tuple[str, str, str, str]] = set()
_KNOWN_ALERTS_MAX = 10_000


def _crossings(rule: LimitRule, period_key: str, spent_usd: float, tokens: int) -> list[_Crossing]:
    """The thresholds of `rule` its spend has reached: the warning one and the budget itself, per metric."""
    found: list[_Crossing] = []
    target = budget_alerts.alert_target(rule)
    for metric, budget, spent in (
        (METRIC_USD, rule.budget_usd, spent_usd),
        (METRIC_TOKENS, rule.budget_tokens, float(tokens)),
    ):
        if budget is None or budget <= 0:
            continue
        if spent >= budget:
            found.append(_Crossing(target, period_key, LEVEL_SPENT, metric, float(budget), spent))
        if rule.warn_percent < 100 and spent >= budget * rule.warn_percent / 100:
            found.append(_Crossing(target, period_key, LEVEL_WARNING, metric, float(budget), spent))
    return found


def _insert_alert(session: Session, crossing: _Crossing, webhook_status: str | None) -> uuid.UUID | None:
    key = (crossing.target, crossing.period_key, crossing.level, crossing.metric)
    if key in _KNOWN_ALERTS:
        return None
    statement = (
        _insert(session, BudgetAlert)
        .values(
            id=uuid.uuid4(),
            limittarget=crossing.target,
            periodkey=crossing.period_key,
            level=crossing.level,
            metric=crossing.metric,
            budget=crossing.budget,
            spent=crossing.spent,
            createdat=utcnow(),
            webhookstatus=webhook_status,
        )
        .on_conflict_do_nothing(index_elements=["limittarget", "periodkey", "level", "metric"])
        .returning(BudgetAlert.id)
    )
    inserted = session.execute(statement).scalar()
    if inserted is None:  # stored already, and committed (a conflict waits for the other writer's end)
        if len(_KNOWN_ALERTS) >= _KNOWN_ALERTS_MAX:
            _KNOWN_ALERTS.clear()
        _KNOWN_ALERTS.add(key)
    return inserted


def apply_charges(session: Session, records: Sequence[Charged]) -> list[uuid.UUID]:
    """Count a batch of calls against their budgets, in the caller's (the Logs rows') transaction: each
    record's tokens and cost go to budgetspend once per (counted target, period) it is charged to, even when
    two of its rules share one; a cost of None with tokens counts as an unpriced call (its tokens go to the
    minute counters after the commit: count_minute_tokens). An alert row is inserted for each rule whose
    spend reached its warning threshold or budget (once per rule, period, level and metric). Returns the
    inserted alerts' ids."""
    deltas: dict[tuple[str, str], _Sums] = {}
    rules: dict[tuple[str, str], dict[str, LimitRule]] = {}
    for record in records:
        charges = record.charges
        if charges is None or charges.empty:
            continue
        tokens = tokens_of(record)
        cost = record.cost_usd
        if not tokens and not cost:
            continue
        for key in dict.fromkeys((charge.rule.counter_key, charge.period_key) for charge in charges.budgets):
            sums = deltas.setdefault(key, _Sums())
            sums.tokens += tokens
            if cost is None:
                sums.unpriced_calls += 1
            else:
                sums.spent_usd += cost
        for charge in charges.budgets:
            rules.setdefault((charge.rule.counter_key, charge.period_key), {})[charge.rule.target] = charge.rule
    if not deltas:
        return []
    webhook_status = budget_alerts.initial_webhook_status()
    alert_ids: list[uuid.UUID] = []
    now = utcnow()
    for target, period_key in sorted(deltas):  # one order in every writer: no deadlock between them
        sums = deltas[(target, period_key)]
        statement = _insert(session, BudgetSpend).values(
            target=target,
            periodkey=period_key,
            spentusd=sums.spent_usd,
            tokens=sums.tokens,
            unpricedcalls=sums.unpriced_calls,
            updatedat=now,
        )
        table = BudgetSpend.__table__.c
        statement = statement.on_conflict_do_update(
            index_elements=["target", "periodkey"],
            set_={
                "spentusd": table.spentusd + statement.excluded.spentusd,
                "tokens": table.tokens + statement.excluded.tokens,
                "unpricedcalls": table.unpricedcalls + statement.excluded.unpricedcalls,
                "updatedat": statement.excluded.updatedat,
            },
        ).returning(table.spentusd, table.tokens)
        spent_usd, spent_tokens = session.execute(statement).one()
        for rule in rules[(target, period_key)].values():
            for crossing in _crossings(rule, period_key, float(spent_usd), int(spent_tokens)):
                inserted = _insert_alert(session, crossing, webhook_status)
                if inserted is not None:
                    alert_ids.append(inserted)
    return alert_ids


def count_minute_tokens(engine: Engine, records: Sequence[Charged]) -> None:
    """Add a committed batch's tokens to its calls' minute counters (limits.record_tokens), summed per set of
    counters, in a short transaction of its own: inside the batch's transaction the counters' rows would stay
    locked until it commits, and every admission's counter upsert on them would wait that long. Never raises
    (a failure is a warning: the Logs rows are written already)."""
    sums: dict[tuple[tuple[str, ...], int], int] = {}
    for record in records:
        charges = record.charges
        tokens = tokens_of(record)
        if charges is not None and charges.rate_keys and tokens:
            key = (tuple(sorted(charges.rate_keys)), charges.window)
            sums[key] = sums.get(key, 0) + tokens
    if not sums:
        return
    try:
        with transaction(engine) as session:
            # Every row this transaction updates, locked up front in the order the admissions' upserts lock them.
            lock_counters(session, [key for keys, _ in sums for key in keys])
            for (keys, window), tokens in sorted(sums.items()):
                limits.record_tokens(session, Charges(keys, window, ()), tokens)
    except Exception as error:  # noqa: BLE001 - the rows are in; only this minute's token counts are short
        log.warning("could not add %d calls' tokens to the minute counters (%s)", len(records), type(error).__name__)
