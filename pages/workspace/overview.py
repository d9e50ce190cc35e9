"""Overview: your calls and budgets, the last 7 days and where to go next; for administrators also the
organisation's calls, alerts and budgets."""

from mindroute.ui.session import require_user

user = require_user()

import streamlit as st  # noqa: E402

from mindroute import i18n  # noqa: E402
from mindroute.i18n import _, _n  # noqa: E402
from mindroute.services import overview  # noqa: E402
from mindroute.ui import charts, first_run_view, viewer  # noqa: E402
from mindroute.ui.budget_view import render_alerts, render_statuses  # noqa: E402
from mindroute.ui.format import tokens  # noqa: E402
from mindroute.ui.navigation import PAGES  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402

TITLES = {spec.path: spec.title for spec in PAGES}  # the pages' names, as the navigation shows them

is_admin = user.role == "admin"
st.title(i18n.text(TITLES["pages/workspace/overview.py"]))
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
    ("pages/workspace/usage.py", ":material/monitoring:"),
    ("pages/workspace/playground.py", ":material/chat:"),
    ("pages/workspace/api_keys.py", ":material/key:"),
    ("pages/workspace/api_guide.py", ":material/code:"),
]
if is_admin:
    LINKS += [("pages/admin/providers.py", ":material/hub:"), ("pages/admin/logs.py", ":material/receipt_long:")]
else:
    LINKS.append(("pages/workspace/calls.py", ":material/list_alt:"))
for column, (page, icon) in zip(st.columns(len(LINKS)), LINKS, strict=True):
    column.page_link(page, label=i18n.text(TITLES[page]), icon=icon)


def usage_row(title: str, day: overview.UsageSummary, seven: overview.UsageSummary) -> None:
    st.subheader(title)
    cols = st.columns(4)
    cols[0].metric(_("Requests today"), i18n.number(day.requests), border=True)
    cols[1].metric(_("Tokens today"), tokens(day.tokens), border=True)
    cols[2].metric(_("Requests, last 7 days"), i18n.number(seven.requests), border=True)
    cols[3].metric(_("Tokens, last 7 days"), tokens(seven.tokens), border=True)


usage_row(_("Your usage"), figures.mine_today, figures.mine_week)
if org is not None:
    usage_row(_("Whole organisation"), org.today, org.week)

st.subheader(_("Last 7 days"))
days = overview.last_days(engine(), user, zone.key)
if int(days["requests"].sum()):
    st.caption(
        _("Everyone’s requests per day; days start at midnight in {zone}.", zone=zone.key)
        if is_admin
        else _("Your requests per day; days start at midnight in {zone}.", zone=zone.key)
    )
    st.plotly_chart(
        charts.daily_requests(days, charts.theme()), key="overview_chart_days", config={"displaylogo": False}
    )
    st.page_link("pages/workspace/usage.py", label=_("More on the Usage page"), icon=":material/arrow_forward:")
else:
    st.info(_("No calls in the last 7 days. Try a model on the Playground, or call the API with an API key."))

if budgets.mine:
    st.subheader(_("Your budgets"))
    render_statuses(budgets.mine)
if org is not None:
    st.metric(_("Open support tickets"), i18n.number(org.open_tickets))
    st.subheader(_("Providers with errors in the last hour"))
    if org.failing:
        st.dataframe(
            [{_("Provider"): p.name, _("Errors"): p.errors, _("Calls"): p.requests} for p in org.failing],
            hide_index=True,
        )
    elif org.calls_last_hour == 0:
        st.text(_("No calls in the last hour."))
    else:
        st.text(
            _n(
                "None: the {n} call in the last hour succeeded.",
                "None: all {n} calls in the last hour succeeded.",
                org.calls_last_hour,
            )
        )
    st.subheader(_("Budget alerts"))
    render_alerts(budgets.alerts or [])
    if budgets.providers:
        st.subheader(_("Provider budgets"))
        render_statuses(budgets.providers)
viewer.zone_note()
