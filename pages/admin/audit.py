"""Audit: every admin action and security event, filtered by actor, action, target and time, with a CSV."""

from mindroute.ui.session import require_admin

user = require_admin()

import streamlit as st  # noqa: E402

from mindroute.i18n import _  # noqa: E402
from mindroute.ui.audit_view import audit_explorer  # noqa: E402

st.title(_("Audit"))
st.caption(
    _(
        "One row per administrator action and security event, written with the change itself. Each row carries "
        "a hash of the one before: `python -m mindroute audit verify` names the first row that was altered."
    )
)
audit_explorer(user)
