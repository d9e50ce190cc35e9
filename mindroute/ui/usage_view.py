"""The usage filters shared by the Usage and Logs pages, kept in the URL query; charts and CSV helpers."""

from __future__ import annotations

import math
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
from mindroute.ui import budget_view, charts, viewer

if TYPE_CHECKING:  # the shape is services/budget_spend.py's; only read here
    from mindroute.services.budget_spend import BudgetStatus

CUSTOM = "custom"
RANGE_CHOICES = {**PRESETS, CUSTOM: "Custom dates"}
SOURCE_CHOICES = {"": "All sources", "api": "API", "playground": "Playground"}
OUTCOME_CHOICES = {"": "All outcomes", "success": "Success", "error": "Error"}
DEFAULT_RANGE = "7d"
GRANULARITY_WORDS = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}


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
    browser = viewer.zone().key  # the Account choice, else the browser's zone
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


# --- numbers ------------------------------------------------------------------------------------


def integer(value: float | None) -> str:
    return "—" if value is None or pd.isna(value) else f"{int(value):,}"


def milliseconds(value: float | None) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:,.0f} ms"


def usd(value: float | None) -> str:
    """Dollars with cents from $1, four decimals from a cent, and two significant digits below that, so a
    $0.000008 call reads as $0.0000080, never $0.0000."""
    if value is None or pd.isna(value):
        return "—"
    if value == 0 or abs(value) >= 1:
        return f"${value:,.2f}"
    if abs(value) >= 0.01:
        return f"${value:.4f}"
    digits = 1 - math.floor(math.log10(abs(value)))
    return f"${value:.{digits}f}"


def calls_text(count: int) -> str:
    return f"{count:,} call" + ("" if count == 1 else "s")


# --- tables: one set of headers and formats for the page and its CSV ---------------------------

# column -> (header, kind); kinds: text, int, ms, percent (a fraction shown as %), usd, time (a local bucket start).
COLUMNS: dict[str, tuple[str, str]] = {
    "provider": ("Provider", "text"),
    "model": ("Model", "text"),
    "user": ("User", "text"),
    "request_type": ("Request type", "text"),
    "name": ("Name", "text"),
    "group": ("Group", "text"),
    "series": ("Series", "text"),
    "status_label": ("Status code", "text"),
    "status_class": ("Class", "text"),
    "start": ("Start", "time"),
    "requests": ("Requests", "int"),
    "calls": ("Calls", "int"),
    "errors": ("Errors", "int"),
    "tokens": ("Total tokens", "int"),
    "prompt_tokens": ("Input tokens", "int"),
    "completion_tokens": ("Output tokens", "int"),
    "error_rate": ("Error rate (%)", "percent"),
    "share": ("Share (%)", "percent"),
    "avg_latency_ms": ("Avg latency (ms)", "ms"),
    "p95_ms": ("p95 latency (ms, approx.)", "ms"),
    "p50": ("p50 latency (ms, approx.)", "ms"),
    "p95": ("p95 latency (ms, approx.)", "ms"),
    "p99": ("p99 latency (ms, approx.)", "ms"),
    "latency_ms": ("Latency (ms)", "ms"),
    "cost": ("Cost (USD)", "usd"),
}
USD_DECIMALS = 6  # a table's cost column: $0.000008 stays visible


def table(frame: pd.DataFrame, timezone: str, headers: dict[str, str] | None = None) -> pd.DataFrame:
    """A data frame as a person reads it, on the page and in its CSV alike: human headers, whole numbers
    as integers, milliseconds rounded, rates in percent with one decimal, USD to USD_DECIMALS, bucket
    starts zone-aware. Unknown columns are left out."""
    out: dict[str, Any] = {}
    for column in frame.columns:
        if column not in COLUMNS:
            continue
        header, kind = COLUMNS[column]
        header = (headers or {}).get(column, header)
        values = frame[column]
        if kind in ("int", "ms"):
            out[header] = pd.to_numeric(values, errors="coerce").round().astype("Int64")
        elif kind == "percent":
            out[header] = (pd.to_numeric(values, errors="coerce") * 100).round(1)
        elif kind == "usd":
            out[header] = pd.to_numeric(values, errors="coerce").round(USD_DECIMALS)
        elif kind == "time":
            out[header] = pd.to_datetime(values).dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
        else:
            out[header] = values.astype(object).where(values.notna(), "").map(charts.chart_text)
    return pd.DataFrame(out)


def column_config(shown: pd.DataFrame) -> dict[str, Any]:
    """Formats for st.dataframe of a table(): thousands separators, no raw floats."""
    kinds = {header: kind for header, kind in COLUMNS.values()}
    config: dict[str, Any] = {}
    for header in shown.columns:
        kind = kinds.get(header)
        if kind in ("int", "ms"):
            config[header] = st.column_config.NumberColumn(header, format="localized")
        elif kind == "percent":
            config[header] = st.column_config.NumberColumn(header, format="%.1f")
        elif kind == "usd":
            config[header] = st.column_config.NumberColumn(header, format=f"%.{USD_DECIMALS}f")
        elif kind == "time":
            config[header] = st.column_config.DatetimeColumn(header, format="YYYY-MM-DD HH:mm")
    return config


def table_csv(shown: pd.DataFrame) -> bytes:
    """A table() as CSV: the same headers and values; times ISO-8601 with their offset."""
    out = shown.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = [v.isoformat() if not pd.isna(v) else "" for v in out[column]]
    return csv_bytes(out)


def show_table(frame: pd.DataFrame, timezone: str, key: str, name: str, headers: dict[str, str] | None = None) -> None:
    """A table on the page with its CSV download beside, both from table()."""
    shown = table(frame, timezone, headers)
    st.dataframe(shown, hide_index=True, width="stretch", key=key, column_config=column_config(shown))
    download(shown, name, f"{key}_csv")


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
    """A CSV download of a table() (or any frame), built only when it is clicked."""
    st.download_button(
        "Download CSV",
        lambda: table_csv(frame),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=key,
        on_click="ignore",
    )


# --- charts -------------------------------------------------------------------------------------


chart_text = charts.chart_text


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
    mode = charts.theme()
    fig = go.Figure(
        [
            go.Bar(
                name="used this period",
                marker_color=charts.PALETTES[mode][0],
                x=names,
                y=frame["used_percent"],
                hovertext=used_text,
                text=_percent_labels(frame["used_percent"]),
            ),
            go.Bar(
                name="forecast at this rate",
                marker_color=charts.PALETTES[mode][1],
                x=names,
                y=frame["forecast_percent"],
                hovertext=forecast_text,
                text=_percent_labels(frame["forecast_percent"]),
            ),
        ]
    )
    fig.add_hline(
        y=100, line_dash="dash", line_color=charts.ERROR[mode], annotation_text="budget", annotation_position="top left"
    )
    fig.update_layout(barmode="group")
    fig.update_traces(textposition="outside", cliponaxis=False)
    charts.layout(fig, x_title=None, y_title="% of the budget")
    fig.update_yaxes(ticksuffix=" %")
    return fig
