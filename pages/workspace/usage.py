"""Usage: tiles, charts and breakdowns of the calls; administrators see everyone's, users their own."""

from mindroute.ui.session import require_user

user = require_user()

import uuid  # noqa: E402
from datetime import datetime  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pandas as pd  # noqa: E402
import plotly.express as px  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

from mindroute.services import overview, usage  # noqa: E402
from mindroute.services.log_explorer import export_calls_csv  # noqa: E402
from mindroute.ui import usage_view as view  # noqa: E402
from mindroute.ui.format import tokens  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402

is_admin = user.role == "admin"
ROLLUP_CHECK_TTL_S = 60
st.title("Usage")

options = usage.filter_choices(engine(), user)

if options is None:
    st.info(
        "No calls yet. Usage appears here as soon as calls are made: try a model on the Playground page, "
        "call the API with an API key, or load demo data with `python -m mindroute seed-demo`."
    )
    st.stop()

flt, params = view.filter_widgets("usage", options, is_admin)
view.keep_in_url(params)

data = usage.usage_page(engine(), user, flt)

st.caption(
    f"{'Everyone' if is_admin else 'Your'} calls, {data.granularity}ly buckets in {flt.timezone}; "
    "changes are against the previous period of the same length."
)
rollup_notice = st.empty()


@st.cache_data(ttl=ROLLUP_CHECK_TTL_S, show_spinner=False)
def rollup_check(user_id: str, role: str, first_hour: datetime, last_hour: datetime) -> usage.RollupCheck:
    # The same for every filter of a range's whole hours: filter changes and reruns reuse it.
    viewer = SimpleNamespace(id=uuid.UUID(user_id), role=role)
    return usage.rollup_check(engine(), viewer, first_hour, last_hour)


def say_if_rollups_are_behind() -> None:
    """Rows written behind the rollups' back (SQL by hand, a load from an older version): say so,
    above the tiles, rather than show numbers that silently disagree with the Overview and the Logs.
    Checked after the page is drawn, so the check never holds the numbers up."""
    check = rollup_check(str(user.id), user.role, *usage.whole_hours(flt.start, flt.end))
    if check.in_step:
        return
    state = "behind" if check.logs > check.rolled else "out of step with"
    fix = (
        "Run `python -m mindroute rebuild-rollups --only-changed` to recompute the days that differ from the logs."
        if is_admin
        else "Ask an administrator to rebuild them from the logs."
    )
    rollup_notice.warning(
        f"These numbers are {state} the logs: in this period the logs hold {check.logs:,} "
        f"{'calls' if is_admin else 'of your calls'}, the usage rollups this page reads count {check.rolled:,}. {fix}",
        icon=":material/warning:",
    )


# --- tiles ------------------------------------------------------------------------------------

INVERSE = {"error_rate", "p50", "p95", "p99", "cost"}


def tile_value(key: str, value: float | None) -> str:
    if value is None:
        return "—"
    if key == "requests":
        return f"{int(value):,}"
    if key in ("tokens", "prompt_tokens", "completion_tokens"):
        return tokens(int(value))
    if key == "error_rate":
        return f"{value:.1%}"
    if key == "cost":
        return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"
    return f"{value:,.0f} ms"


for start in range(0, len(data.tiles), 5):
    columns = st.columns(5)
    for column, tile in zip(columns, data.tiles[start : start + 5], strict=False):
        change = tile.change
        column.metric(
            tile.label,
            tile_value(tile.key, tile.value),
            delta=None if change is None else f"{change:+.1%}",
            delta_color="inverse" if tile.key in INVERSE else "normal",
            help="Approximate: from latency histograms, within 1% of the exact value." if tile.approximate else None,
            border=True,
        )
if note := view.cost_note(data.unpriced_models):
    st.caption(note)


# --- spend against budget -----------------------------------------------------------------------

budgets = overview.budget_figures(engine(), user)
budget_table = view.budget_frame(budgets.mine + (budgets.providers or []))
if not budget_table.empty:
    st.subheader("Spend against budget")
    whose = "Your budgets and the providers'" if is_admin else "Your budgets"
    st.caption(
        f"{whose}, each in its current period (whatever the time range above); the forecast is what the "
        "period's end will show at the rate so far."
    )
    st.plotly_chart(view.budget_figure(budget_table), key="usage_chart_budgets")
    st.dataframe(
        budget_table,
        hide_index=True,
        width="stretch",
        key="usage_budgets",
        column_config={
            "used_percent": st.column_config.NumberColumn("used (%)", format="%.1f"),
            "forecast_percent": st.column_config.NumberColumn("forecast (%)", format="%.1f"),
            "unpriced_calls": st.column_config.NumberColumn("unpriced calls", help="Not counted in USD"),
        },
    )

