"""Overview: your calls today and this week; for administrators, the organisation's too."""

from mindroute.ui.session import require_user

user = require_user()

from datetime import timedelta  # noqa: E402

import streamlit as st  # noqa: E402

from mindroute.db import transaction  # noqa: E402
from mindroute.models import utcnow  # noqa: E402
from mindroute.services import overview, tickets  # noqa: E402
from mindroute.ui.format import tokens  # noqa: E402
from mindroute.ui.render import escape_markdown  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402

st.title("Overview")
zone = overview.viewer_zone(st.context.timezone)
today, week = overview.start_of_viewer_day(zone), overview.start_of_viewer_day(zone, days_back=6)

with transaction(engine()) as session:
    mine = (overview.usage_since(session, today, user.id), overview.usage_since(session, week, user.id))
    org = (
        (overview.usage_since(session, today, None), overview.usage_since(session, week, None))
        if user.role == "admin"
        else None
    )
    open_tickets = tickets.open_count(session) if user.role == "admin" else None
    hour_ago = utcnow() - timedelta(hours=1)
    failing = overview.providers_with_recent_errors(session, hour_ago) if user.role == "admin" else []
    calls_last_hour = overview.usage_since(session, hour_ago, None).requests if user.role == "admin" else 0


def usage_row(title: str, day: overview.UsageSummary, seven: overview.UsageSummary) -> None:
    st.subheader(title)
    cols = st.columns(4)
    cols[0].metric("Requests today", f"{day.requests:,}")
    cols[1].metric("Tokens today", tokens(day.tokens))
    cols[2].metric("Requests, last 7 days", f"{seven.requests:,}")
    cols[3].metric("Tokens, last 7 days", tokens(seven.tokens))


usage_row("Your usage", *mine)
if org is not None:
    usage_row("Whole organisation", *org)
    st.metric("Open support tickets", open_tickets)
    st.subheader("Providers with errors in the last hour")
    if failing:
        st.dataframe(
            [{"Provider": p.name, "Errors": p.errors, "Calls": p.requests} for p in failing],
            hide_index=True,
        )
    elif calls_last_hour == 0:
        st.text("No calls in the last hour.")
    else:
        st.text(f"None: all {calls_last_hour:,} call(s) in the last hour succeeded.")
st.caption(escape_markdown(f"Days start at midnight in {zone.key}."))
