"""Budgets and rate limits: the rules (the `limits` table), their budget periods, and which rules a call meets.

A rule may set requests per minute (RPM), tokens per minute (TPM) and a budget per period (day, week or
month in a stated time zone, or a total) in USD and/or tokens, with a warning threshold in percent. Its
target is one of (see mindroute.models.Limit):

- "default": every user who has no rule of their own;
- "user:<id>": that user (instead of the default);
- "key:<id>": one API key, set by an administrator;
- "key:<id>:owner": the same key, set by its owner (only ever tighter in effect, since the tightest wins);
- "provider:<id>": the organisation's use of one provider, by everyone.

A call meets its user's rule (or the default), its key's two rules and its provider's rule; every one
must allow it, so the tightest wins. Counting is per counted target ("user:<id>", "key:<id>",
"provider:<id>"): the default counts each user apart, and a key's two rules share the key's counts.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mindroute.i18n import Message, _l
from mindroute.models import LIMIT_PERIODS, ApiKey, Limit, Provider, User, utcnow
from mindroute.validation import ValidationError, validate_optional_positive_int

DEFAULT_TARGET = "default"
PERIOD_LABELS = {"day": "day", "week": "week", "month": "month", "total": "in total"}
WEEK_STARTS = 0  # Monday, as ISO 8601
MAX_BUDGET_USD = 1_000_000_000.0
MAX_TOKENS = 10**15


# --- targets ------------------------------------------------------------------------------------------


def user_target(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


def key_target(key_id: uuid.UUID, *, owner: bool = False) -> str:
    return f"key:{key_id}:owner" if owner else f"key:{key_id}"


def provider_target(provider_id: uuid.UUID) -> str:
    return f"provider:{provider_id}"


@dataclass(frozen=True)
class Target:
    """A rule's target parsed: its scope, who set it, the row it names, and the counted target it counts on."""

    target: str
    scope: str  # default, user, key, provider
    set_by: str  # admin, owner
    id: uuid.UUID | None

    @property
    def counter_key(self) -> str | None:
        """Where this rule's calls are counted; None for the default (each user counts on their own)."""
        if self.id is None:
            return None
        return f"{self.scope}:{self.id}"


def parse_target(target: str) -> Target:
    """The Target for a target string; ValidationError("target") when it is not one."""
    if target == DEFAULT_TARGET:
        return Target(target, "default", "admin", None)
    parts = target.split(":")
    try:
        if len(parts) == 2 and parts[0] in ("user", "key", "provider"):
            return Target(target, parts[0], "admin", uuid.UUID(parts[1]))
        if len(parts) == 3 and parts[0] == "key" and parts[2] == "owner":
            return Target(target, "key", "owner", uuid.UUID(parts[1]))
    except ValueError:
        pass
    raise ValidationError("target", _l("{target} is not a limit target", target=repr(target)))


# --- periods -----------------------------------------------------------------------------------------


def _unknown_zone(name: str) -> Message:
    return _l("{zone} is not a known time zone (e.g. Asia/Seoul, UTC)", zone=repr(name))


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValidationError("timezone") for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("timezone", _unknown_zone(name)) from None


@dataclass(frozen=True)
class PeriodWindow:
    """One budget period: its key in budgetspend, and its start and end as naive UTC (None for "total")."""

    key: str
    start: datetime | None
    end: datetime | None

    def elapsed_fraction(self, now: datetime) -> float | None:
        """How much of the period has gone by at `now` (naive UTC), 0..1; None for "total"."""
        if self.start is None or self.end is None:
            return None
        whole = (self.end - self.start).total_seconds()
        return min(1.0, max(0.0, (now - self.start).total_seconds() / whole)) if whole > 0 else 1.0