if data.empty:
    st.info("No calls match these filters in this period.")
    say_if_rollups_are_behind()
    st.stop()

# --- charts -----------------------------------------------------------------------------------


def chart(fig: go.Figure, frame: pd.DataFrame, name: str) -> None:
    st.plotly_chart(fig, key=f"usage_chart_{name}")
    view.download(frame, name, f"usage_csv_{name}")


st.subheader("Tokens over time")
stack_by = st.segmented_control(
    "Stack by", ["provider", "model"], default="provider", format_func=str.capitalize, key="usage_stack_by"
)
series = data.tokens_by_model if stack_by == "model" else data.tokens_by_provider
fig = px.bar(series.assign(group=series["group"].map(view.chart_text)), x="start", y="tokens", color="group")
chart(view.style(fig, y_title="tokens"), series, f"tokens_by_{stack_by or 'provider'}")

left, right = st.columns(2)
with left:
    st.subheader("Requests and errors")
    long = data.requests.melt(id_vars="start", value_vars=["requests", "errors"], var_name="series", value_name="calls")
    chart(view.style(px.line(long, x="start", y="calls", color="series", markers=True)), data.requests, "requests")
with right:
    st.subheader("Latency percentiles (approx.)")
    long = data.latency.melt(id_vars="start", value_vars=["p50", "p95", "p99"], var_name="series", value_name="ms")
    chart(view.style(px.line(long, x="start", y="ms", color="series", markers=True)), data.latency, "latency")

st.subheader("Latency distribution per model (approx.)")
histogram = data.latency_histogram.assign(model=data.latency_histogram["model"].map(view.chart_text))
fig = px.bar(histogram, x="latency_ms", y="calls", color="model", barmode="overlay", log_x=True, opacity=0.7)
chart(view.style(fig, x_title="latency (ms)"), data.latency_histogram, "latency_histogram")
st.dataframe(data.latency_by_model, hide_index=True, width="stretch", key="usage_latency_by_model")
view.download(data.latency_by_model, "latency_by_model", "usage_csv_latency_by_model")

st.subheader("Top")
dimensions = {"user": "Users", "model": "Models", "provider": "Providers", "api_key": "Keys"}
if not is_admin:
    dimensions.pop("user")
metric = st.segmented_control(
    "By", ["tokens", "cost"], default="tokens", format_func=str.capitalize, key="usage_top_metric"
)
metric = metric or "tokens"
for tab, dimension in zip(st.tabs(list(dimensions.values())), dimensions, strict=True):
    with tab:
        table = data.top[f"{dimension}_by_{metric}"]
        shown = table.assign(name=table["name"].map(view.chart_text)).iloc[::-1]
        fig = px.bar(shown, x=metric, y="name", orientation="h")
        chart(view.style(fig, y_title=None), table, f"top_{dimension}_by_{metric}")

st.subheader("Status codes")
codes = data.status_codes.assign(status=data.status_codes["status"].astype(object).fillna("unknown").astype(str))
chart(view.style(px.bar(codes, x="status", y="requests", color="status")), data.status_codes, "status_codes")

# --- breakdown and export ---------------------------------------------------------------------

st.subheader("Breakdown")
breakdowns = {"provider_model": "Provider × model", "user": "User", "request_type": "Request type"}
if not is_admin:
    breakdowns.pop("user")
by = st.radio("Rows", list(breakdowns), format_func=breakdowns.get, horizontal=True, key="usage_breakdown_by")
tables = {"user": data.breakdown_user, "request_type": data.breakdown_request_type}
table = tables.get(by or "provider_model", data.breakdown_provider_model)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    key="usage_breakdown",
    column_config={
        "error_rate": st.column_config.NumberColumn("error rate", format="percent"),
        "avg_latency_ms": st.column_config.NumberColumn("avg latency (ms)", format="%.0f"),
        "p95_ms": st.column_config.NumberColumn("p95 (ms, approx.)", format="%.0f"),
        "cost": st.column_config.NumberColumn("cost (USD)", format="%.4f"),
    },
)
view.download(table, f"breakdown_{by}", "usage_csv_breakdown")

st.subheader("Raw calls")
st.caption(
    "Every call matching the filters, newest first. The rows are read from the database a page at a time "
    "when you click; Streamlit 1.67 sends a download as one file, so the CSV is assembled in memory."
)
raw_engine, raw_filter = engine(), flt
st.download_button(
    "Download raw calls (CSV)",
    lambda: "".join(export_calls_csv(raw_engine, user, raw_filter)).encode("utf-8"),
    file_name="calls.csv",
    mime="text/csv",
    key="usage_raw_export",
    on_click="ignore",
)

say_if_rollups_are_behind()
