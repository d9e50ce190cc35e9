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

from mindroute import i18n
from mindroute.errors import NotFound
from mindroute.i18n import _, _l, _n
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
PERIOD_CHOICES = {
    "day": _l("Day"),
    "week": _l("Week (from Monday)"),
    "month": _l("Month"),
    "total": _l("In total (never resets)"),
}
NO_LIMITS = _l("No limits")
CHANGED_ELSEWHERE = limit_admin.CHANGED_ELSEWHERE  # the service's message: shown through i18n.text
SCOPE_LABELS = {"default": _l("Default"), "user": _l("User"), "key": _l("API key"), "provider": _l("Provider")}

# One transaction per action: the rule services take a session, pages hold the engine.
save_limit = unit_of_work(limit_admin.set_limit)
_stored = unit_of_work(limit_admin.settings_for)
_stored_row = unit_of_work(limit_admin.get_limit)
user_budgets = unit_of_work(budget_spend.budget_statuses)
key_budgets = unit_of_work(budget_spend.key_statuses)
_provider_budgets = unit_of_work(budget_spend.provider_statuses)


def usd(amount: float) -> str:
    return i18n.money(amount, "USD")


def _per_period(budget: str, period: str, zone: str) -> str:
    """A budget over its period: "$25.00 a month (Asia/Seoul)", "100.0 k tokens in total"."""
    if period == "day":
        return _("{budget} a day ({zone})", budget=budget, zone=zone)
    if period == "week":
        return _("{budget} a week ({zone})", budget=budget, zone=zone)
    if period == "month":
        return _("{budget} a month ({zone})", budget=budget, zone=zone)
    return _("{budget} in total", budget=budget)


def summary(settings: LimitSettings | None) -> str:
    """A rule in words, in the reader's language, e.g. "10 requests/min, $25.00 a month (Asia/Seoul), warn at
    80 %"; "No limits" for none."""
    if settings is None or settings.empty:
        return i18n.text(NO_LIMITS)
    parts = []
    if settings.rpm is not None:
        parts.append(_n("{n} request/min", "{n} requests/min", settings.rpm))
    if settings.tpm is not None:
        parts.append(_("{tokens} tokens/min", tokens=tokens(settings.tpm)))
    budgets = []
    if settings.budget_usd is not None:
        budgets.append(usd(settings.budget_usd))
    if settings.budget_tokens is not None:
        budgets.append(_("{tokens} tokens", tokens=tokens(settings.budget_tokens)))
    if budgets:
        both = budgets[0] if len(budgets) == 1 else _("{first} and {second}", first=budgets[0], second=budgets[1])
        parts.append(_per_period(both, settings.period, settings.timezone))
        parts.append(_("warn at {percent} %", percent=settings.warn_percent))
    return ", ".join(parts)


