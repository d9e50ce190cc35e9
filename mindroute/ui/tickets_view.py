"""What the support pages draw of a ticket: its tables, choice labels and conversation, all as plain text."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mindroute import i18n
from mindroute.i18n import _, _l
from mindroute.services.tickets import STATUS_LABELS, CallRef, TicketDetail, TicketRow
from mindroute.ui.format import timestamp, tokens

# Status codes (the widgets' values) -> their labels, Messages shown with status_text / choice_text.
STATUS_CHOICES: dict[str, str] = {"any": _l("Any status"), **STATUS_LABELS}
TICKET_PARAM = "ticket"  # ?ticket=<id> on the queue and on Support: the ticket being viewed
ERROR_SHOWN_CHARS = 120  # of a call's error in the queue's table; the ticket's detail shows it whole


def status_text(status: str) -> str:
    """A ticket status code ("in_progress") as the reader reads it ("In progress", "처리 중")."""
    label = STATUS_LABELS.get(status)
    return status if label is None else i18n.text(label)


def choice_labels() -> dict[str, str]:
    """The status filter's options ("any" and the status codes) -> their labels in this run's language: a
    format_func looks them up (Streamlit calls it after the run too, so it must not translate then)."""
    return {choice: i18n.text(label) for choice, label in STATUS_CHOICES.items()}


def call_label(call: CallRef) -> str:
    """A call in a select box or a line of plain text: its time in the viewer's zone, model, status."""
    status = f"HTTP {call.status_code}" if call.status_code is not None else _("no status")
    return f"{timestamp(call.created_at)} · {call.model_id or call.request_type} · {status}"


def call_outcome(row: TicketRow) -> str:
    """The linked call's status and error for the queue's table (plain text in a cell), "" without a call."""
    if row.log_id is None:
        return ""
    if not row.call_in_logs:
        return _("no longer in the logs")
    error = " ".join((row.call_error or "").split())
    if len(error) > ERROR_SHOWN_CHARS:
        error = error[: ERROR_SHOWN_CHARS - 1] + "…"
    status = "—" if row.call_status is None else str(row.call_status)
    return f"{status} · {error}" if error else status


def status_filter(choice: str) -> str | None:
    return None if choice == "any" else choice


def ticket_label(row: TicketRow, *, with_owner: bool = False) -> str:
    """A ticket in a select box: option texts are drawn as plain text, never Markdown."""
    owner = f" — {row.owner_email}" if with_owner else ""
    opened = _("opened {time}", time=timestamp(row.created_at))
    return f"{row.subject}{owner} · {status_text(row.status)} · {opened}"


def ticket_table(rows: list[TicketRow], *, with_owner: bool = False) -> pd.DataFrame:
    """The tickets as a table, its headers in the reader's language."""
    headers = {
        "subject": _("Subject"),
        "from": _("User"),
        "status": _("Status"),
        "opened": _("Opened"),
        "updated": _("Updated"),
        "resolved": _("Resolved"),
        "answered": _("Answered"),
        "call": _("Call"),
    }
    keys = ["subject", *(["from"] if with_owner else []), "status", "opened", "updated", "resolved", "answered"]
    keys += ["call"] if with_owner else []
    yes, not_yet = _("yes"), _("not yet")
    records = [
        {
            "subject": r.subject,
            "from": r.owner_email,
            "status": status_text(r.status),
            "opened": timestamp(r.created_at),
            "updated": timestamp(r.updated_at),
            "resolved": timestamp(r.resolved_at) if r.resolved_at else "—",
            "answered": yes if r.admin_response else not_yet,
            "call": call_outcome(r) if with_owner else "",
        }
        for r in rows
    ]
    table = pd.DataFrame(records, columns=keys)
    return table.rename(columns=headers)


def call_table(call: CallRef) -> pd.DataFrame:
    """The logged call a ticket is about: what an administrator needs to look into it."""
    columns = [_("Time"), _("Model"), _("Request"), _("Status"), _("Tokens")]
    values = [
        timestamp(call.created_at),
        call.model_id or "—",
        call.request_type,
        "—" if call.status_code is None else str(call.status_code),
        tokens(call.tokens_used),
    ]
    return pd.DataFrame([values], columns=columns)


def ticket_dates(row: TicketRow) -> str:
    """Status and dates: fixed words and numbers only, so safe for a caption."""
    parts = [
        status_text(row.status),
        _("opened {time}", time=timestamp(row.created_at)),
        _("updated {time}", time=timestamp(row.updated_at)),
    ]
    if row.resolved_at:
        parts.append(_("resolved {time}", time=timestamp(row.resolved_at)))
    return " · ".join(parts)


def conversation(detail: TicketDetail, *, viewer_is_owner: bool) -> None:
    """The first message, the history after it (follow-ups and the answers they reply to), the current answer."""
    ticket = detail.ticket
    owner = _("You") if viewer_is_owner else _("The user")
    support = _("Support")
    st.caption(f"{owner} · {timestamp(ticket.created_at)}")
    st.text(ticket.message)
    for message in detail.history:
        author = owner if message.from_owner else support
        st.caption(f"{author} · {timestamp(message.created_at)}")
        if not message.from_owner and message.author_name:
            st.text(_("Answered by {name}", name=message.author_name))
        st.text(message.body)
    if ticket.admin_response:
        st.caption(_("Support · the current answer"))
        if ticket.admin_name:
            st.text(_("Answered by {name}", name=ticket.admin_name))
        st.text(ticket.admin_response)
