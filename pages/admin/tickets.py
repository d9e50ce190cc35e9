"""Ticket queue: every user's support tickets, filtered and by age, with their calls' errors; answer them (and
resolve in the same step) and move them along. A click on a row opens its ticket; the ticket being viewed is in
the URL (?ticket=)."""

from mindroute.ui.session import require_admin

user = require_admin()

import uuid  # noqa: E402

import streamlit as st  # noqa: E402

from mindroute.i18n import _, _n  # noqa: E402
from mindroute.services import admin_users, ticket_pages, tickets  # noqa: E402
from mindroute.services.admin_users import ConflictError, UserFilter  # noqa: E402
from mindroute.services.tickets import STATUS_LABELS  # noqa: E402
from mindroute.ui import tickets_view as view  # noqa: E402
from mindroute.ui import viewer  # noqa: E402
from mindroute.ui.calls_view import CALL_PARAM  # noqa: E402
from mindroute.ui.render import Flash, form_errors, page_control, requested_page, rows_height  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402
from mindroute.ui.users_view import load_form, reload_form, user_label  # noqa: E402

PAGE_SIZES = (10, 25, 50, 100)
OWNER_CHOICES_MAX = 100

LOGS_PAGE = "pages/admin/logs.py"

st.title(_("Ticket queue"))
flash = Flash("queue_flash")
flash.show()
done = flash.done
viewer.zone_note()


# --- filters and the list -------------------------------------------------------------------

# Options' labels made once per run: a widget's value travels as its label (see view.choice_labels).
filters = st.columns([1, 2, 2])
status_labels = view.choice_labels()
status_choice = filters[0].selectbox(
    _("Status"), list(status_labels), format_func=status_labels.get, key="queue_status"
)
owner_search = filters[1].text_input(
    _("Find a user"),
    max_chars=admin_users.SEARCH_MAX_CHARS,
    placeholder=_("Part of an email or a name"),
    key="queue_search",
)
search_err = filters[1].empty()
owners = []
with form_errors({"search": search_err}):
    owners = admin_users.list_users(
        engine(), user, UserFilter(search=owner_search), sort="email", descending=False, page_size=OWNER_CHOICES_MAX
    ).rows
owner_labels = {"any": _("Any user"), **{str(o.id): user_label(o) for o in owners}}
owner_choice = filters[2].selectbox(_("User"), list(owner_labels), format_func=owner_labels.get, key="queue_owner")
ordering = st.columns([1, 1, 3])
order_labels = {True: _("Oldest first"), False: _("Newest first")}
oldest_first = ordering[0].selectbox(
    _("Order"), tuple(order_labels), format_func=order_labels.__getitem__, key="queue_oldest_first"
)
page_size = ordering[1].selectbox(_("Per page"), PAGE_SIZES, index=1, key="queue_page_size")

status = view.status_filter(status_choice)
owner_id = None if owner_choice == "any" else uuid.UUID(owner_choice)
page = requested_page("queue_page", (status, owner_id, oldest_first, page_size))
linked_ticket = st.query_params.get(view.TICKET_PARAM)

# A click on a row is a change of the table's selection since the last run, read through the ids that table
# showed (so a ticket opened meanwhile cannot shift it). The table is a new widget whenever the rows it shows
# change (filters, page, a ticket leaving the filter), so no row stays selected over another ticket.
shown_key = st.session_state.get("queue_table_key")
table_state = st.session_state.get(shown_key) if shown_key else None
picked = tuple(table_state["selection"]["rows"]) if table_state else ()
last_pick = st.session_state.get("queue_last_pick")
st.session_state["queue_last_pick"] = (shown_key, picked)
clicked = None
if picked and last_pick is not None and last_pick != (shown_key, picked):
    shown_ids = st.session_state.get("queue_shown_ids", [])
    clicked = shown_ids[picked[0]] if picked[0] < len(shown_ids) else None

queue = ticket_pages.queue_page(
    engine(),
    user,
    status=status,
    user_id=owner_id,
    oldest_first=oldest_first,
    page=page,
    page_size=page_size,
    selected=clicked or linked_ticket or st.session_state.get("queue_selected"),
)
listing, detail = queue.listing, queue.detail
if detail is not None:
    st.session_state["queue_selected"] = str(detail.ticket.id)
    if st.query_params.get(view.TICKET_PARAM) != str(detail.ticket.id):
        st.query_params[view.TICKET_PARAM] = str(detail.ticket.id)  # so a reload or a shared link opens it
