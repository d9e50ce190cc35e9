"""Limits and budgets: the default rule for every user, and every rule there is, its target named."""

from mindroute.ui.session import require_admin

user = require_admin()

import streamlit as st  # noqa: E402

from mindroute.i18n import _  # noqa: E402
from mindroute.services.limit_rules import DEFAULT_TARGET  # noqa: E402
from mindroute.ui import limits_view as view  # noqa: E402
from mindroute.ui import viewer  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402

st.title(_("Limits and budgets"))
st.caption(
    _(
        "A call must pass every rule it meets: its user's rule (or, without one, the default), its API key's "
        "rules (an administrator's and its owner's) and its provider's rule. So the tightest wins, and a refusal "
        "names the rule and when it resets. Set a user's or a key's rule on Users and permissions, a provider's "
        "on Providers."
    )
)

view.limit_editor(
    user,
    DEFAULT_TARGET,
    key="default_limits",
    title=_("Default for every user"),
    help_text=_("Applies to each user without a rule of their own, counted for each user apart."),
)

st.header(_("Every rule"))
rows = view.rule_rows(engine(), user)
if rows:
    viewer.zone_note()
    st.dataframe(view.rule_table(rows), hide_index=True, width="stretch", key="limits_table")
else:
    st.info(_("No limits are set: calls are limited only by each provider's tokens per call."))
