"""What the support pages draw of a ticket: its tables, choice labels and conversation, all as plain text."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mindroute.services.tickets import STATUS_LABELS, CallRef, TicketDetail, TicketRow
from mindroute.ui.format import timestamp, tokens

STATUS_CHOICES = {"any": "Any status", **STATUS_LABELS}
TICKET_PARAM = "ticket"  # ?ticket=<id> on the queue and on Support: the ticket being viewed
ERROR_SHOWN_CHARS = 120  # of a call's error in the queue's table; the ticket's detail shows it whole


def call_label(call: CallRef) -> str:
    """A call in a select box or a line of plain text: its time in the viewer's zone, model, status."""
    status = f"HTTP {call.status_code}" if call.status_code is not None else "no status"
    return f"{timestamp(call.created_at)} · {call.model_id or call.request_type} · {status}"


def call_outcome(row: TicketRow) -> str:
    """The linked call's status and error for the queue's table (plain text in a cell), "" without a call."""
    if row.log_id is None:
        return ""
    if not row.call_in_logs:
        return "no longer in the logs"
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
    return f"{row.subject}{owner} · {row.status_label} · opened {timestamp(row.created_at)}"


def ticket_table(rows: list[TicketRow], *, with_owner: bool = False) -> pd.DataFrame:
    columns = ["Subject", *(["From"] if with_owner else []), "Status", "Opened", "Updated", "Resolved", "Answered"]
    columns += ["Call"] if with_owner else []
    return pd.DataFrame(
        [
            {
                "Subject": r.subject,
                **({"From": r.owner_email} if with_owner else {}),
                "Status": r.status_label,
                "Opened": timestamp(r.created_at),
                "Updated": timestamp(r.updated_at),
                "Resolved": timestamp(r.resolved_at) if r.resolved_at else "—",
                "Answered": "yes" if r.admin_response else "not yet",
                **({"Call": call_outcome(r)} if with_owner else {}),
            }
            for r in rows
        ],
        columns=columns,
    )


def call_table(call: CallRef) -> pd.DataFrame:
    """The logged call a ticket is about: what an administrator needs to look into it."""
    return pd.DataFrame(
        [
            {
                "Time": timestamp(call.created_at),
                "Model": call.model_id or "—",
                "Request": call.request_type,
                "Status": "—" if call.status_code is None else str(call.status_code),
                "Tokens": tokens(call.tokens_used),
            }
        ],
        columns=["Time", "Model", "Request", "Status", "Tokens"],
    )


def ticket_dates(row: TicketRow) -> str:
    """Status and dates: fixed words and numbers only, so safe for a caption."""
    parts = [row.status_label, f"opened {timestamp(row.created_at)}", f"updated {timestamp(row.updated_at)}"]
    if row.resolved_at:
        parts.append(f"resolved {timestamp(row.resolved_at)}")
    return " · ".join(parts)


def conversation(detail: TicketDetail, *, viewer_is_owner: bool) -> None:
    """The first message, the history after it (follow-ups and the answers they reply to), the current answer."""
    ticket = detail.ticket
    owner = "You" if viewer_is_owner else "The user"
    st.caption(f"{owner} · {timestamp(ticket.created_at)}")
    st.text(ticket.message)
    for message in detail.history:
        author = owner if message.from_owner else "Support"
        st.caption(f"{author} · {timestamp(message.created_at)}")
        if not message.from_owner and message.author_name:
            st.text(f"Answered by {message.author_name}")
        st.text(message.body)
    if ticket.admin_response:
        st.caption("Support · the current answer")
        if ticket.admin_name:
            st.text(f"Answered by {ticket.admin_name}")
        st.text(ticket.admin_response)
