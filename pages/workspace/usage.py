"""Usage: tiles, charts and breakdowns of the calls; administrators see everyone's, users their own."""

from mindroute.ui.session import require_user

user = require_user()

import uuid  # noqa: E402
from datetime import datetime  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

from mindroute import i18n  # noqa: E402
from mindroute.i18n import _, _l  # noqa: E402
from mindroute.services import overview, usage  # noqa: E402
from mindroute.services.log_explorer import export_calls_csv  # noqa: E402
from mindroute.ui import background, charts  # noqa: E402
from mindroute.ui import usage_view as view  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402

is_admin = user.role == "admin"
ROLLUP_CHECK_TTL_S = 60
ROLLUP_CHECK_WAIT_S = 30.0  # at most, at the end of the run (the check takes 0.6 s at 1M on PostgreSQL)
# A page's reads are kept this long for this browser session only (never shared between users): a chart
# control, a return to an earlier filter or to the page reuses them; new calls show within this time.
# Only data is cached (numbers, frames and the analytics' English codes such as "other"): every word is
# translated after the cache, at each run, so a change of language never reads a cached rendering.
READ_TTL_S = 30
st.title(_("Usage"))


def viewer_of(user_id: str, role: str) -> Any:
    return SimpleNamespace(id=uuid.UUID(user_id), role=role)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False, scope="session")
def filter_choices(user_id: str, role: str) -> dict[str, list[Any]] | None:
    return usage.filter_choices(engine(), viewer_of(user_id, role))


@st.cache_data(ttl=READ_TTL_S, show_spinner=False, scope="session")
def page_data(
    user_id: str, role: str, view_key: tuple[tuple[str, str], ...], _flt: usage.UsageFilter
) -> usage.UsagePage:
    # Keyed by the view's query parameters (the filter itself moves with the clock at every run).
    return usage.usage_page(engine(), viewer_of(user_id, role), _flt)


options = filter_choices(str(user.id), user.role)

if options is None:
    st.info(
        _(
            "No calls yet. Usage appears here as soon as calls are made: try a model on the Playground page, "
            "call the API with an API key, or load demo data with `python -m mindroute seed-demo`."
        )
    )
    st.stop()


@st.cache_data(ttl=ROLLUP_CHECK_TTL_S, show_spinner=False)
def rollup_check(user_id: str, role: str, first_hour: datetime, last_hour: datetime) -> usage.RollupCheck:
    # The same for every filter of a range's whole hours: filter changes and reruns reuse it.
    viewer = SimpleNamespace(id=uuid.UUID(user_id), role=role)
    return usage.rollup_check(engine(), viewer, first_hour, last_hour)


flt, params = view.filter_widgets("usage", options, is_admin)
view.keep_in_url(params)

# The rollup check runs beside the page's own reads, in a thread of its own; its notice is written above the
# tiles at the end of the run (say_if_rollups_are_behind), so a check that has to be recomputed (0.6 s on
# PostgreSQL at 1M calls once its cache expired) costs the first view max(page, check), not their sum.
rollup_checked = background.start(rollup_check, str(user.id), user.role, *usage.whole_hours(flt.start, flt.end))
data = page_data(str(user.id), user.role, tuple(sorted(params.items())), flt)
zone = flt.timezone
mode = charts.theme()


def period_caption(granularity: str, everyone: bool, zone: str) -> str:
    """Whose calls, in which buckets, in which zone: one whole sentence per case (no words pieced together)."""
    same = _("Changes are against the previous period of the same length.")
    if everyone:
        buckets = {
            "hour": _("Everyone’s calls per hour, times in {zone}.", zone=zone),
            "week": _("Everyone’s calls per week, times in {zone}.", zone=zone),
            "month": _("Everyone’s calls per month, times in {zone}.", zone=zone),
        }
        default = _("Everyone’s calls per day, times in {zone}.", zone=zone)
    else:
        buckets = {
            "hour": _("Your calls per hour, times in {zone}.", zone=zone),
            "week": _("Your calls per week, times in {zone}.", zone=zone),
            "month": _("Your calls per month, times in {zone}.", zone=zone),
        }
        default = _("Your calls per day, times in {zone}.", zone=zone)
    return f"{buckets.get(granularity, default)} {same}"


st.caption(period_caption(data.granularity, is_admin, zone))