def _local_midnight(day: datetime, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def period_window(period: str, timezone: str, now: datetime | None = None) -> PeriodWindow:
    """The period holding `now` (naive UTC; default now): days, weeks (from Monday) and months start at
    local midnight in `timezone`, which may be a half-hour or DST zone; "total" never ends."""
    if period == "total":
        return PeriodWindow("total", None, None)
    if period not in LIMIT_PERIODS:
        raise ValidationError(
            "period",
            _l("{period} is not a budget period ({choices})", period=repr(period), choices=", ".join(LIMIT_PERIODS)),
        )
    tz = zone(timezone)
    local = (now or utcnow()).replace(tzinfo=UTC).astimezone(tz)
    if period == "day":
        first = local.date()
        following = first + timedelta(days=1)
    elif period == "week":
        first = local.date() - timedelta(days=(local.weekday() - WEEK_STARTS) % 7)
        following = first + timedelta(days=7)
    else:
        first = local.date().replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
    start = _local_midnight(datetime(first.year, first.month, first.day), tz)
    end = _local_midnight(datetime(following.year, following.month, following.day), tz)
    return PeriodWindow(f"{period}:{timezone}:{first.isoformat()}", start, end)


def minute_window(now: datetime | None = None) -> int:
    """The rate-limit window holding `now` (naive UTC): whole minutes since the epoch."""
    moment = (now or utcnow()).replace(tzinfo=UTC)
    return math.floor(moment.timestamp() / 60)


# --- rules ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LimitSettings:
    """What a rule sets; None leaves that limit off."""

    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    budget_tokens: int | None = None
    period: str = "month"
    timezone: str = "UTC"
    warn_percent: int = 80

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.rpm, self.tpm, self.budget_usd, self.budget_tokens))


