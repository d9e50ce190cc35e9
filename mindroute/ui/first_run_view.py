"""The first-run checklist drawn for administrators, each step linking to its page, until every step is done."""

from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from mindroute.config import PROJECT_ROOT
from mindroute.models import User
from mindroute.services import first_run


def render(engine: Engine, user: User) -> None:
    """Draw the checklist for an admin while any step is left; nothing for other roles or once all are done."""
    if user.role != "admin":
        return
    checklist = first_run.steps(engine)
    if first_run.all_done(checklist):
        return
    left = sum(not step.done for step in checklist)
    with st.container(border=True, key="first_run"):
        st.subheader("Getting started")
        st.caption(f"{len(checklist) - left} of {len(checklist)} steps done.")
        for number, step in enumerate(checklist, start=1):
            mark = ":material/check_circle:" if step.done else ":material/radio_button_unchecked:"
            label = f"{number}. {step.title}" + (" (done)" if step.done else "")
            # An absolute path: page_link resolves a relative one against the entry script's folder.
            st.page_link(str(PROJECT_ROOT / step.page), label=label, icon=mark, help=step.detail)
