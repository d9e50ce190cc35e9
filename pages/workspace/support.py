"""Support: open a ticket (about one of your calls, if you like), read the answers, reopen it if they did not help."""

from mindroute.ui.session import require_user

user = require_user()

import uuid  # noqa: E402

import streamlit as st  # noqa: E402

from mindroute.db import transaction  # noqa: E402
from mindroute.services import tickets  # noqa: E402
from mindroute.ui import tickets_view as view  # noqa: E402
from mindroute.ui.calls_view import SUPPORT_CALL_PARAM  # noqa: E402
from mindroute.ui.render import form_errors  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402
from mindroute.validation import TICKET_SUBJECT_MAX  # noqa: E402

FLASH = "support_flash"
# The call a link (`?call=<log id>`, from a call's detail) chose for a new ticket, kept until the ticket is opened.
LINKED_CALL = "support_linked_call"
NEW_TICKET_KEYS = ("support_subject", "support_message", "support_call", LINKED_CALL)

st.title("Support")
if flash := st.session_state.pop(FLASH, None):
    st.success(flash)  # fixed texts only: never a subject (Markdown)


def done(message: str) -> None:
    st.session_state[FLASH] = message
    st.rerun()


# Every read of this run in one transaction: the calls a new ticket may refer to, one's tickets,
# and the selected one with its history.
requested_call = st.query_params.get(SUPPORT_CALL_PARAM)
linked_call_refused = False
with transaction(engine()) as session:
    if requested_call is not None:
        # Once: the link chose the call; from here on the picker holds the choice.
        del st.query_params[SUPPORT_CALL_PARAM]
        found = tickets.my_call(session, user, requested_call)
        linked_call_refused = found is None
        if found is not None:
            st.session_state[LINKED_CALL] = found
            st.session_state["support_call"] = str(found.id)
    calls = tickets.my_recent_calls(session, user)
    mine = tickets.list_mine(session, user)
    by_id = {str(t.id): t for t in mine}
    if (opened := st.session_state.pop("support_select_next", None)) in by_id:
        st.session_state["support_selected"] = opened
    if by_id and st.session_state.get("support_selected") not in by_id:
        st.session_state["support_selected"] = next(iter(by_id))
    detail = tickets.get_ticket(session, user, uuid.UUID(st.session_state["support_selected"])) if by_id else None


# --- a new ticket ---------------------------------------------------------------------------

calls_by_id = {str(c.id): c for c in calls}
if (linked := st.session_state.get(LINKED_CALL)) is not None:
    calls_by_id.setdefault(str(linked.id), linked)  # older than the recent calls the picker lists
if st.session_state.get("support_call") not in (None, *calls_by_id):
    st.session_state.pop("support_call")
with (
    st.expander("Open a ticket", expanded=not mine or linked is not None or linked_call_refused),
    st.form("support_new"),
):
    # No max_chars: Streamlit would cut a longer subject silently; the service refuses it with a message.
    subject = st.text_input("Subject", help=f"One line, up to {TICKET_SUBJECT_MAX} characters", key="support_subject")
    subject_err = st.empty()
    message = st.text_area(
        "Message", max_chars=tickets.MESSAGE_MAX_CHARS, height=160, key="support_message", help="What happened?"
    )
    message_err = st.empty()
    call = st.selectbox(
        "About one of your recent calls (optional)",
        [None, *calls_by_id],
        format_func=lambda i: "No particular call" if i is None else calls_by_id[i].label,
        key="support_call",
    )
    call_err = st.empty()
    if linked_call_refused:
        call_err.warning("The linked call is not one of your calls (or is no longer in the logs): choose one here.")
    if st.form_submit_button("Open ticket", type="primary", key="support_submit"):
        with form_errors({"subject": subject_err, "message": message_err, "log_id": call_err}):
            with transaction(engine()) as session:
                ticket = tickets.open_ticket(
                    session, user, subject, message, uuid.UUID(call) if call is not None else None
                )
            for key in NEW_TICKET_KEYS:
                st.session_state.pop(key, None)
            st.session_state["support_select_next"] = str(ticket.id)
            done("Ticket opened. Support will answer here.")


# --- one's tickets --------------------------------------------------------------------------

st.header("Your tickets")
if detail is None:
    st.info("You have not opened any tickets.")
    st.stop()

st.dataframe(view.ticket_table(mine), hide_index=True, width="stretch", key="support_table")
st.selectbox("Ticket", list(by_id), format_func=lambda i: view.ticket_label(by_id[i]), key="support_selected")

ticket = detail.ticket
with st.container(border=True):
    st.text(ticket.subject)
    st.caption(view.ticket_dates(ticket))
    if detail.call is not None:
        st.text(f"About the call: {detail.call.label}")
    elif ticket.log_id is not None:
        st.caption("The call this ticket was about is no longer in the logs.")
    view.conversation(detail, viewer_is_owner=True)
    if not ticket.admin_response and ticket.status in ("open", "in_progress"):
        st.info("No answer yet." if ticket.status == "open" else "Support is working on it.")

if ticket.can_reopen:
    with st.form("support_reopen"):
        st.write("Did the answer not solve it? Reopen the ticket with a follow-up.")
        follow_up = st.text_area("Follow-up", max_chars=tickets.MESSAGE_MAX_CHARS, key="support_follow_up")
        follow_up_err = st.empty()
        if st.form_submit_button("Reopen with this follow-up", key="support_reopen_submit"):
            with form_errors({"follow_up": follow_up_err, "status": follow_up_err}):
                with transaction(engine()) as session:
                    tickets.reopen(session, user, ticket.id, follow_up)
                st.session_state.pop("support_follow_up", None)
                done("Ticket reopened.")
elif ticket.status == "closed":
    st.info("This ticket is closed, which is final. Open a new ticket if you need more help.")
