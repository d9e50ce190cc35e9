"""Log retention: delete the calls older than N days, after a confirmation, with a progress bar."""

from mindroute.ui.session import require_admin

user = require_admin()

import streamlit as st  # noqa: E402

from mindroute.i18n import _, _n  # noqa: E402
from mindroute.services import log_explorer  # noqa: E402
from mindroute.services.log_explorer import PrunePlan  # noqa: E402
from mindroute.ui import viewer  # noqa: E402
from mindroute.ui.render import form_errors  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402

FLASH = "retention_flash"


def calls(count: int) -> str:
    """ "1 call", "1,200 calls" ("호출 1,200건") in the reader's language."""
    return _n("{n} call", "{n} calls", count)


def days_ago(days: int) -> str:
    return _n("{n} day ago", "{n} days ago", days)


PLAN = "retention_plan"  # the reviewed plan waiting for confirmation
DEFAULT_DAYS = 90

st.title(_("Log retention"))
st.caption(
    _(
        "Delete the calls older than a number of days: their log rows, and the usage charts' totals for them. "
        "Tickets about a deleted call keep their text. Calls are deleted oldest first in short batches, so the "
        "app stays usable meanwhile. The same from a shell: `python -m mindroute prune-logs --older-than-days N`."
    )
)
if flash := st.session_state.pop(FLASH, None):
    st.success(flash)  # fixed texts and numbers only

oldest = log_explorer.oldest_call_at(engine(), user)
viewer.zone_note()
st.text(_("Oldest call in the logs: {when}", when=viewer.when(oldest)) if oldest else _("The logs hold no calls."))

with st.form("retention_review"):
    # No min_value: a bad number gets a message here rather than being silently changed.
    days = st.number_input(_("Delete calls older than (days)"), value=DEFAULT_DAYS, step=1, key="retention_days")
    days_err = st.empty()
    if st.form_submit_button(_("Review what would be deleted"), key="retention_review_submit"):
        st.session_state.pop(PLAN, None)
        with form_errors({"days": days_err}):
            st.session_state[PLAN] = log_explorer.plan_prune(engine(), user, days)

plan: PrunePlan | None = st.session_state.get(PLAN)
if plan is not None:
    if plan.calls == 0:
        st.info(
            _(
                "No calls were made before {when} ({ago}): nothing to delete.",
                when=viewer.when(plan.cutoff),
                ago=days_ago(plan.days),
            )
        )
        st.session_state.pop(PLAN, None)
        st.stop()
    st.warning(
        _(
            "This deletes {calls} made before {when} ({ago}), with their usage totals. It cannot be undone.",
            calls=calls(plan.calls),
            when=viewer.when(plan.cutoff),
            ago=days_ago(plan.days),
        )
    )
    confirm_col, cancel_col = st.columns([1, 4])
    confirmed = confirm_col.button(
        _("Delete {calls}", calls=calls(plan.calls)), type="primary", key="retention_confirm"
    )
    if cancel_col.button(_("Cancel"), key="retention_cancel"):
        st.session_state.pop(PLAN, None)
        st.rerun()
    if confirmed:
        st.caption(
            _(
                "Keep this page open until it finishes. Each batch is committed on its own: if the deletion is "
                "interrupted, what was deleted stays deleted, and running it again deletes the rest."
            )
        )
        bar = st.progress(0.0, text=_("Deleting {calls}…", calls=calls(plan.calls)))

        def show_progress(deleted: int, total: int) -> None:
            done = min(deleted / total, 1.0) if total else 1.0
            bar.progress(done, text=_("Deleted {deleted} of {calls}", deleted=deleted, calls=calls(total)))

        with form_errors({"days": days_err}):
            deleted = log_explorer.prune_calls(engine(), user, plan, on_progress=show_progress)
            st.session_state.pop(PLAN, None)
            st.session_state[FLASH] = _(
                "Deleted {calls} made before {when}.", calls=calls(deleted), when=viewer.when(plan.cutoff)
            )
            st.rerun()