def looser_than(mine: LimitSettings | None, theirs: LimitSettings | None) -> list[str]:
    """The limits of `mine` (an owner's rule) that are above `theirs` (the administrator's) and so change nothing:
    every rule must allow a call, so the tighter one applies. Budgets compare only over the same period. The
    names are Messages: English as text, translated where shown (i18n.text)."""
    if mine is None or theirs is None:
        return []
    checks = [
        (_l("requests per minute"), mine.rpm, theirs.rpm),
        (_l("tokens per minute"), mine.tpm, theirs.tpm),
    ]
    if mine.period == theirs.period and (mine.period == "total" or mine.timezone == theirs.timezone):
        checks += [
            (_l("budget in USD"), mine.budget_usd, theirs.budget_usd),
            (_l("token budget"), mine.budget_tokens, theirs.budget_tokens),
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
    """What has been used of each budget this period, with its forecast (budget_view), or `empty` (fixed text).
    `title` and `empty` are translated text or Messages (shown with i18n.text)."""
    st.subheader(i18n.text(title))
    if statuses:
        render_statuses(statuses)
    else:
        st.caption(i18n.text(empty))


def show_rule(label: str, settings: LimitSettings | None) -> None:
    """A rule read-only: its label (translated text or a Message) and its summary, as plain text."""
    st.text(_("{label}: {summary}", label=i18n.text(label), summary=summary(settings)))


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
    over an owner's), the limits set above it are named, since the tighter rule applies. `title`, `help_text`
    and the related labels are translated text or Messages (shown with i18n.text)."""
    flash = Flash(f"{key}_flash")
    row = _stored_row(engine(), target)
    current = _settings_of(row)
    version = row.updated_at if row is not None else None
    form = f"{key}_form"
    with st.container(border=True):
        st.subheader(i18n.text(title))
        if help_text:
            st.caption(i18n.text(help_text))
        flash.show()
        st.text(_("Now: {summary}", summary=summary(current)))
        for label, settings in related:
            show_rule(label, settings)
        if above := looser_than(current, ceiling):
            names = ", ".join(i18n.text(name) for name in above)
            st.info(_("Above the administrator's limit, so theirs applies: {names}.", names=names))
        # A new rule's period starts in the viewer's zone (their Account choice, else the browser's, else UTC).
        shown = current or LimitSettings(timezone=viewer.zone().key)
        loaded = load_form(form, target, version, _form_values(key, shown))
        stale = loaded != version
        if stale:
            st.warning(i18n.text(CHANGED_ELSEWHERE))
            st.button(_("Reload the current values"), on_click=reload_form, args=(form,), key=f"{key}_reload")
        with st.form(f"{key}_form", border=False):
            # Rates on one row, budgets on the next, their period under them; each message under its field.
            slots: dict[str, DeltaGenerator] = {}
            rpm_col, tpm_col = st.columns(2)
            rpm_col.text_input(_("Requests per minute"), key=f"{key}_rpm", help=_("Blank: no limit"))
            slots["rpm"] = rpm_col.empty()
            tpm_col.text_input(
                _("Tokens per minute"), key=f"{key}_tpm", help=_("Input and output tokens; blank: no limit")
            )
            slots["tpm"] = tpm_col.empty()
            usd_col, tokens_col = st.columns(2)
            usd_col.text_input(_("Budget (USD)"), key=f"{key}_budget_usd", help=_("e.g. 25 or 12.50; blank: none"))
            slots["budget_usd"] = usd_col.empty()
            tokens_col.text_input(_("Budget (tokens)"), key=f"{key}_budget_tokens", help=_("Blank: none"))
            slots["budget_tokens"] = tokens_col.empty()
            period_col, zone_col, warn_col = st.columns(3)
            period_col.selectbox(
                _("Budget period"),
                PERIODS,
                format_func=i18n.labeller(PERIOD_CHOICES),
                key=f"{key}_period",
            )
            slots["period"] = period_col.empty()
            zone_col.text_input(
                _("Time zone of the period"),
                key=f"{key}_timezone",
                help=_("An IANA name such as `Asia/Seoul` or `UTC`: days, weeks and months start at its midnight"),
            )
            slots["timezone"] = zone_col.empty()
            warn_col.text_input(_("Warn at (% of the budget)"), key=f"{key}_warn_percent", help=_("1 to 100"))
            slots["warn_percent"] = warn_col.empty()
            save_col, remove_col = st.columns(2)
            save = save_col.form_submit_button(_("Save limits"), type="primary", key=f"{key}_save")
            remove = remove_col.form_submit_button(_("Remove limits"), key=f"{key}_remove", disabled=current is None)
        failed = st.empty()
    slots["target"] = failed
    if (save or remove) and stale:
        # Saving now would silently undo the other change: the form shows what was there before it.
        again = _("Reload to see the current values, then make your change again.")
        failed.error(f"{i18n.text(CHANGED_ELSEWHERE)} {again}")
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
            flash.done(_("Limits removed: every field was blank.") if settings.empty else _("Limits saved."))
    if remove:
        with form_errors({"target": failed}):
            save_limit(engine(), actor, target, LimitSettings(), loaded)
            reload_form(form)
            flash.done(_("Limits removed."))


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
            return _("key {name} ({prefix}…) of {owner}", name=key.name, prefix=key.prefix, owner=key.owner_email)
        if parsed.scope == "provider" and parsed.id is not None:
            return providers.get_provider(session, actor, parsed.id).name
    except NotFound:
        return _("(no longer exists)")
    return _("every user without a rule of their own")


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
    """Names are untrusted: a dataframe draws them as text. Headers and words in the reader's language."""
    columns = [_("Kind"), _("Applies to"), _("Set by"), _("Sets"), _("Changed")]
    return pd.DataFrame(
        [
            [
                i18n.text(SCOPE_LABELS.get(r.scope, r.scope)),
                r.applies_to,
                _("its owner") if r.set_by == "owner" else _("an administrator"),
                summary(r.settings),
                timestamp(r.updated_at),
            ]
            for r in rows
        ],
        columns=columns,
    )


def default_summary() -> str:
    """What the default rule sets, for the pages that say when it applies."""
    return summary(stored_settings(DEFAULT_TARGET))