@dataclass(frozen=True)
class LimitRule:
    """One rule as a call meets it: what it limits, on which counted target, and how to name it to a user."""

    target: str  # the rule's own target (its row in `limits`)
    scope: str
    set_by: str
    counter_key: str  # where the call is counted: "user:<id>", "key:<id>", "provider:<id>"
    label: str  # e.g. "your API key 'ci' (set by you)", shown in refusals
    rpm: int | None
    tpm: int | None
    budget_usd: float | None
    budget_tokens: int | None
    period: str
    timezone: str
    warn_percent: int
    updated_at: datetime | None = None

    @property
    def has_rate(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    @property
    def has_budget(self) -> bool:
        return self.budget_usd is not None or self.budget_tokens is not None

    def window(self, now: datetime | None = None) -> PeriodWindow:
        return period_window(self.period, self.timezone, now)


def validate_budget_usd(value: object, field: str = "budget_usd") -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValidationError(field, _l("The budget must be an amount in USD"))
    try:
        amount = float(str(value).strip().lstrip("$").replace(",", "")) if not isinstance(value, float) else value
    except ValueError:
        raise ValidationError(field, _l("The budget must be an amount in USD, e.g. 25 or 12.50")) from None
    if not math.isfinite(amount) or amount <= 0:
        raise ValidationError(field, _l("The budget must be more than $0"))
    if amount > MAX_BUDGET_USD:
        raise ValidationError(field, _l("The budget is too large"))
    return round(amount, 6)


def _validate_tokens(value: object, field: str, label: Message) -> int | None:
    """A positive whole number of tokens, up to MAX_TOKENS (over the 32-bit range other counts stop at)."""
    if isinstance(value, str):
        value = value.strip().replace(",", "").replace("_", "")
    small = value if not isinstance(value, (int, str)) or isinstance(value, bool) else None
    if small is not None or value in (None, ""):
        return validate_optional_positive_int(value, field, label)
    try:
        number = int(value)
    except ValueError:
        raise ValidationError(field, _l("{label} must be a whole number", label=label)) from None
    if number <= 0:
        raise ValidationError(field, _l("{label} must be greater than 0", label=label))
    if number > MAX_TOKENS:
        raise ValidationError(field, _l("{label} is too large", label=label))
    return number


def validate_settings(
    rpm: object = None,
    tpm: object = None,
    budget_usd: object = None,
    budget_tokens: object = None,
    period: object = "month",
    timezone: object = "UTC",
    warn_percent: object = 80,
) -> LimitSettings:
    """Form values to LimitSettings; the first bad field raises ValidationError naming it."""
    period_text = str(period or "").strip()
    if period_text not in LIMIT_PERIODS:
        raise ValidationError("period", _l("The period must be one of: {choices}", choices=", ".join(LIMIT_PERIODS)))
    tz_text = str(timezone or "UTC").strip()
    if tz_text not in available_timezones() and tz_text != "UTC":
        raise ValidationError("timezone", _unknown_zone(tz_text))
    warn = validate_optional_positive_int(warn_percent, "warn_percent", _l("The warning threshold"))
    if warn is None or warn > 100:
        raise ValidationError("warn_percent", _l("The warning threshold must be a percentage from 1 to 100"))
    return LimitSettings(
        rpm=validate_optional_positive_int(rpm, "rpm", _l("Requests per minute")),
        tpm=_validate_tokens(tpm, "tpm", _l("Tokens per minute")),
        budget_usd=validate_budget_usd(budget_usd),
        budget_tokens=_validate_tokens(budget_tokens, "budget_tokens", _l("The token budget")),
        period=period_text,
        timezone=tz_text,
        warn_percent=warn,
    )


# --- the rules a call meets ---------------------------------------------------------------------------


def _label(row: Limit, names: dict[str, str]) -> Message:
    """The rule as refusals and the budget pages name it: a Message (English as a str)."""
    target = parse_target(row.target)
    if target.scope == "default":
        return _l("the default limit for every user")
    name = names.get(row.target.removesuffix(":owner"), "")
    if target.scope == "user":
        return _l("the limit on {name}", name=name) if name else _l("the limit on your account")
    if target.scope == "provider":
        return (
            _l("the organisation's limit on {name}", name=name)
            if name
            else _l("the organisation's limit on this provider")
        )
    if target.set_by == "owner":
        if name:
            return _l("the limit on API key {name} (set by its owner)", name=repr(name))
        return _l("the limit on this API key (set by its owner)")
    if name:
        return _l("the limit on API key {name} (set by an administrator)", name=repr(name))
    return _l("the limit on this API key (set by an administrator)")


def _rule(row: Limit, counter_key: str, names: dict[str, str]) -> LimitRule:
    return LimitRule(
        target=row.target,
        scope=row.scope,
        set_by=row.set_by,
        counter_key=counter_key,
        label=_label(row, names),
        rpm=row.rpm,
        tpm=row.tpm,
        budget_usd=row.budget_usd,
        budget_tokens=row.budget_tokens,
        period=row.period,
        timezone=row.timezone,
        warn_percent=row.warn_percent,
        updated_at=row.updated_at,
    )


def rules_for_call(
    session: Session, user_id: uuid.UUID, key_id: uuid.UUID | None, provider_id: uuid.UUID | None
) -> tuple[LimitRule, ...]:
    """The rules a call by `user_id` (through `key_id`, None in the playground) to `provider_id` meets:
    the user's rule or else the default, the key's admin and owner rules, the provider's rule."""
    wanted = [DEFAULT_TARGET, user_target(user_id)]
    if key_id is not None:
        wanted += [key_target(key_id), key_target(key_id, owner=True)]
    if provider_id is not None:
        wanted.append(provider_target(provider_id))
    rows = {row.target: row for row in session.scalars(select(Limit).where(Limit.target.in_(wanted)))}
    if not rows:
        return ()
    names = _names(session, user_id, key_id, provider_id)
    rules: list[LimitRule] = []
    own = rows.get(user_target(user_id)) or rows.get(DEFAULT_TARGET)
    if own is not None:
        rules.append(_rule(own, user_target(user_id), names))
    if key_id is not None:
        for target in (key_target(key_id), key_target(key_id, owner=True)):
            if target in rows:
                rules.append(_rule(rows[target], key_target(key_id), names))
    if provider_id is not None and provider_target(provider_id) in rows:
        rules.append(_rule(rows[provider_target(provider_id)], provider_target(provider_id), names))
    return tuple(rules)


def _names(
    session: Session, user_id: uuid.UUID, key_id: uuid.UUID | None, provider_id: uuid.UUID | None
) -> dict[str, str]:
    names: dict[str, str] = {}
    user = session.get(User, user_id)
    if user is not None:
        names[user_target(user_id)] = user.name
    if key_id is not None:
        key = session.get(ApiKey, key_id)
        if key is not None:
            names[key_target(key_id)] = key.name
    if provider_id is not None:
        provider = session.get(Provider, provider_id)
        if provider is not None:
            names[provider_target(provider_id)] = provider.name
    return names


def rules_of_user(session: Session, user_id: uuid.UUID) -> list[Limit]:
    """Every rule that names `user_id` or one of their keys, and the default (for the user's own pages)."""
    key_ids = list(session.scalars(select(ApiKey.id).where(ApiKey.user_id == user_id)))
    conditions: list[Any] = [Limit.target == DEFAULT_TARGET, Limit.user_id == user_id]
    if key_ids:
        conditions.append(Limit.api_key_id.in_(key_ids))
    return list(session.scalars(select(Limit).where(or_(*conditions)).order_by(Limit.target)))


def counted_targets(rules: Iterable[LimitRule]) -> tuple[str, ...]:
    """The counted targets `rules` count on, once each, in order."""
    return tuple(dict.fromkeys(rule.counter_key for rule in rules))
