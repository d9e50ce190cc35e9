"""What a budget looks like to the people it applies to: used this period, the forecast, when it resets.

One component for the Overview, API keys and Usage pages. Every sentence is built here from numbers and
the rule's label and time zone; the label holds names from the database (a key's, a provider's), so each
sentence goes through escape_markdown before Streamlit renders it as Markdown (which would also read the
"$" of an amount as the start of a formula).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import streamlit as st
from babel import dates

from mindroute import i18n
from mindroute.i18n import _, _l, _n
from mindroute.ui.format import timestamp, tokens
from mindroute.ui.render import escape_markdown

if TYPE_CHECKING:  # the shapes are the services'; only read here
    from mindroute.services.budget_alerts import AlertRow
    from mindroute.services.budget_spend import BudgetStatus

LEVEL_BADGES = {
    "warning": (_l("Warning"), "orange", ":material/warning:"),
    "spent": (_l("Spent"), "red", ":material/block:"),
}
WEBHOOK_STATUSES = {"pending": _l("waiting"), "sending": _l("sending"), "sent": _l("sent"), "failed": _l("failed")}


@dataclass(frozen=True)
class Meter:
    """One budget metric (USD or tokens) of one rule, as shown: how full, and the sentences around it."""

    metric: str  # "usd" or "tokens"
    fraction: float  # spent / budget, 0..1 for the bar (the sentence says when it is over)
    used: str  # "$3.20 of $10.00 this month (Asia/Seoul), resets in 3 weeks (Jan 1, 2027, 12:00 AM)"
    forecast: str | None  # "at this rate: $9.80 by the end of the month"
    forecast_over: bool


def money(amount: float) -> str:
    """USD as the reader's language writes it: cents, or up to four decimals below a cent (a budget's first calls)."""
    return i18n.money(amount, "USD", digits=4 if amount != 0 and abs(amount) < 0.01 else 2)


def capitalised(label: str) -> str:
    """A rule's label (a Message from the services, or text) in the reader's language, its first letter up."""
    text = i18n.text(label)
    return text[:1].upper() + text[1:]


def resets_text(resets_at: datetime | None, timezone: str) -> str | None:
    """When the period resets, in the rule's time zone, as the reader's language writes it ("Jan 1, 2027,
    12:00 AM", "2027. 1. 1. 오전 12:00"); None: never resets."""
    if resets_at is None:
        return None
    return i18n.moment(resets_at.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone)))


def _this_period(period: str) -> str:
    if period == "day":
        return _("today")
    if period == "week":
        return _("this week")
    if period == "month":
        return _("this month")
    if period == "total":
        return _("in total")
    return period


def period_text(status: BudgetStatus) -> str:
    """ "this month (Asia/Seoul)"; "in total" has no time zone."""
    period = status.rule.period
    words = _this_period(period)
    return words if period == "total" else _("{period} ({zone})", period=words, zone=status.rule.timezone)


def _forecast_text(period: str, amount: str) -> str | None:
    if period == "day":
        return _("at this rate: {amount} by the end of the day", amount=amount)
    if period == "week":
        return _("at this rate: {amount} by the end of the week", amount=amount)
    if period == "month":
        return _("at this rate: {amount} by the end of the month", amount=amount)
    return None


def _tokens_amount(count: float) -> str:
    return _("{tokens} tokens", tokens=tokens(int(count)))


def meters(status: BudgetStatus, now: datetime | None = None) -> list[Meter]:
    """The USD and token meters of a rule's budget, those it sets, USD first (`now`: for how long until the
    reset, naive UTC or aware; default the present)."""
    rule = status.rule
    period = period_text(status)
    found: list[Meter] = []
    for metric, budget, spent, forecast in (
        ("usd", rule.budget_usd, status.spent_usd, status.forecast_usd),
        ("tokens", rule.budget_tokens, status.spent_tokens, status.forecast_tokens),
    ):
        if budget is None:
            continue
        if metric == "usd":
            used = _("{spent} of {budget} {period}", spent=money(spent), budget=money(budget), period=period)
            ahead = money(forecast) if forecast is not None else None
        else:
            used = _(
                "{spent} of {budget} tokens {period}",
                spent=tokens(int(spent)),
                budget=tokens(int(budget)),
                period=period,
            )
            ahead = _tokens_amount(forecast) if forecast is not None else None
        if status.resets_at is not None:
            used = _(
                "{used}, resets {when} ({moment})",
                used=used,
                when=i18n.relative(status.resets_at, now),
                moment=resets_text(status.resets_at, rule.timezone),
            )
        found.append(
            Meter(
                metric=metric,
                fraction=_fraction(spent, budget),
                used=used,
                forecast=_forecast_text(rule.period, ahead) if ahead is not None else None,
                forecast_over=forecast is not None and forecast > budget,
            )
        )
    return found


