"""Logs: every call, newest first, with the usage filters and a search of error messages; one call's detail."""

from mindroute.ui.session import require_admin

user = require_admin()

import streamlit as st  # noqa: E402

from mindroute.i18n import _  # noqa: E402
from mindroute.ui.calls_view import call_explorer  # noqa: E402

st.title(_("Logs"))
st.page_link("pages/admin/retention.py", label=_("Delete old calls (log retention)"), icon=":material/delete_sweep:")
call_explorer(user, "logs")
