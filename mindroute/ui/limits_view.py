"""The one editor for a budget and rate-limit rule, shared by every page that sets one, and the words a rule is
summed up in ("10 requests/min, $25.00 a month (Asia/Seoul), warn at 80 %")."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session
from streamlit.delta_generator import DeltaGenerator

from mindroute.errors import NotFound
from mindroute.models import Limit, User
from mindroute.services import admin_users, api_keys, budget_spend, limit_admin, limit_rules, providers
from mindroute.services.budget_spend import BudgetStatus
from mindroute.services.limit_rules import DEFAULT_TARGET, LimitSettings
from mindroute.services.unit_of_work import unit_of_work
from mindroute.ui import viewer
from mindroute.ui.budget_view import render_statuses
from mindroute.ui.format import timestamp, tokens
from mindroute.ui.render import Flash, form_errors
from mindroute.ui.runtime import engine
from mindroute.ui.users_view import load_form, reload_form

PERIODS = tuple(limit_rules.PERIOD_LABELS)
PERIOD_CHOICES = {"day": "Day", "week": "Week (from Monday)", "month": "Month", "total": "In total (never resets)"}
NO_LIMITS = "No limits"
CHANGED_ELSEWHERE = limit_admin.CHANGED_ELSEWHERE
SCOPE_LABELS = {"default": "Default", "user": "User", "key": "API key", "provider": "Provider"}

# One transaction per action: the rule services take a session, pages hold the engine.
save_limit = unit_of_work(limit_admin.set_limit)
_stored = unit_of_work(limit_admin.settings_for)
_stored_row = unit_of_work(limit_admin.get_limit)
user_budgets = unit_of_work(budget_spend.budget_statuses)
key_budgets = unit_of_work(budget_spend.key_statuses)
_provider_budgets = unit_of_work(budget_spend.provider_statuses)


def usd(amount: float) -> str:
    return f"${amount:,.2f}"


def summary(settings: LimitSettings | None) -> str:
    """A rule in words, e.g. "10 requests/min, $25.00 a month (Asia/Seoul), warn at 80 %"; "No limits" for none."""
    if settings is None or settings.empty:
        return NO_LIMITS
    parts = []
    if settings.rpm is not None:
        parts.append(f"{settings.rpm:,} requests/min")
    if settings.tpm is not None:
        parts.append(f"{tokens(settings.tpm)} tokens/min")
    budgets = []
    if settings.budget_usd is not None:
        budgets.append(usd(settings.budget_usd))
    if settings.budget_tokens is not None:
        budgets.append(f"{tokens(settings.budget_tokens)} tokens")
    if budgets:
        when = "in total" if settings.period == "total" else f"a {settings.period} ({settings.timezone})"
        parts.append(f"{' and '.join(budgets)} {when}")
        parts.append(f"warn at {settings.warn_percent} %")
    return ", ".join(parts)


def looser_than(mine: LimitSettings | None, theirs: LimitSettings | None) -> list[str]:
    """The limits of `mine` (an owner's rule) that are above `theirs` (the administrator's) and so change nothing:
    every rule must allow a call, so the tighter one applies. Budgets compare only over the same period."""
    if mine is None or theirs is None:
        return []
    checks = [("requests per minute", mine.rpm, theirs.rpm), ("tokens per minute", mine.tpm, theirs.tpm)]
    if mine.period == theirs.period and (mine.period == "total" or mine.timezone == theirs.timezone):
        checks += [
            ("budget in USD", mine.budget_usd, theirs.budget_usd),
            ("token budget", mine.budget_tokens, theirs.budget_tokens),
        ]
    return [name for name, own, admin in checks if own is not None and admin is not None and own > admin]


def stored_settings(target: str) -> LimitSettings | None:
    """The rule on `target` now (None: none)."""
    return _stored(engine(), target)


def _settings_of(row: Limit | None) -> LimitSettings | None:
    return None if row is None else LimitSettings(**{f.name: getattr(row, f.name) for f in fields(LimitSettings)})


def provider_budgets(actor: User, provider_id: uuid.UUID) -> list[BudgetStatus]:
    """The organisation's budget on one provider, in its current period (admins)."""
    target = limit_rules.provider_target(provider_id)
    return [status for status in _provider_budgets(engine(), actor) if status.rule.target == target]


