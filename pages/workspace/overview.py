"""Overview: your calls and budgets, the last 7 days and where to go next; for administrators also the
organisation's calls, alerts and budgets."""

from mindroute.ui.session import require_user

user = require_user()

import streamlit as st  # noqa: E402

from mindroute.services import overview  # noqa: E402
from mindroute.ui import charts, first_run_view, viewer  # noqa: E402
from mindroute.ui.budget_view import render_alerts, render_statuses  # noqa: E402
from mindroute.ui.format import tokens  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402
from mindroute.ui.usage_view import calls_text  # noqa: E402

is_admin = user.role == "admin"
st.title("Overview")
# For administrators, the first-run checklist comes first, until every step is done.
first_run = st.container(key="overview_first_run")
if is_admin:
    with first_run:
        first_run_view.render(engine(), user)

zone = viewer.zone()
today, week = overview.start_of_viewer_day(zone), overview.start_of_viewer_day(zone, days_back=6)
figures = overview.overview_figures(engine(), user, today, week)
org = figures.organisation
budgets = overview.budget_figures(engine(), user)

LINKS = [
    ("pages/workspace/usage.py", "Usage", ":material/monitoring:"),
    ("pages/workspace/playground.py", "Playground", ":material/chat:"),
    ("pages/workspace/api_keys.py", "API keys", ":material/key:"),
    ("pages/workspace/api_guide.py", "API guide", ":material/code:"),
]
if is_admin:
    LINKS += [
        ("pages/admin/providers.py", "Providers", ":material/hub:"),
        ("pages/admin/logs.py", "Logs", ":material/receipt_long:"),
    ]
else:
    LINKS.append(("pages/workspace/calls.py", "Calls", ":material/list_alt:"))
for column, (page, label, icon) in zip(st.columns(len(LINKS)), LINKS, strict=True):
    column.page_link(page, label=label, icon=icon)


def usage_row(title: str, day: overview.UsageSummary, seven: overview.UsageSummary) -> None:
    st.subheader(title)
    cols = st.columns(4)
    cols[0].metric("Requests today", f"{day.requests:,}", border=True)
    cols[1].metric("Tokens today", tokens(day.tokens), border=True)
    cols[2].metric("Requests, last 7 days", f"{seven.requests:,}", border=True)
    cols[3].metric("Tokens, last 7 days", tokens(seven.tokens), border=True)


usage_row("Your usage", figures.mine_today, figures.mine_week)
if org is not None:
    usage_row("Whole organisation", org.today, org.week)

st.subheader("Last 7 days")
days = overview.last_days(engine(), user, zone.key)
if int(days["requests"].sum()):
    st.caption(("Everyone’s" if is_admin else "Your") + f" requests per day; days start at midnight in {zone.key}.")
    st.plotly_chart(
        charts.daily_requests(days, charts.theme()), key="overview_chart_days", config={"displaylogo": False}
    )
    st.page_link("pages/workspace/usage.py", label="More on the Usage page", icon=":material/arrow_forward:")
else:
    st.info("No calls in the last 7 days. Try a model on the Playground, or call the API with an API key.")

if budgets.mine:
    st.subheader("Your budgets")
    render_statuses(budgets.mine)
if org is not None:
    st.metric("Open support tickets", org.open_tickets)
    st.subheader("Providers with errors in the last hour")
    if org.failing:
        st.dataframe(
            [{"Provider": p.name, "Errors": p.errors, "Calls": p.requests} for p in org.failing],
            hide_index=True,
        )
    elif org.calls_last_hour == 0:
        st.text("No calls in the last hour.")
    elif org.calls_last_hour == 1:
        st.text("None: the 1 call in the last hour succeeded.")
    else:
        st.text(f"None: all {calls_text(org.calls_last_hour)} in the last hour succeeded.")
    st.subheader("Budget alerts")
    render_alerts(budgets.alerts or [])
    if budgets.providers:
        st.subheader("Provider budgets")
        render_statuses(budgets.providers)
viewer.zone_note()
