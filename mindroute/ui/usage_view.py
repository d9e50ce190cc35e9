"""The usage filters shared by the Usage and Logs pages, kept in the URL query; charts and CSV helpers."""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import available_timezones

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from babel import dates, numbers

from mindroute import i18n
from mindroute.analytics.filter import PRESETS, UsageFilter, custom_range, preset_range
from mindroute.analytics.levels import REQUEST_TYPES
from mindroute.i18n import _, _l, _n
from mindroute.models import utcnow
from mindroute.ui import budget_view, charts, viewer

if TYPE_CHECKING:  # the shape is services/budget_spend.py's; only read here
    from mindroute.services.budget_spend import BudgetStatus

CUSTOM = "custom"
# Option codes (kept in the URL and the widgets' state) -> their words, translated where shown (choice()).
PRESET_WORDS = {
    "24h": _l("Last 24 hours"),
    "7d": _l("Last 7 days"),
    "30d": _l("Last 30 days"),
    "90d": _l("Last 90 days"),
}
RANGE_CHOICES = {**{key: PRESET_WORDS.get(key, label) for key, label in PRESETS.items()}, CUSTOM: _l("Custom dates")}
SOURCE_CHOICES = {"": _l("All sources"), "api": _l("API"), "playground": _l("Playground")}
OUTCOME_CHOICES = {"": _l("All outcomes"), "success": _l("Success"), "error": _l("Error")}
REQUEST_TYPE_WORDS = {"chat": _l("chat"), "completion": _l("completion"), "embedding": _l("embedding")}
DEFAULT_RANGE = "7d"
# Not places a person lives in (as on the Account page).
NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})
ZONE_REGIONS = ("Africa/", "America/", "Antarctica/", "Asia/", "Atlantic/", "Australia/", "Europe/", "Indian/")
ZONE_REGIONS += ("Pacific/", "Etc/")


choice = i18n.choice  # the shared helpers, kept here under the names the usage page reads
labeller = i18n.labeller


def request_type_text(code: str, language: str | None = None) -> str:
    """A request type as read: "chat" ("채팅"); a type without words is shown as it is stored."""
    return choice(REQUEST_TYPE_WORDS, code, language)


@functools.lru_cache(maxsize=4096)
def _zone_place(name: str, language: str) -> str | None:
    """Where a zone is, in `language` ("대한민국 시간 (서울)"); None when the language has no name for it."""
    city = dates.get_timezone_location(name, locale=language, return_city=True)
    if city.isascii():  # no place of the language's own (UTC, Etc/GMT+5): the name says it all
        return None
    place = dates.get_timezone_location(name, locale=language)
    return place if city in place else f"{place} ({city})"