def rollups_behind(check: usage.RollupCheck) -> str | None:
    """What to say when rows were written behind the rollups' back (SQL by hand, a load from an older
    version), rather than show numbers that silently disagree with the Overview and the Logs; None when in step."""
    if check.in_step:
        return None
    logs, rolled = check.logs, check.rolled
    if check.logs > check.rolled:
        state = (
            _(
                "These numbers are behind the logs: in this period the logs hold {logs} calls, the usage "
                "rollups this page reads count {rolled}.",
                logs=logs,
                rolled=rolled,
            )
            if is_admin
            else _(
                "These numbers are behind the logs: in this period the logs hold {logs} of your calls, the "
                "usage rollups this page reads count {rolled}.",
                logs=logs,
                rolled=rolled,
            )
        )
    else:
        state = (
            _(
                "These numbers are out of step with the logs: in this period the logs hold {logs} calls, the "
                "usage rollups this page reads count {rolled}.",
                logs=logs,
                rolled=rolled,
            )
            if is_admin
            else _(
                "These numbers are out of step with the logs: in this period the logs hold {logs} of your "
                "calls, the usage rollups this page reads count {rolled}.",
                logs=logs,
                rolled=rolled,
            )
        )
    fix = (
        _("Run `python -m mindroute rebuild-rollups --only-changed` to recompute the days that differ from the logs.")
        if is_admin
        else _("Ask an administrator to rebuild them from the logs.")
    )
    return f"{state} {fix}"


rollup_notice = st.empty()


def say_if_rollups_are_behind() -> None:
    """The rollup check's warning, above the tiles, once the check started at the top of the run is in."""
    notice = rollups_behind(rollup_checked.result(timeout=ROLLUP_CHECK_WAIT_S))
    if notice:
        rollup_notice.warning(notice, icon=":material/warning:")


# --- tiles ------------------------------------------------------------------------------------

INVERSE = {"error_rate", "p50", "p95", "p99", "cost"}
# Short labels, the unit in the value only, three to a row so the longest value (a 9-digit token count,
# a 5-digit latency) fits at 1400 px: volume, tokens, latency.
TILE_ROWS = (
    ("requests", "error_rate", "cost"),
    ("tokens", "prompt_tokens", "completion_tokens"),
    ("p50", "p95", "p99"),
)
TILE_LABELS = {
    "requests": _l("Requests"),
    "error_rate": _l("Error rate"),
    "cost": _l("Estimated cost"),
    "tokens": _l("Total tokens"),
    "prompt_tokens": _l("Input tokens"),
    "completion_tokens": _l("Output tokens"),
    "p50": _l("p50 latency"),
    "p95": _l("p95 latency"),
    "p99": _l("p99 latency"),
}


def change_text(change: float) -> str:
    """A tile's change against the previous period, signed (st.metric colours the delta by its sign)."""
    shown = i18n.percent(change, digits=1)
    return shown if change < 0 else f"+{shown}"


def tile_value(key: str, value: float | None) -> str:
    if value is None:
        return "—"
    if key == "error_rate":
        return i18n.percent(value, digits=1)
    if key == "cost":
        return view.usd(value)
    if key in ("p50", "p95", "p99"):
        return view.milliseconds(value)
    return view.integer(value)


tiles = {tile.key: tile for tile in data.tiles}
cost_note = view.cost_note(data.unpriced_models)
for row in TILE_ROWS:
    for column, key in zip(st.columns(len(row)), row, strict=True):
        tile = tiles[key]
        helps = []
        if tile.approximate:
            helps.append(_("Approximate: from latency histograms, within 1% of the exact value."))
        if key == "cost" and cost_note:
            helps.append(cost_note)
        label = TILE_LABELS.get(key)
        column.metric(
            i18n.text(label) if label is not None else tile.label,
            tile_value(key, tile.value),
            delta=None if tile.change is None else change_text(tile.change),
            delta_color="inverse" if key in INVERSE else "normal",
            help=" ".join(helps) or None,
            border=True,
        )
if cost_note:
    st.caption(cost_note)


# --- spend against budget -----------------------------------------------------------------------

budgets = overview.budget_figures(engine(), user)
budget_table = view.budget_frame(budgets.mine + (budgets.providers or []))
if not budget_table.empty:
    st.subheader(_("Spend against budget"))
    st.caption(
        _(
            "Your budgets and the providers', each in its current period (whatever the time range above); the "
            "forecast is what the period's end will show at the rate so far."
        )
        if is_admin
        else _(
            "Your budgets, each in its current period (whatever the time range above); the forecast is what "
            "the period's end will show at the rate so far."
        )
    )
    st.plotly_chart(view.budget_figure(budget_table), key="usage_chart_budgets")
    st.dataframe(
        budget_table,
        hide_index=True,
        width="stretch",
        key="usage_budgets",
        column_config={
            "budget": _("Budget"),
            "unit": _("Unit"),
            "period": _("Period"),
            "used": st.column_config.NumberColumn(_("Used"), format="localized"),
            "limit": st.column_config.NumberColumn(_("Limit"), format="localized"),
            "used_percent": st.column_config.NumberColumn(_("Used (%)"), format="%.1f"),
            "forecast": st.column_config.NumberColumn(_("Forecast"), format="localized"),
            "forecast_percent": st.column_config.NumberColumn(_("Forecast (%)"), format="%.1f"),
            "resets": _("Resets"),
            "unpriced_calls": st.column_config.NumberColumn(_("Unpriced calls"), help=_("Not counted in USD")),
        },
    )

if data.empty:
    st.info(_("No calls match these filters in this period."))
    say_if_rollups_are_behind()
    st.stop()

# --- charts: each control reruns its own part only (st.fragment); tabs draw the open chart only -------


