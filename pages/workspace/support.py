"""Support: open a ticket (about one of your calls, if you like), read the answers, reopen it if they did not help.

The ticket being viewed is in the URL (?ticket=), so a reload or a link opens it again."""

from mindroute.ui.session import require_user

user = require_user()

import uuid  # noqa: E402

import streamlit as st  # noqa: E402

from mindroute.i18n import _  # noqa: E402
from mindroute.services import ticket_pages, tickets  # noqa: E402
from mindroute.services.tickets import TICKET_SUBJECT_MAX  # noqa: E402
from mindroute.ui import tickets_view as view  # noqa: E402
from mindroute.ui import viewer  # noqa: E402
from mindroute.ui.calls_view import SUPPORT_CALL_PARAM  # noqa: E402
from mindroute.ui.render import Flash, form_errors  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402

# The call a link (`?call=<log id>`, from a call's detail) chose for a new ticket, kept until the ticket is opened.
LINKED_CALL = "support_linked_call"
NEW_TICKET_KEYS = ("support_subject", "support_message", "support_call", LINKED_CALL)

st.title(_("Support"))
flash = Flash("support_flash")
flash.show()
done = flash.done
viewer.zone_note()


requested_call = st.query_params.get(SUPPORT_CALL_PARAM)
if requested_call is not None:
    # Once: the link chose the call; from here on the picker holds the choice.
    del st.query_params[SUPPORT_CALL_PARAM]
just_opened = st.session_state.pop("support_select_next", None)
read = ticket_pages.support_page(
    engine(),
    user,
    requested_call=requested_call,
    # A ticket just opened wins over the one in the URL; the URL's over the last one chosen.
    requested_ticket=None if just_opened else st.query_params.get(view.TICKET_PARAM),
    preferred=(just_opened, st.session_state.get("support_selected")),
)
linked_call_refused = requested_call is not None and read.linked_call is None
if read.linked_call is not None:
    st.session_state[LINKED_CALL] = read.linked_call
    st.session_state["support_call"] = str(read.linked_call.id)
calls, mine, detail = read.calls, read.mine, read.detail
by_id = {str(t.id): t for t in mine}
if detail is not None:
    st.session_state["support_selected"] = str(detail.ticket.id)
    if st.query_params.get(view.TICKET_PARAM) != str(detail.ticket.id):
        st.query_params[view.TICKET_PARAM] = str(detail.ticket.id)  # so a reload or a shared link opens it
elif view.TICKET_PARAM in st.query_params:
    del st.query_params[view.TICKET_PARAM]


# --- a new ticket ---------------------------------------------------------------------------

calls_by_id = {str(c.id): c for c in calls}
if (linked := st.session_state.get(LINKED_CALL)) is not None:
    calls_by_id.setdefault(str(linked.id), linked)  # older than the recent calls the picker lists
# Labels made once per run: a widget's value travels as its label, so format_func must not translate later.
call_labels = {None: _("No particular call"), **{i: view.call_label(c) for i, c in calls_by_id.items()}}
if st.session_state.get("support_call") not in (None, *calls_by_id):
    st.session_state.pop("support_call")
with (
    st.expander(_("Open a ticket"), expanded=not mine or linked is not None or linked_call_refused),
    st.form("support_new"),
):
    # No max_chars: Streamlit would cut a longer subject silently; the service refuses it with a message.
    subject = st.text_input(
        _("Subject"), help=_("One line, up to {n} characters", n=TICKET_SUBJECT_MAX), key="support_subject"
    )
    subject_err = st.empty()
    message = st.text_area(
        _("Message"),
        max_chars=tickets.MESSAGE_MAX_CHARS,
        height=160,
        key="support_message",
        help=_("What happened?"),
    )
    message_err = st.empty()
    call = st.selectbox(
        _("About one of your recent calls (optional)"),
        list(call_labels),
        format_func=call_labels.get,
        key="support_call",
    )
    call_err = st.empty()
    if linked_call_refused:
        call_err.warning(_("The linked call is not one of your calls (or is no longer in the logs): choose one here."))
    if st.form_submit_button(_("Open ticket"), type="primary", key="support_submit"):
        with form_errors({"subject": subject_err, "message": message_err, "log_id": call_err}):
            about = uuid.UUID(call) if call is not None else None
            ticket = tickets.open_ticket(engine(), user, subject, message, about)
            for key in NEW_TICKET_KEYS:
                st.session_state.pop(key, None)
            st.session_state["support_select_next"] = str(ticket.id)
            done(_("Ticket opened. Support will answer here."))


# --- one's tickets --------------------------------------------------------------------------

st.header(_("Your tickets"))
if read.requested_missing:
    st.warning(_("The linked ticket is not one of your tickets (or no longer exists)."))
if detail is None:
    st.info(_("You have not opened any tickets."))
    st.stop()

st.dataframe(view.ticket_table(mine), hide_index=True, width="stretch", key="support_table")
ticket_labels = {i: view.ticket_label(t) for i, t in by_id.items()}
st.selectbox(
    _("Ticket"),
    list(ticket_labels),
    format_func=ticket_labels.get,
    key="support_selected",
    on_change=lambda: st.query_params.update({view.TICKET_PARAM: st.session_state["support_selected"]}),
)

ticket = detail.ticket
with st.container(border=True):
    st.text(ticket.subject)
    st.caption(view.ticket_dates(ticket))
    if detail.call is not None:
        st.text(_("About the call: {call}", call=view.call_label(detail.call)))
    elif ticket.log_id is not None:
        st.caption(_("The call this ticket was about is no longer in the logs."))
    view.conversation(detail, viewer_is_owner=True)
    if not ticket.admin_response and ticket.status in ("open", "in_progress"):
        st.info(_("No answer yet.") if ticket.status == "open" else _("Support is working on it."))

if ticket.can_reopen:
    with st.form("support_reopen"):
        st.write(_("Did the answer not solve it? Reopen the ticket with a follow-up."))
        follow_up = st.text_area(_("Follow-up"), max_chars=tickets.MESSAGE_MAX_CHARS, key="support_follow_up")
        follow_up_err = st.empty()
        if st.form_submit_button(_("Reopen with this follow-up"), key="support_reopen_submit"):
            with form_errors({"follow_up": follow_up_err, "status": follow_up_err}):
                tickets.reopen(engine(), user, ticket.id, follow_up)
                st.session_state.pop("support_follow_up", None)
                done(_("Ticket reopened."))
elif ticket.status == "closed":
    st.info(_("This ticket is closed, which is final. Open a new ticket if you need more help."))
