"""The usage filters shared by the Usage and Logs pages, kept in the URL query; charts and CSV helpers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import available_timezones

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mindroute.analytics.filter import PRESETS, UsageFilter, custom_range, preset_range
from mindroute.analytics.levels import REQUEST_TYPES
from mindroute.models import utcnow
from mindroute.timezones import viewer_zone
from mindroute.ui import budget_view

if TYPE_CHECKING:  # the shape is services/budget_spend.py's; only read here
    from mindroute.services.budget_spend import BudgetStatus

CUSTOM = "custom"
RANGE_CHOICES = {**PRESETS, CUSTOM: "Custom dates"}
SOURCE_CHOICES = {"": "API and playground", "api": "API", "playground": "Playground"}
OUTCOME_CHOICES = {"": "Success and error", "success": "Success", "error": "Error"}
DEFAULT_RANGE = "7d"
# One look for every chart: the same qualitative palette; Streamlit's theme does light and dark.
PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6", "#9D755D"]


def _parse_day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _init(key: str, param: str, valid: Any, default: Any) -> None:
    """A widget's first value in this session: from the URL query when valid there, else the default."""
    if key not in st.session_state:
        value = st.query_params.get(param)
        st.session_state[key] = value if value is not None and value in valid else default


def _init_many(key: str, param: str, valid: Any) -> None:
    """A multiselect's first value in this session: the URL query's comma-separated values that are
    valid (none, that is all, by default)."""
    if key not in st.session_state:
        wanted = (st.query_params.get(param) or "").split(",")
        st.session_state[key] = [value for value in valid if value in wanted]


def _zones(browser: str) -> list[str]:
    zones = sorted(available_timezones())
    return zones if browser in zones else [browser, *zones]


def filter_widgets(prefix: str, options: dict[str, list[Any]], is_admin: bool) -> tuple[UsageFilter, dict[str, str]]:
    """Draw the filters (values restored from the URL query), write them back to the query, and return
    the filter and the query parameters that describe it."""
    browser = st.context.timezone if isinstance(st.context.timezone, str) else "UTC"
    browser = viewer_zone(browser).key
    zones = _zones(browser)
    providers = {str(pid): name for pid, name in options["providers"]}
    models = list(options["models"])
    users = {str(uid): label for uid, label in options["users"]} if is_admin else {}
    request_types = list(options.get("request_types") or REQUEST_TYPES)
    today = utcnow().date()

    _init(f"{prefix}_range", "range", RANGE_CHOICES, DEFAULT_RANGE)
    _init(f"{prefix}_tz", "tz", set(zones), browser)
    _init(f"{prefix}_provider", "provider", providers, "")
    _init(f"{prefix}_model", "model", models, "")
    if is_admin:
        _init(f"{prefix}_user", "user", users, "")
    _init(f"{prefix}_source", "source", SOURCE_CHOICES, "")
    _init(f"{prefix}_outcome", "outcome", OUTCOME_CHOICES, "")
    _init_many(f"{prefix}_request_type", "type", request_types)
    if f"{prefix}_days" not in st.session_state:
        first = _parse_day(st.query_params.get("from")) or today - timedelta(days=6)
        last = _parse_day(st.query_params.get("to")) or today
        first, last = min(first, last, today), min(max(first, last), today)
        st.session_state[f"{prefix}_days"] = (first, last)

    top = st.columns([2, 2, 2])
    preset = top[0].selectbox("Time range", list(RANGE_CHOICES), format_func=RANGE_CHOICES.get, key=f"{prefix}_range")
    days = None
    if preset == CUSTOM:
        days = top[1].date_input("Dates", key=f"{prefix}_days", max_value=today)
    timezone = top[2].selectbox("Timezone", zones, key=f"{prefix}_tz")
    row = st.columns(6 if is_admin else 5)
    provider = row[0].selectbox(
        "Provider", ["", *providers], format_func=lambda p: providers.get(p, "All providers"), key=f"{prefix}_provider"
    )
    model = row[1].selectbox("Model", ["", *models], format_func=lambda m: m or "All models", key=f"{prefix}_model")
    source = row[2].selectbox("Source", list(SOURCE_CHOICES), format_func=SOURCE_CHOICES.get, key=f"{prefix}_source")
    outcome = row[3].selectbox(
        "Outcome", list(OUTCOME_CHOICES), format_func=OUTCOME_CHOICES.get, key=f"{prefix}_outcome"
    )
    kinds = row[4].multiselect(
        "Request type", request_types, key=f"{prefix}_request_type", placeholder="All request types"
    )
    who = ""
    if is_admin:
        who = row[5].selectbox(
            "User", ["", *users], format_func=lambda u: users.get(u, "All users"), key=f"{prefix}_user"
        )

    params = {"range": preset, "tz": timezone}
    if preset == CUSTOM:
        chosen = list(days) if isinstance(days, (tuple, list)) else [days]
        chosen = [d for d in chosen if d] or [today]
        first, last = chosen[0], chosen[-1]
        start, end = custom_range(first, last, timezone)
        params |= {"from": first.isoformat(), "to": last.isoformat()}
    else:
        start, end = preset_range(preset, timezone)
    params |= {k: v for k, v in {"provider": provider, "model": model, "user": who}.items() if v}
    params |= {k: v for k, v in {"source": source, "outcome": outcome}.items() if v}
    if kinds:
        params["type"] = ",".join(kinds)
    flt = UsageFilter(
        start=start,
        end=end,
        timezone=timezone,
        provider_ids=(uuid.UUID(provider),) if provider else (),
        models=(model,) if model else (),
        user_ids=(uuid.UUID(who),) if who else (),
        source=source or None,
        outcome=outcome or None,
        request_types=tuple(kinds),
    )
    return flt, params


