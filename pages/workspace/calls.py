"""Calls: your own calls, newest first, with the usage filters and a search of error messages; one call's detail."""

from mindroute.ui.session import require_user

user = require_user()

import streamlit as st  # noqa: E402

from mindroute.i18n import _  # noqa: E402
from mindroute.ui.calls_view import call_explorer  # noqa: E402

st.title(_("Calls"))
st.caption(
    _(
        "Every call you made, from the Playground and with your API keys. Click a call to see what was sent "
        "and answered, or to open a support ticket about it."
    )
)
call_explorer(user, "calls")