def zone_label(name: str, language: str | None = None) -> str:
    """A time zone as offered: its IANA name, and in a language other than English where it is
    ("Asia/Seoul · 대한민국 시간 (서울)"), so typing a city's name in the reader's language finds it too."""
    language = language or i18n.current()
    if language == i18n.DEFAULT_LANGUAGE:
        return name
    try:
        place = _zone_place(name, language)
    except (LookupError, ValueError):
        place = None
    return name if place is None else f"{name} · {place}"


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
    """The zones offered: the IANA zones of the world's regions and UTC (not the old aliases such as
    "US/Pacific" or "ROK", which name the same zones again), the browser's (or the Account's) first when
    it is not among them."""
    zones = sorted(name for name in available_timezones() - NOT_ZONES if name.startswith(ZONE_REGIONS))
    zones.append("UTC")
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

    language = i18n.current()  # bound into the format functions (see labeller)
    top = st.columns([2, 2, 2])
    preset = top[0].selectbox(
        _("Time range"), list(RANGE_CHOICES), format_func=labeller(RANGE_CHOICES), key=f"{prefix}_range"
    )
    days = None
    if preset == CUSTOM:
        days = top[1].date_input(_("Dates"), key=f"{prefix}_days", max_value=today)
    timezone = top[2].selectbox(
        _("Time zone"), zones, format_func=functools.partial(zone_label, language=language), key=f"{prefix}_tz"
    )
    row = st.columns(6 if is_admin else 5)
    every_provider, every_model, every_user = _("All providers"), _("All models"), _("All users")
    provider = row[0].selectbox(
        _("Provider"),
        ["", *providers],
        format_func=lambda p: providers.get(p, every_provider),
        key=f"{prefix}_provider",
    )
    model = row[1].selectbox(_("Model"), ["", *models], format_func=lambda m: m or every_model, key=f"{prefix}_model")
    source = row[2].selectbox(
        _("Source"), list(SOURCE_CHOICES), format_func=labeller(SOURCE_CHOICES), key=f"{prefix}_source"
    )
    outcome = row[3].selectbox(
        _("Outcome"), list(OUTCOME_CHOICES), format_func=labeller(OUTCOME_CHOICES), key=f"{prefix}_outcome"
    )
    kinds = row[4].multiselect(
        _("Request type"),
        request_types,
        format_func=labeller(REQUEST_TYPE_WORDS),
        key=f"{prefix}_request_type",
        placeholder=_("All request types"),
    )
    who = ""
    if is_admin:
        who = row[5].selectbox(
            _("User"), ["", *users], format_func=lambda u: users.get(u, every_user), key=f"{prefix}_user"
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
    names = ", ".join(unpriced[:shown])
    if count > shown:
        return _n(
            "Cost excludes {n} unpriced model: {names} and {more} more.",
            "Cost excludes {n} unpriced models: {names} and {more} more.",
            count,
            names=names,
            more=count - shown,
        )
    return _n(
        "Cost excludes {n} unpriced model: {names}.", "Cost excludes {n} unpriced models: {names}.", count, names=names
    )


# --- numbers ------------------------------------------------------------------------------------


def integer(value: float | None) -> str:
    return "—" if value is None or pd.isna(value) else i18n.number(int(value))


def milliseconds(value: float | None) -> str:
    return "—" if value is None or pd.isna(value) else _("{value} ms", value=i18n.number(value, digits=0))


def usd(value: float | None) -> str:
    """Dollars with cents from $1, four decimals from a cent, and two significant digits below that, so a
    $0.000008 call reads as $0.0000080, never $0.0000."""
    if value is None or pd.isna(value):
        return "—"
    if value == 0 or abs(value) >= 1:
        digits = 2
    elif abs(value) >= 0.01:
        digits = 4
    else:
        digits = 1 - math.floor(math.log10(abs(value)))
    # The digits fixed (trailing zeros kept, unlike i18n.money's): the precision is the point.
    pattern = "¤#,##0." + "0" * digits
    return numbers.format_currency(value, "USD", format=pattern, locale=i18n.current(), currency_digits=False)


def calls_text(count: int) -> str:
    return _n("{n} call", "{n} calls", count)


# --- tables: one set of headers and formats for the page and its CSV ---------------------------

# column -> (header, kind); kinds: text, int, ms, percent (a fraction shown as %), usd, time (a local bucket start).
COLUMNS: dict[str, tuple[i18n.Message, str]] = {
    "provider": (_l("Provider"), "text"),
    "model": (_l("Model"), "text"),
    "user": (_l("User"), "text"),
    "request_type": (_l("Request type"), "text"),
    "name": (_l("Name"), "text"),
    "group": (_l("Group"), "text"),
    "series": (_l("Series"), "text"),
    "status_label": (_l("Status code"), "text"),
    "status_class": (_l("Class"), "text"),
    "start": (_l("Start"), "time"),
    "requests": (_l("Requests"), "int"),
    "calls": (_l("Calls"), "int"),
    "errors": (_l("Errors"), "int"),
    "tokens": (_l("Total tokens"), "int"),
    "prompt_tokens": (_l("Input tokens"), "int"),
    "completion_tokens": (_l("Output tokens"), "int"),
    "error_rate": (_l("Error rate (%)"), "percent"),
    "share": (_l("Share (%)"), "percent"),
    "avg_latency_ms": (_l("Avg latency (ms)"), "ms"),
    "p95_ms": (_l("p95 latency (ms, approx.)"), "ms"),
    "p50": (_l("p50 latency (ms, approx.)"), "ms"),
    "p95": (_l("p95 latency (ms, approx.)"), "ms"),
    "p99": (_l("p99 latency (ms, approx.)"), "ms"),
    "latency_ms": (_l("Latency (ms)"), "ms"),
    "cost": (_l("Cost (USD)"), "usd"),
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
        message, kind = COLUMNS[column]
        header = (headers or {}).get(column) or i18n.text(message)
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
            name = request_type_text if column == "request_type" else charts.group_name
            out[header] = values.astype(object).where(values.notna(), "").map(name)
    return pd.DataFrame(out)


def column_config(shown: pd.DataFrame) -> dict[str, Any]:
    """Formats for st.dataframe of a table(): thousands separators, no raw floats."""
    kinds = {i18n.text(header): kind for header, kind in COLUMNS.values()}
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
        _("Download CSV"),
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
            metrics.append((_("tokens"), status.spent_tokens, rule.budget_tokens, status.forecast_tokens))
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
                    "resets": budget_view.resets_text(status.resets_at, rule.timezone) or _("never"),
                    "unpriced_calls": status.unpriced_calls if unit == "USD" else None,
                }
            )
    columns = ["budget", "unit", "period", "used", "limit", "used_percent", "forecast", "forecast_percent"]
    return pd.DataFrame(rows, columns=[*columns, "resets", "unpriced_calls"])


