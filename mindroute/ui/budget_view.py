"""What a budget looks like to the people it applies to: used this period, the forecast, when it resets.

One component for the Overview, API keys and Usage pages. Every sentence is built here from numbers and
the rule's label and time zone; the label holds names from the database (a key's, a provider's), so each
sentence goes through escape_markdown before Streamlit renders it as Markdown (which would also read the
"$" of an amount as the start of a formula).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import streamlit as st

from mindroute.ui.format import timestamp, tokens
from mindroute.ui.render import escape_markdown

if TYPE_CHECKING:  # the shapes are the services'; only read here
    from mindroute.services.budget_alerts import AlertRow
    from mindroute.services.budget_spend import BudgetStatus

THIS_PERIOD = {"day": "today", "week": "this week", "month": "this month", "total": "in total"}
PERIOD_END = {"day": "the end of the day", "week": "the end of the week", "month": "the end of the month"}
LEVEL_BADGES = {"warning": ("Warning", "orange", ":material/warning:"), "spent": ("Spent", "red", ":material/block:")}


@dataclass(frozen=True)
class Meter:
    """One budget metric (USD or tokens) of one rule, as shown: how full, and the sentences around it."""

    metric: str  # "usd" or "tokens"
    fraction: float  # spent / budget, 0..1 for the bar (the sentence says when it is over)
    used: str  # "$3.20 of $10.00 this month (Asia/Seoul), resets on 1 Jan 00:00"
    forecast: str | None  # "at this rate: $9.80 by the end of the month"
    forecast_over: bool


def money(amount: float) -> str:
    """USD as a person reads it: cents, or four decimals below a cent (a budget's first calls)."""
    if amount != 0 and abs(amount) < 0.01:
        return f"${amount:,.4f}"
    return f"${amount:,.2f}"


def capitalised(label: str) -> str:
    return label[:1].upper() + label[1:]


def resets_text(resets_at: datetime | None, timezone: str) -> str | None:
    """ "1 Jan 00:00" in the rule's time zone (a period resets within a month: no year); None: never resets."""
    if resets_at is None:
        return None
    local = resets_at.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone))
    return f"{local.day} {local:%b %H:%M}"


def period_text(status: BudgetStatus) -> str:
    """ "this month (Asia/Seoul)"; "in total" has no time zone."""
    period = status.rule.period
    words = THIS_PERIOD.get(period, period)
    return words if period == "total" else f"{words} ({status.rule.timezone})"


def meters(status: BudgetStatus) -> list[Meter]:
    """The USD and token meters of a rule's budget, those it sets, USD first."""
    rule = status.rule
    when = resets_text(status.resets_at, rule.timezone)
    tail = f"{period_text(status)}, resets on {when}" if when else period_text(status)
    end = PERIOD_END.get(rule.period)
    found: list[Meter] = []
    metrics = (
        ("usd", rule.budget_usd, status.spent_usd, status.forecast_usd, money, ""),
        ("tokens", rule.budget_tokens, status.spent_tokens, status.forecast_tokens, tokens, " tokens"),
    )
    for metric, budget, spent, forecast, amount, unit in metrics:
        if budget is None:
            continue
        found.append(
            Meter(
                metric=metric,
                fraction=_fraction(spent, budget),
                used=f"{amount(spent)} of {amount(budget)}{unit} {tail}",
                forecast=f"at this rate: {amount(forecast)}{unit} by {end}" if forecast is not None and end else None,
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
    return f"{count:,} call{'s' * (count != 1)} to unpriced models not counted in USD"


def render_status(status: BudgetStatus) -> None:
    """One budget in a bordered box: its rule, a bar per metric, the forecast, the unpriced calls, its badge."""
    with st.container(border=True):
        head, badge = st.columns([5, 1])
        head.markdown(f"**{escape_markdown(capitalised(status.rule.label))}**")
        if status.level in LEVEL_BADGES:
            text, color, icon = LEVEL_BADGES[status.level]
            with badge:
                st.badge(text, color=color, icon=icon)
        for meter in meters(status):
            st.progress(meter.fraction, text=escape_markdown(meter.used))
            if meter.forecast is not None:
                if meter.forecast_over:
                    st.caption(f":orange[{escape_markdown(meter.forecast + ', over the budget')}]")
                else:
                    st.caption(escape_markdown(meter.forecast))
        if note := unpriced_text(status):
            st.caption(escape_markdown(note))


def render_statuses(statuses: list[BudgetStatus]) -> None:
    """Every budget in `statuses`, one box each; nothing when there is none (the caller says so if it wants)."""
    for status in statuses:
        if status.rule.has_budget:
            render_status(status)


def alert_rows(alerts: list[AlertRow]) -> list[dict[str, str]]:
    """The alerts as table rows: when, which budget, how far it went, in which period, and the webhook."""
    return [
        {
            "When": timestamp(alert.created_at),
            "Level": "Spent" if alert.level == "spent" else "Warning",
            "Budget": capitalised(alert.label),
            "Reached": (
                f"{money(alert.spent)} of {money(alert.budget)}"
                if alert.metric == "usd"
                else f"{tokens(int(alert.spent))} of {tokens(int(alert.budget))} tokens"
            ),
            "Period": alert.period,
            "Webhook": alert.webhook_status or "not set",
        }
        for alert in alerts
    ]


def render_alerts(alerts: list[AlertRow]) -> None:
    """The budget alerts of the current periods, newest first, as a table (which renders no Markdown)."""
    if alerts:
        st.dataframe(alert_rows(alerts), hide_index=True, width="stretch", key="budget_alerts")
    else:
        st.text("None: no budget has reached its warning threshold in its current period.")
