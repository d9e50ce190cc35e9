"""Saving budgets and rate limits: who may set which rule, the audit row, the version check, and the spend a
budget set mid-period starts from (the rules themselves, their periods and which a call meets:
services/limit_rules.py)."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from mindroute.errors import ConflictError, NotFound, PermissionDenied
from mindroute.i18n import _l
from mindroute.models import ApiKey, Limit, Provider, User, utcnow
from mindroute.services import audit, budget_spend
from mindroute.services.limit_rules import LimitSettings, Target, parse_target
from mindroute.services.roles import require_active, require_admin
from mindroute.services.users import for_update, next_updated_at, same_instant


def _settings_of(row: Limit | None) -> dict[str, Any]:
    if row is None:
        return {}
    return {f.name: getattr(row, f.name) for f in fields(LimitSettings)}


def get_limit(session: Session, target: str) -> Limit | None:
    return session.scalars(select(Limit).where(Limit.target == target)).first()


def settings_for(session: Session, target: str) -> LimitSettings | None:
    """The rule set on `target`, as LimitSettings (None: no rule)."""
    row = get_limit(session, target)
    return LimitSettings(**_settings_of(row)) if row is not None else None


_NO_SUCH = {"user": _l("No such user"), "key": _l("No such key"), "provider": _l("No such provider")}


def _authorise(session: Session, actor: User | None, parsed: Target) -> None:
    """Admins (and the CLI) set every rule; a key's owner sets only their own key's owner rule."""
    if parsed.set_by == "owner":
        user = require_active(actor, _l("Sign in to set limits on your API key"))
        key = session.get(ApiKey, parsed.id)
        if key is None:
            raise NotFound(_l("No such API key"))
        if key.user_id != user.id and user.role != "admin":
            raise PermissionDenied(_l("You can set limits only on your own API keys"))
        return
    require_admin(actor)
    model = {"user": User, "key": ApiKey, "provider": Provider}.get(parsed.scope)
    if model is not None and session.get(model, parsed.id) is None:
        raise NotFound(_NO_SUCH.get(parsed.scope) or _l("No such limit target"))


ANY_VERSION = "any"
CHANGED_ELSEWHERE = _l("These limits were changed by someone else since you opened them.")


def set_limit(
    session: Session,
    actor: User | None,
    target: str,
    settings: LimitSettings,
    expected_updated_at: datetime | Literal["any"] | None = ANY_VERSION,
) -> Limit | None:
    """Create, change or (all limits empty) remove the rule on `target`, with its audit row, in the caller's
    transaction. Returns the rule, or None when it was removed. With `expected_updated_at` (the rule's
    updatedAt the form was filled from; None: there was no rule) a rule changed since is not overwritten:
    ConflictError, checked under the row's lock."""
    parsed = parse_target(target)
    _authorise(session, actor, parsed)
    row = session.scalars(for_update(session, select(Limit).where(Limit.target == target))).first()
    if expected_updated_at != ANY_VERSION:
        now_version = row.updated_at if row is not None else None
        if (now_version is None) != (expected_updated_at is None) or (
            now_version is not None
            and isinstance(expected_updated_at, datetime)
            and not same_instant(now_version, expected_updated_at)
        ):
            raise ConflictError(CHANGED_ELSEWHERE)
    before = _settings_of(row)
    if settings.empty:
        if row is not None:
            session.delete(row)
            audit.record(session, "limit.clear", "limit", target, audit.diff(before, {}), actor=actor)
        return None
    if row is None:
        row = Limit(id=uuid.uuid4(), target=target, scope=parsed.scope, set_by=parsed.set_by)
        row.user_id = parsed.id if parsed.scope == "user" else None
        row.api_key_id = parsed.id if parsed.scope == "key" else None
        row.provider_id = parsed.id if parsed.scope == "provider" else None
        if parsed.scope == "key" and parsed.set_by == "owner":
            key = session.get(ApiKey, parsed.id)
            row.user_id = key.user_id if key is not None else None
        session.add(row)
    for name, value in _settings_of_obj(settings).items():
        setattr(row, name, value)
    row.updated_at = next_updated_at(row.updated_at) if row.updated_at is not None else utcnow()
    changes = audit.diff(before, _settings_of_obj(settings))
    audit.record(session, "limit.set", "limit", target, changes, actor=actor)
    if _starts_a_budget(before, settings):  # a budget set mid-period starts from what its Logs rows spent
        budget_spend.backfill_limit(session, row)
    return row


def _starts_a_budget(before: dict[str, Any], settings: LimitSettings) -> bool:
    """Whether the change starts counting a budget in a period not counted for this rule before: a budget
    newly set, or its period or time zone changed (a new amount alone keeps the running count)."""
    if settings.budget_usd is None and settings.budget_tokens is None:
        return False
    if before.get("budget_usd") is None and before.get("budget_tokens") is None:
        return True
    return (before.get("period"), before.get("timezone")) != (settings.period, settings.timezone)


def _settings_of_obj(settings: LimitSettings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(LimitSettings)}


def list_limits(session: Session, actor: User | None) -> list[Limit]:
    """Every rule (admins; the CLI)."""
    require_admin(actor)
    return list(session.scalars(select(Limit).order_by(Limit.scope, Limit.target)))