def chart(fig: go.Figure, frame: Any, name: str, headers: dict[str, str] | None = None) -> None:
    st.plotly_chart(fig, key=f"usage_chart_{name}", config={"displaylogo": False})
    view.download(view.table(frame, zone, headers), name, f"usage_csv_{name}")


@st.fragment
def tokens_over_time() -> None:
    st.subheader(_("Tokens over time"))
    stack_by = st.segmented_control(
        _("Stack by"),
        list(STACK_BY),
        default="provider",
        format_func=view.labeller(STACK_BY),
        key="usage_stack_by",
    )
    stack_by = stack_by or "provider"
    series = data.tokens_by_model if stack_by == "model" else data.tokens_by_provider
    fig, shown = charts.stacked_tokens(series, mode)
    chart(fig, shown, f"tokens_by_{stack_by}", {"group": view.choice(STACK_BY, stack_by)})


STACK_BY = {"provider": _l("Provider"), "model": _l("Model")}
# The tabs' labels are what st.tabs keeps as its state (usage_chart_tab): shown in the reader's language.
CHART_TABS = (_l("Requests and errors"), _l("Latency"), _l("Latency per model"), _l("Status codes"))


@st.fragment
def calls_charts() -> None:
    tabs = st.tabs([i18n.text(tab) for tab in CHART_TABS], key="usage_chart_tab", on_change="rerun")
    with tabs[0]:
        if tabs[0].open:
            chart(charts.requests_and_errors(data.requests, mode), data.requests, "requests")
    with tabs[1]:
        if tabs[1].open:
            st.caption(_("Percentiles per bucket, approximate (from latency histograms)."))
            chart(charts.latency_lines(data.latency, mode), data.latency, "latency")
    with tabs[2]:
        if tabs[2].open:
            fig, shown = charts.latency_distribution(data.latency_histogram, mode)
            chart(fig, shown, "latency_histogram")
            view.show_table(data.latency_by_model, zone, "usage_latency_by_model", "latency_by_model")
    with tabs[3]:
        if tabs[3].open:
            st.caption(
                _("Every status code by class; the scale is logarithmic so a few errors beside many successes show.")
            )
            chart(charts.status_classes(data.status_codes, mode), data.status_codes, "status_codes")


DIMENSIONS = {"user": _l("Users"), "model": _l("Models"), "provider": _l("Providers"), "api_key": _l("Keys")}
TOP_METRICS = {"tokens": _l("Tokens"), "cost": _l("Cost")}


def top_table(dimension: str, metric: str) -> Any:
    """A top table as read: the calls made in the Playground, which name no key, named in the reader's words."""
    table = data.top[f"{dimension}_by_{metric}"]
    if dimension == "api_key" and "name" in table:
        table = table.assign(name=table["name"].replace({"playground": _("Playground")}))
    return table


@st.fragment
def top_charts() -> None:
    st.subheader(_("Top"))
    dimensions = DIMENSIONS if is_admin else {k: v for k, v in DIMENSIONS.items() if k != "user"}
    metric = st.segmented_control(
        _("By"),
        list(TOP_METRICS),
        default="tokens",
        format_func=view.labeller(TOP_METRICS),
        key="usage_top_metric",
    )
    metric = metric or "tokens"
    tabs = st.tabs([i18n.text(label) for label in dimensions.values()], key="usage_top_tab", on_change="rerun")
    for tab, dimension in zip(tabs, dimensions, strict=True):
        with tab:
            if tab.open:
                table = top_table(dimension, metric)
                chart(charts.top_bars(table, metric, mode), table, f"top_{dimension}_by_{metric}")


BREAKDOWNS = {"provider_model": _l("Provider × model"), "user": _l("User"), "request_type": _l("Request type")}


@st.fragment
def breakdown() -> None:
    st.subheader(_("Breakdown"))
    breakdowns = BREAKDOWNS if is_admin else {k: v for k, v in BREAKDOWNS.items() if k != "user"}
    by = st.radio(
        _("Rows"),
        list(breakdowns),
        format_func=view.labeller(breakdowns),
        horizontal=True,
        key="usage_breakdown_by",
    )
    tables = {"user": data.breakdown_user, "request_type": data.breakdown_request_type}
    view.show_table(
        tables.get(by or "provider_model", data.breakdown_provider_model), zone, "usage_breakdown", f"breakdown_{by}"
    )


tokens_over_time()
calls_charts()
top_charts()
breakdown()

st.subheader(_("Raw calls"))
st.caption(
    _(
        "Every call matching the filters, newest first, with times in ISO-8601 with their offset; the columns "
        "keep their English names, for scripts."
    )
)
raw_engine, raw_filter = engine(), flt
st.download_button(
    _("Download raw calls (CSV)"),
    lambda: "".join(export_calls_csv(raw_engine, user, raw_filter)).encode("utf-8"),
    file_name="calls.csv",
    mime="text/csv",
    key="usage_raw_export",
    on_click="ignore",
)

say_if_rollups_are_behind()