def show_budgets(title: str, statuses: list[BudgetStatus], empty: str) -> None:
    """What has been used of each budget this period, with its forecast (budget_view), or `empty` (fixed text)."""
    st.subheader(title)
    if statuses:
        render_statuses(statuses)
    else:
        st.caption(empty)


def show_rule(label: str, settings: LimitSettings | None) -> None:
    """A rule read-only: its label and its summary, as plain text."""
    st.text(f"{label}: {summary(settings)}")


def _form_values(key: str, settings: LimitSettings) -> dict[str, object]:
    def text(value: object) -> str:
        return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    return {
        f"{key}_rpm": text(settings.rpm),
        f"{key}_tpm": text(settings.tpm),
        f"{key}_budget_usd": text(settings.budget_usd),
        f"{key}_budget_tokens": text(settings.budget_tokens),
        f"{key}_period": settings.period,
        f"{key}_timezone": settings.timezone,
        f"{key}_warn_percent": str(settings.warn_percent),
    }


def limit_editor(
    actor: User,
    target: str,
    *,
    key: str,
    title: str,
    help_text: str | None = None,
    related: Sequence[tuple[str, LimitSettings | None]] = (),
    ceiling: LimitSettings | None = None,
) -> None:
    """The form for the rule on `target`: its summary now, requests and tokens per minute, a budget in USD and/or
    tokens per period in a time zone, the warning threshold, Save and Remove limits. A bad field shows its message
    under that field and nothing is saved; a save is one transaction with its audit row (limit_admin.set_limit,
    which also checks that `actor` may set it). `key` keeps this editor's widgets apart from any other's.

    `related` rules are shown read-only beside it (label, settings); with a `ceiling` (the administrator's rule
    over an owner's), the limits set above it are named, since the tighter rule applies."""
    flash = Flash(f"{key}_flash")
    row = _stored_row(engine(), target)
    current = _settings_of(row)
    version = row.updated_at if row is not None else None
    form = f"{key}_form"
    with st.container(border=True):
        st.subheader(title)
        if help_text:
            st.caption(help_text)
        flash.show()
        st.text(f"Now: {summary(current)}")
        for label, settings in related:
            show_rule(label, settings)
        if above := looser_than(current, ceiling):
            st.info(f"Above the administrator's limit, so theirs applies: {', '.join(above)}.")
        # A new rule's period starts in the viewer's zone (their Account choice, else the browser's, else UTC).
        shown = current or LimitSettings(timezone=viewer.zone().key)
        loaded = load_form(form, target, version, _form_values(key, shown))
        stale = loaded != version
        if stale:
            st.warning(CHANGED_ELSEWHERE)
            st.button("Reload the current values", on_click=reload_form, args=(form,), key=f"{key}_reload")
        with st.form(f"{key}_form", border=False):
            # Rates on one row, budgets on the next, their period under them; each message under its field.
            slots: dict[str, DeltaGenerator] = {}
            rpm_col, tpm_col = st.columns(2)
            rpm_col.text_input("Requests per minute", key=f"{key}_rpm", help="Blank: no limit")
            slots["rpm"] = rpm_col.empty()
            tpm_col.text_input("Tokens per minute", key=f"{key}_tpm", help="Prompt and answer tokens; blank: no limit")
            slots["tpm"] = tpm_col.empty()
            usd_col, tokens_col = st.columns(2)
            usd_col.text_input("Budget (USD)", key=f"{key}_budget_usd", help="e.g. 25 or 12.50; blank: none")
            slots["budget_usd"] = usd_col.empty()
            tokens_col.text_input("Budget (tokens)", key=f"{key}_budget_tokens", help="Blank: none")
            slots["budget_tokens"] = tokens_col.empty()
            period_col, zone_col, warn_col = st.columns(3)
            period_col.selectbox("Budget period", PERIODS, format_func=PERIOD_CHOICES.get, key=f"{key}_period")
            slots["period"] = period_col.empty()
            zone_col.text_input(
                "Time zone of the period",
                key=f"{key}_timezone",
                help="An IANA name such as Asia/Seoul or UTC: days, weeks and months start at its midnight",
            )
            slots["timezone"] = zone_col.empty()
            warn_col.text_input("Warn at (% of the budget)", key=f"{key}_warn_percent", help="1 to 100")
            slots["warn_percent"] = warn_col.empty()
            save_col, remove_col = st.columns(2)
            save = save_col.form_submit_button("Save limits", type="primary", key=f"{key}_save")
            remove = remove_col.form_submit_button("Remove limits", key=f"{key}_remove", disabled=current is None)
        failed = st.empty()
    slots["target"] = failed
    if (save or remove) and stale:
        # Saving now would silently undo the other change: the form shows what was there before it.
        failed.error(f"{CHANGED_ELSEWHERE} Reload to see the current values, then make your change again.")
        return
    if save:
        state = st.session_state
        with form_errors(slots):
            settings = limit_rules.validate_settings(
                rpm=state[f"{key}_rpm"],
                tpm=state[f"{key}_tpm"],
                budget_usd=state[f"{key}_budget_usd"],
                budget_tokens=state[f"{key}_budget_tokens"],
                period=state[f"{key}_period"],
                timezone=state[f"{key}_timezone"],
                warn_percent=state[f"{key}_warn_percent"],
            )
            save_limit(engine(), actor, target, settings, loaded)
            reload_form(form)
            flash.done("Limits removed: every field was blank." if settings.empty else "Limits saved.")
    if remove:
        with form_errors({"target": failed}):
            save_limit(engine(), actor, target, LimitSettings(), loaded)
            reload_form(form)
            flash.done("Limits removed.")


