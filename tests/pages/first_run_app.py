"""A one-page app around the first-run checklist for AppTest: the pages it links to registered, none run."""

import streamlit as st
from sqlalchemy import select

from mindroute.config import PROJECT_ROOT
from mindroute.db import transaction
from mindroute.models import User
from mindroute.services import first_run
from mindroute.ui import first_run_view
from mindroute.ui.runtime import engine


def checklist() -> None:
    with transaction(engine()) as session:
        user = session.scalar(select(User).where(User.email == st.session_state["first_run_email"]))
        session.expunge(user)
    first_run_view.render(engine(), user)
    st.text("checklist drawn")


linked = sorted({first_run.PROVIDERS_PAGE, first_run.USERS_PAGE, first_run.API_KEYS_PAGE, first_run.PLAYGROUND_PAGE})
pages = [st.Page(checklist, title="Checklist", default=True)] + [st.Page(str(PROJECT_ROOT / p)) for p in linked]
st.navigation(pages, position="hidden").run()
