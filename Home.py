"""MindRoute's entry script and router: resolve who is signed in, then offer only their pages."""

from pathlib import Path

import streamlit as st

# The icon file is served by the app itself (a ":material/…:" icon is fetched from Google's font CDN).
st.set_page_config(page_title="MindRoute", page_icon=str(Path(__file__).parent / "static/favicon.png"), layout="wide")

from mindroute.services import tickets  # noqa: E402 - page config comes first
from mindroute.ui import navigation, shell, signin  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402
from mindroute.ui.session import resolve_current_user  # noqa: E402

engine()
user = resolve_current_user()
if user is None:
    # Signed out: every URL runs the sign-in view (hidden navigation), so no page can be reached by URL or
    # switch_page, and a link to a page keeps its path and query through signing in.
    navigation.signed_out_navigation(signin.signed_out_view).run()
else:
    open_tickets = None
    if user.role == "admin":  # the ticket queue's title carries the count waiting for an answer
        open_tickets = tickets.open_count(engine())
    page = navigation.build_navigation(user, open_tickets=open_tickets, requested=navigation.requested_url_path())
    shell.sidebar(user)
    page.run()