def keep_in_url(params: dict[str, str], extra: dict[str, str] | None = None) -> None:
    """The view in the URL query, so it can be shared and survives a reload."""
    wanted = {**params, **{k: v for k, v in (extra or {}).items() if v}}
    if dict(st.query_params) != wanted:
        st.query_params.from_dict(wanted)


# --- cost -----------------------------------------------------------------------------------------


def cost_note(unpriced: Sequence[str], shown: int = 5) -> str | None:
    """What the cost tile leaves out: the models used in the period with no price (neither the provider's
    own nor a built-in one), counted apart rather than as $0; None when every model had a price."""
    if not unpriced:
        return None
    count = len(unpriced)
    names = ", ".join(unpriced[:shown]) + (f" and {count - shown} more" if count > shown else "")
    return f"Cost excludes {count} unpriced model{'s' * (count != 1)}: {names}."


# --- CSV ----------------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    # Spreadsheet formula injection: a cell starting with = + - @ is read as a formula.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """A table as CSV, as shown; text cells that a spreadsheet would run as formulas are quoted."""
    safe = frame.copy()
    for column in safe.columns:
        if pd.api.types.is_object_dtype(safe[column]) or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(_cell)
    return safe.to_csv(index=False).encode("utf-8")


def download(frame: pd.DataFrame, name: str, key: str) -> None:
    st.download_button(
        "Download CSV", csv_bytes(frame), file_name=f"{name}.csv", mime="text/csv", key=key, on_click="ignore"
    )


# --- charts -------------------------------------------------------------------------------------


def chart_text(value: Any) -> str:
    """A label for plotly, which renders a subset of HTML in text: no tag can come from user data."""
    return str(value).replace("<", "‹").replace(">", "›")


def style(fig: Any, *, y_title: str | None = None, x_title: str | None = None) -> Any:
    fig.update_layout(
        colorway=PALETTE,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "title": None},
        hovermode="x unified",
        height=340,
    )
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title, rangemode="tozero")
    return fig


# --- spend against budget -----------------------------------------------------------------------


def budget_frame(statuses: Sequence[BudgetStatus]) -> pd.DataFrame:
    """One row per budget metric (a rule with both a USD and a token budget gives two): what is used this
    period and the forecast to its end, in the metric's units and as a percentage of the budget."""
    rows = []
    for status in statuses:
        rule = status.rule
        metrics = []
        if rule.budget_usd is not None:
            metrics.append(("USD", status.spent_usd, rule.budget_usd, status.forecast_usd))
        if rule.budget_tokens is not None:
            metrics.append(("tokens", status.spent_tokens, rule.budget_tokens, status.forecast_tokens))
        for unit, spent, budget, forecast in metrics:
            rows.append(
                {
                    "budget": budget_view.capitalised(rule.label),
                    "unit": unit,
                    "period": budget_view.period_text(status),
                    "used": spent,
                    "limit": budget,
                    "used_percent": 100.0 * spent / budget if budget else None,
                    "forecast": forecast,
                    "forecast_percent": 100.0 * forecast / budget if budget and forecast is not None else None,
                    "resets": budget_view.resets_text(status.resets_at, rule.timezone) or "never",
                    "unpriced_calls": status.unpriced_calls if unit == "USD" else None,
                }
            )
    columns = ["budget", "unit", "period", "used", "limit", "used_percent", "forecast", "forecast_percent"]
    return pd.DataFrame(rows, columns=[*columns, "resets", "unpriced_calls"])


def _amount(unit: str, value: float | None) -> str:
    if value is None or pd.isna(value):
        return "—"
    return budget_view.money(value) if unit == "USD" else f"{int(value):,} tokens"


def _percent_labels(values: pd.Series) -> list[str]:
    return ["" if value is None or pd.isna(value) else f"{value:,.0f} %" for value in values]


def budget_figure(frame: pd.DataFrame) -> go.Figure:
    """Each budget's use this period as a bar in percent of the budget, its forecast to the period's end beside
    it, and the budget itself as the horizontal line at 100 %: budgets in USD and in tokens on one scale."""
    names = [chart_text(f"{row.budget} ({row.unit})") for row in frame.itertuples()]
    used_text = [f"{_amount(r.unit, r.used)} of {_amount(r.unit, r.limit)}" for r in frame.itertuples()]
    forecast_text = [f"{_amount(r.unit, r.forecast)} by the period's end" for r in frame.itertuples()]
    fig = go.Figure(
        [
            go.Bar(
                name="used this period",
                x=names,
                y=frame["used_percent"],
                hovertext=used_text,
                text=_percent_labels(frame["used_percent"]),
            ),
            go.Bar(
                name="forecast at this rate",
                x=names,
                y=frame["forecast_percent"],
                hovertext=forecast_text,
                text=_percent_labels(frame["forecast_percent"]),
            ),
        ]
    )
    fig.add_hline(
        y=100, line_dash="dash", line_color="#E45756", annotation_text="budget", annotation_position="top left"
    )
    fig.update_layout(barmode="group")
    fig.update_traces(textposition="outside", cliponaxis=False)
    style(fig, y_title="% of the budget")
    fig.update_layout(hovermode="closest")
    fig.update_yaxes(ticksuffix=" %")
    return fig