# --- every rule, for administrators -----------------------------------------------------------


@dataclass(frozen=True)
class RuleRow:
    """One rule as the admin's table shows it: what it applies to, by name, and what it sets."""

    target: str
    scope: str
    set_by: str
    applies_to: str
    settings: LimitSettings
    updated_at: datetime | None


def _applies_to(session: Session, actor: User, parsed: limit_rules.Target) -> str:
    try:
        if parsed.scope == "user" and parsed.id is not None:
            row = admin_users.get_user(session, actor, parsed.id)
            return f"{row.email} ({row.name})"
        if parsed.scope == "key" and parsed.id is not None:
            key = api_keys.get_key(session, actor, parsed.id)
            return f"key {key.name} ({key.prefix}…) of {key.owner_email}"
        if parsed.scope == "provider" and parsed.id is not None:
            return providers.get_provider(session, actor, parsed.id).name
    except NotFound:
        return "(no longer exists)"
    return "every user without a rule of their own"


@unit_of_work
def rule_rows(session: Session, actor: User) -> list[RuleRow]:
    """Every rule (admins), its target named: the default first, then users, keys and providers."""
    rows = []
    for row in limit_admin.list_limits(session, actor):
        parsed = limit_rules.parse_target(row.target)
        settings = _settings_of(row) or LimitSettings()
        rows.append(
            RuleRow(row.target, row.scope, row.set_by, _applies_to(session, actor, parsed), settings, row.updated_at)
        )
    order = {"default": 0, "user": 1, "key": 2, "provider": 3}
    return sorted(rows, key=lambda r: (order.get(r.scope, 9), r.applies_to.lower(), r.set_by))


def rule_table(rows: list[RuleRow]) -> pd.DataFrame:
    """Names are untrusted: a dataframe draws them as text."""
    return pd.DataFrame(
        [
            {
                "Kind": SCOPE_LABELS.get(r.scope, r.scope),
                "Applies to": r.applies_to,
                "Set by": "its owner" if r.set_by == "owner" else "an administrator",
                "Sets": summary(r.settings),
                "Changed": timestamp(r.updated_at),
            }
            for r in rows
        ],
        columns=["Kind", "Applies to", "Set by", "Sets", "Changed"],
    )


def default_summary() -> str:
    """What the default rule sets, for the pages that say when it applies."""
    return summary(stored_settings(DEFAULT_TARGET))
