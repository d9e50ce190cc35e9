"""What the Support page and the ticket queue show in one run, each read in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mindroute.errors import NotFound
from mindroute.models import User
from mindroute.services.tickets import (
    CallRef,
    TicketDetail,
    TicketPage,
    TicketRow,
    get_ticket,
    list_mine,
    list_queue,
    my_call,
    my_recent_calls,
)
from mindroute.services.unit_of_work import unit_of_work


def _first_present(by_id: Mapping[str, TicketRow], preferred: Sequence[str | None]) -> str | None:
    """The first preferred ticket id on the list, else the list's first, else None."""
    return next((i for i in preferred if i in by_id), next(iter(by_id), None))


def _ticket_id(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class SupportPage:
    """What one run of the Support page shows, read in one transaction."""

    linked_call: CallRef | None  # the call a link asked about, when it is one of the user's
    calls: list[CallRef]  # recent calls a new ticket may refer to
    mine: list[TicketRow]
    detail: TicketDetail | None  # the selected ticket with its history
    requested_missing: bool = False  # the ticket a link asked for is not one of the user's (or does not exist)


@unit_of_work
def support_page(
    session: Session,
    user: User,
    *,
    requested_call: str | None,
    preferred: Sequence[str | None],
    requested_ticket: str | None = None,
) -> SupportPage:
    """The user's recent calls, their tickets and the selected one (`requested_ticket` from the URL, else the
    first of `preferred` on the list, else the newest), and the call a link asked about (`requested_call`,
    None when no link did)."""
    linked = my_call(session, user, requested_call) if requested_call is not None else None
    calls = my_recent_calls(session, user)
    mine = list_mine(session, user)
    by_id = {str(t.id): t for t in mine}
    missing = requested_ticket is not None and requested_ticket not in by_id
    chosen = _first_present(by_id, (requested_ticket, *preferred))
    detail = get_ticket(session, user, uuid.UUID(chosen)) if chosen else None
    return SupportPage(linked_call=linked, calls=calls, mine=mine, detail=detail, requested_missing=missing)


@dataclass(frozen=True)
class QueuePage:
    """What one run of the ticket queue shows, read in one transaction."""

    listing: TicketPage
    detail: TicketDetail | None  # the selected ticket with its history and call
    selected_missing: bool = False  # the ticket asked for does not exist (or its id is malformed)


@unit_of_work
def queue_page(
    session: Session,
    admin: User,
    *,
    status: str | None,
    user_id: uuid.UUID | None,
    oldest_first: bool,
    page: int,
    page_size: int,
    selected: str | None,
) -> QueuePage:
    """Admins: a page of the queue and the selected ticket: `selected` (a link's, wherever it is in the queue),
    else the page's first."""
    listing = list_queue(
        session, admin, status=status, user_id=user_id, oldest_first=oldest_first, page=page, page_size=page_size
    )
    wanted = _ticket_id(selected)
    detail = None
    if wanted is not None:
        try:
            detail = get_ticket(session, admin, wanted)
        except NotFound:
            detail = None
    missing = selected is not None and detail is None
    if detail is None and listing.rows:
        detail = get_ticket(session, admin, listing.rows[0].id)
    return QueuePage(listing=listing, detail=detail, selected_missing=missing)