elif view.TICKET_PARAM in st.query_params:
    del st.query_params[view.TICKET_PARAM]
if queue.selected_missing and linked_ticket is not None:
    st.warning(_("The linked ticket was not found: it does not exist or was deleted."))

rows_shown = [str(t.id) for t in listing.rows]
if st.session_state.get("queue_shown_ids") != rows_shown or shown_key is None:
    st.session_state["queue_table_generation"] = st.session_state.get("queue_table_generation", 0) + 1
    st.session_state["queue_shown_ids"] = rows_shown
table_key = f"queue_table_{st.session_state['queue_table_generation']}"
st.session_state["queue_table_key"] = table_key
if listing.rows:
    st.dataframe(
        view.ticket_table(listing.rows, with_owner=True),
        hide_index=True,
        width="stretch",
        height=rows_height(len(listing.rows)),
        key=table_key,
        on_select="rerun",
        selection_mode="single-row",
    )
    st.caption(_("Click a row to open its ticket."))
else:
    st.info(_("No tickets match these filters."))
page_control("queue_page", listing.page, listing.pages, _n("{n} ticket", "{n} tickets", listing.total))

if detail is None:
    st.stop()

# --- one ticket -----------------------------------------------------------------------------

st.header(_("Ticket"))
ticket = detail.ticket
tid = ticket.id
st.text(ticket.subject)
st.text(_("From {name} <{email}>", name=ticket.owner_name, email=ticket.owner_email))
st.caption(view.ticket_dates(ticket))

if detail.call is not None:
    st.subheader(_("The call it is about"))
    st.dataframe(view.call_table(detail.call), hide_index=True, width="stretch", key="queue_call")
    if detail.call.error_message:
        st.caption(_("Its error"))
        st.code(detail.call.error_message, language=None, wrap_lines=True)
    st.page_link(
        LOGS_PAGE,
        label=_("Open the call in Logs"),
        icon=":material/receipt_long:",
        query_params={CALL_PARAM: str(detail.call.id)},
    )
elif ticket.log_id is not None:
    st.caption(_("The call this ticket was about is no longer in the logs."))

st.subheader(_("Conversation"))
view.conversation(detail, viewer_is_owner=False)

st.subheader(_("Status"))
status_err = st.empty()
if not ticket.next_statuses:
    st.info(_("Closed is final: this ticket can no longer change."))
else:
    buttons = st.columns(len(ticket.next_statuses))
    for column, next_status in zip(buttons, ticket.next_statuses, strict=True):
        if column.button(_("Move to {status}", status=STATUS_LABELS[next_status]), key=f"queue_to_{next_status}"):
            with form_errors({"status": status_err}):
                tickets.set_status(engine(), user, tid, next_status)
                reload_form("queue_response")  # our own change is not someone else's
                done(_("Moved to {status}.", status=STATUS_LABELS[next_status]))

if ticket.status == "closed":
    st.stop()

st.subheader(_("Your answer"))
loaded_at = load_form("queue_response", tid, ticket.updated_at, {"queue_response_text": ticket.admin_response or ""})
if loaded_at != ticket.updated_at:
    st.warning(_("This ticket was changed since you opened it."))
    st.button(
        _("Reload the current values"), on_click=reload_form, args=("queue_response",), key="queue_response_reload"
    )
with st.form("queue_response_form"):
    response = st.text_area(
        _("Answer"),
        max_chars=tickets.MESSAGE_MAX_CHARS,
        height=180,
        key="queue_response_text",
        help=_("The user sees it as plain text. Save answer leaves the status as it is."),
    )
    response_err = st.empty()
    can_resolve = "resolved" in ticket.next_statuses
    actions = st.columns([1, 1, 3] if can_resolve else [1, 4])  # the buttons side by side, at the left
    save = actions[0].form_submit_button(
        _("Save answer"), type="secondary" if can_resolve else "primary", key="queue_response_save"
    )
    resolve = can_resolve and actions[1].form_submit_button(
        _("Send and resolve"), type="primary", key="queue_response_resolve"
    )
    if save or resolve:
        with form_errors({"response": response_err, "status": response_err}):
            try:
                tickets.respond(engine(), user, tid, response, expected_updated_at=loaded_at, resolve=resolve)
            except ConflictError:
                response_err.error(
                    _(
                        "This ticket was changed since you opened it (a new status, another answer, or the user "
                        "reopened it). Reload to see the current values, then make your change again."
                    )
                )
            else:
                reload_form("queue_response")
                done(_("Answer sent and the ticket resolved.") if resolve else _("Answer saved."))