def _fraction(spent: float, budget: float) -> float:
    return max(0.0, min(1.0, spent / budget)) if budget > 0 else 1.0


def unpriced_text(status: BudgetStatus) -> str | None:
    """ "3 calls to unpriced models not counted in USD": a USD budget never counts them as $0 silently."""
    count = status.unpriced_calls
    if not count or status.rule.budget_usd is None:
        return None
    return _n(
        "{n} call to an unpriced model not counted in USD",
        "{n} calls to unpriced models not counted in USD",
        count,
    )


def render_status(status: BudgetStatus) -> None:
    """One budget in a bordered box: its rule, a bar per metric, the forecast, the unpriced calls, its badge."""
    with st.container(border=True):
        head, badge = st.columns([5, 1])
        head.markdown(f"**{escape_markdown(capitalised(status.rule.label))}**")
        if status.level in LEVEL_BADGES:
            text, color, icon = LEVEL_BADGES[status.level]
            with badge:
                st.badge(i18n.text(text), color=color, icon=icon)
        for meter in meters(status):
            st.progress(meter.fraction, text=escape_markdown(meter.used))
            if meter.forecast is not None:
                if meter.forecast_over:
                    over = _("{forecast}, over the budget", forecast=meter.forecast)
                    st.caption(f":orange[{escape_markdown(over)}]")
                else:
                    st.caption(escape_markdown(meter.forecast))
        if note := unpriced_text(status):
            st.caption(escape_markdown(note))


def render_statuses(statuses: list[BudgetStatus]) -> None:
    """Every budget in `statuses`, one box each; nothing when there is none (the caller says so if it wants)."""
    for status in statuses:
        if status.rule.has_budget:
            render_status(status)


def alert_period(period_key: str) -> str | None:
    """An alert's period from its key ("month:Asia/Seoul:2026-12-01" -> "the month of December 2026
    (Asia/Seoul)"; "total" -> "in total") in the reader's language; None for a key it cannot read."""
    if period_key == "total":
        return _("in total")
    period, _sep, rest = period_key.partition(":")
    zone, _sep, first = rest.rpartition(":")
    try:
        start = date.fromisoformat(first)
    except ValueError:
        return None
    if period == "month":
        month = dates.format_skeleton("yMMMM", start, locale=i18n.current())
        return _("the month of {month} ({zone})", month=month, zone=zone)
    if period == "week":
        return _("the week from {day} ({zone})", day=i18n.day(start), zone=zone)
    if period == "day":
        return _("the day of {day} ({zone})", day=i18n.day(start), zone=zone)
    return None


def alert_rows(alerts: list[AlertRow]) -> list[dict[str, str]]:
    """The alerts as table rows (headers in the reader's language): when, which budget, how far it went, in
    which period, and the webhook."""
    rows = []
    for alert in alerts:
        if alert.metric == "usd":
            reached = _("{spent} of {budget}", spent=money(alert.spent), budget=money(alert.budget))
        else:
            reached = _("{spent} of {budget} tokens", spent=tokens(int(alert.spent)), budget=tokens(int(alert.budget)))
        webhook = WEBHOOK_STATUSES.get(alert.webhook_status or "")
        rows.append(
            {
                _("When"): timestamp(alert.created_at),
                _("Level"): _("Spent") if alert.level == "spent" else _("Warning"),
                _("Budget"): capitalised(alert.label),
                _("Reached"): reached,
                _("Period"): alert_period(alert.period_key) or i18n.text(alert.period),
                _("Webhook"): (
                    _("not set")
                    if alert.webhook_status is None
                    else i18n.text(webhook)
                    if webhook is not None
                    else alert.webhook_status
                ),
            }
        )
    return rows


def render_alerts(alerts: list[AlertRow]) -> None:
    """The budget alerts of the current periods, newest first, as a table (which renders no Markdown)."""
    if alerts:
        st.dataframe(alert_rows(alerts), hide_index=True, width="stretch", key="budget_alerts")
    else:
        st.text(_("None: no budget has reached its warning threshold in its current period."))
