"""Overview: your calls and budgets; for administrators also the organisation's calls, alerts and budgets."""

from mindroute.ui.session import require_user

user = require_user()

import streamlit as st  # noqa: E402

from mindroute.services import overview  # noqa: E402
from mindroute.ui.budget_view import render_alerts, render_statuses  # noqa: E402
from mindroute.ui.format import tokens  # noqa: E402
from mindroute.ui.render import escape_markdown  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402

st.title("Overview")
zone = overview.viewer_zone(st.context.timezone)
today, week = overview.start_of_viewer_day(zone), overview.start_of_viewer_day(zone, days_back=6)

figures = overview.overview_figures(engine(), user, today, week)
org = figures.organisation
budgets = overview.budget_figures(engine(), user)


def usage_row(title: str, day: overview.UsageSummary, seven: overview.UsageSummary) -> None:
    st.subheader(title)
    cols = st.columns(4)
    cols[0].metric("Requests today", f"{day.requests:,}")
    cols[1].metric("Tokens today", tokens(day.tokens))
    cols[2].metric("Requests, last 7 days", f"{seven.requests:,}")
    cols[3].metric("Tokens, last 7 days", tokens(seven.tokens))


usage_row("Your usage", figures.mine_today, figures.mine_week)
if budgets.mine:
    st.subheader("Your budgets")
    render_statuses(budgets.mine)
if org is not None:
    usage_row("Whole organisation", org.today, org.week)
    st.metric("Open support tickets", org.open_tickets)
    st.subheader("Providers with errors in the last hour")
    if org.failing:
        st.dataframe(
            [{"Provider": p.name, "Errors": p.errors, "Calls": p.requests} for p in org.failing],
            hide_index=True,
        )
    elif org.calls_last_hour == 0:
        st.text("No calls in the last hour.")
    else:
        st.text(f"None: all {org.calls_last_hour:,} call(s) in the last hour succeeded.")
    st.subheader("Budget alerts")
    render_alerts(budgets.alerts or [])
    if budgets.providers:
        st.subheader("Provider budgets")
        render_statuses(budgets.providers)
st.caption(escape_markdown(f"Days start at midnight in {zone.key}."))