def _amount(unit: str, value: float | None) -> str:
    if value is None or pd.isna(value):
        return "—"
    return budget_view.money(value) if unit == "USD" else _("{value} tokens", value=i18n.number(int(value)))


def _percent_labels(values: pd.Series) -> list[str]:
    return ["" if value is None or pd.isna(value) else i18n.percent(value / 100) for value in values]


def budget_figure(frame: pd.DataFrame) -> go.Figure:
    """Each budget's use this period as a bar in percent of the budget, its forecast to the period's end beside
    it, and the budget itself as the horizontal line at 100 %: budgets in USD and in tokens on one scale."""
    names = [chart_text(f"{row.budget} ({row.unit})") for row in frame.itertuples()]
    used_text = [
        _("{used} of {limit}", used=_amount(r.unit, r.used), limit=_amount(r.unit, r.limit)) for r in frame.itertuples()
    ]
    forecast_text = [_("{amount} by the period's end", amount=_amount(r.unit, r.forecast)) for r in frame.itertuples()]
    mode = charts.theme()
    fig = go.Figure(
        [
            go.Bar(
                name=_("used this period"),
                marker_color=charts.PALETTES[mode][0],
                x=names,
                y=frame["used_percent"],
                hovertext=used_text,
                text=_percent_labels(frame["used_percent"]),
            ),
            go.Bar(
                name=_("forecast at this rate"),
                marker_color=charts.PALETTES[mode][1],
                x=names,
                y=frame["forecast_percent"],
                hovertext=forecast_text,
                text=_percent_labels(frame["forecast_percent"]),
            ),
        ]
    )
    fig.add_hline(
        y=100,
        line_dash="dash",
        line_color=charts.ERROR[mode],
        annotation_text=_("budget"),
        annotation_position="top left",
    )
    fig.update_layout(barmode="group")
    fig.update_traces(textposition="outside", cliponaxis=False)
    charts.layout(fig, x_title=None, y_title=_("% of the budget"))
    fig.update_yaxes(ticksuffix="%")
    return fig
