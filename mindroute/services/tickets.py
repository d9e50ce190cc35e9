"""Support tickets: users open and reopen their own, administrators answer them and move them through their statuses.

A user sees only their own tickets; anyone else's is NotFound, exactly like a ticket that does
not exist. Administrators see and answer every ticket. The first message stays in
`tickets.message`; what follows it (follow-ups when a ticket is reopened, and the answer they
reply to) is the ticket's history in `ticketmessages`, oldest first.

Statuses move only along ADMIN_TRANSITIONS (administrators) or, for the owner, from resolved back
to open with a follow-up; closed is final. Anything else is a ValidationError on "status" naming
both statuses, and nothing is written.

Each public service takes an engine (and runs in a transaction of its own) or a session already in one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, func, select, true
from sqlalchemy.orm import Session, aliased

from mindroute.errors import ConflictError, NotFound, PermissionDenied
from mindroute.i18n import Message, _l
from mindroute.models import Log, Ticket, TicketMessage, User, utcnow
from mindroute.services import audit
from mindroute.services.paging import Page
from mindroute.services.unit_of_work import unit_of_work
from mindroute.services.users import for_update, next_updated_at, require_active, require_active_admin, same_instant
from mindroute.validation import (
    TICKET_SUBJECT_MAX,  # noqa: F401 - for the Support page's help text
    ValidationError,
    validate_ticket_status,
    validate_ticket_subject,
)

STATUS_LABELS = {
    "open": _l("Open"),
    "in_progress": _l("In progress"),
    "resolved": _l("Resolved"),
    "closed": _l("Closed"),
}
# Where an administrator may move a ticket from each status. Closed is final; the owner's own
# way back (resolved → open, with a follow-up) is `reopen`.
ADMIN_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("in_progress", "resolved", "closed"),
    "in_progress": ("open", "resolved", "closed"),
    "resolved": ("in_progress", "closed"),
    "closed": (),
}
MESSAGE_MAX_CHARS = 20_000  # a long stack trace fits; a pasted file does not
RECENT_CALLS_LIMIT = 50
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
TICKET_NOT_FOUND = _l("This ticket does not exist or was deleted")

_Owner = aliased(User, name="owner")
_Admin = aliased(User, name="admin")


@dataclass(frozen=True)
class TicketRow:
    """A ticket as the lists and the detail view show it. All text in it is untrusted: render as plain text."""

    id: uuid.UUID
    user_id: uuid.UUID
    owner_email: str
    owner_name: str
    subject: str
    message: str
    status: str
    admin_response: str | None
    admin_id: uuid.UUID | None
    admin_name: str | None  # None when no admin answered, or the admin's account was deleted
    log_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime  # hand back as `expected_updated_at` when saving an edited response
    resolved_at: datetime | None
    call_in_logs: bool = False  # the linked call's row is still in the logs
    call_status: int | None = None  # the linked call's status
    call_error: str | None = None  # the linked call's error message, untrusted text

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def next_statuses(self) -> tuple[str, ...]:
        """Where an administrator may move it now."""
        return ADMIN_TRANSITIONS[self.status]

    @property
    def can_reopen(self) -> bool:
        """Whether its owner may reopen it (with a follow-up)."""
        return self.status == "resolved"


@dataclass(frozen=True)
class TicketMessageRow:
    id: uuid.UUID
    author_id: uuid.UUID | None
    author_name: str | None  # None when the author's account was deleted
    from_owner: bool  # written by the ticket's owner, rather than by support
    body: str
    created_at: datetime


@dataclass(frozen=True)
class CallRef:
    """A logged call, as a ticket refers to it and as the "which call?" picker lists it."""

    id: uuid.UUID
    created_at: datetime
    model_id: str | None
    request_type: str
    status_code: int | None
    tokens_used: int | None
    error_message: str | None = None  # untrusted text


@dataclass(frozen=True)
class TicketDetail:
    ticket: TicketRow
    history: list[TicketMessageRow]  # after the first message, oldest first
    call: CallRef | None  # None when none was attached, or the call's log row was deleted


TicketPage = Page[TicketRow]  # one page of the list, with the total on every page


# --- helpers --------------------------------------------------------------------------------


def _require_active(actor: User | None) -> User:
    return require_active(actor, _l("Sign in to use support tickets"))


def _require_admin(actor: User | None) -> User:
    return require_active_admin(actor, _l("Sign in to use support tickets"))


def _text(value: str | None, field: str, label: Message) -> str:
    text = (value or "").strip()
    if not text:
        raise ValidationError(field, _l("{label} is required", label=label))
    if len(text) > MESSAGE_MAX_CHARS:
        raise ValidationError(
            field,
            _l(
                "{label} must be at most {max} characters (got {got})",
                label=label,
                max=MESSAGE_MAX_CHARS,
                got=len(text),
            ),
        )
    return text


def _rows_stmt() -> Select[tuple[Ticket, str, str, str | None, uuid.UUID | None, int | None, str | None]]:
    """A ticket with its owner's email and name, its admin's name and its call's status and error: what every
    TicketRow is built from."""
    return (
        select(Ticket, _Owner.email, _Owner.name, _Admin.name, Log.id, Log.status_code, Log.error_message)
        .join(_Owner, _Owner.id == Ticket.user_id)
        .outerjoin(_Admin, _Admin.id == Ticket.admin_id)
        .outerjoin(Log, Log.id == Ticket.log_id)
    )


def _row(
    ticket: Ticket,
    owner_email: str,
    owner_name: str,
    admin_name: str | None,
    call_id: uuid.UUID | None = None,
    call_status: int | None = None,
    call_error: str | None = None,
) -> TicketRow:
    return TicketRow(
        id=ticket.id,
        user_id=ticket.user_id,
        owner_email=owner_email,
        owner_name=owner_name,
        subject=ticket.subject,
        message=ticket.message,
        status=ticket.status,
        admin_response=ticket.admin_response,
        admin_id=ticket.admin_id,
        admin_name=admin_name,
        log_id=ticket.log_id,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        resolved_at=ticket.resolved_at,
        call_in_logs=call_id is not None,
        call_status=call_status,
        call_error=call_error,
    )


def _reload_row(session: Session, ticket: Ticket) -> TicketRow:
    row = session.execute(_rows_stmt().where(Ticket.id == ticket.id)).one()
    return _row(*row)


def _load_visible(session: Session, actor: User, ticket_id: uuid.UUID, *, lock: bool = False) -> Ticket:
    """The ticket if `actor` may see it (its owner, or an admin); NotFound otherwise."""
    stmt = select(Ticket).where(Ticket.id == ticket_id)
    if actor.role != "admin":
        stmt = stmt.where(Ticket.user_id == actor.id)
    ticket = session.scalar(for_update(session, stmt) if lock else stmt)
    if ticket is None:
        raise NotFound(TICKET_NOT_FOUND)
    return ticket


def _touch(ticket: Ticket) -> None:
    ticket.updated_at = next_updated_at(ticket.updated_at)


def _call_ref(log: Log) -> CallRef:
    return CallRef(
        id=log.id,
        created_at=log.created_at,
        model_id=log.model_id,
        request_type=log.request_type,
        status_code=log.status_code,
        tokens_used=log.tokens_used,
        error_message=log.error_message,
    )


def _status_filter(status: str | None) -> str | None:
    return validate_ticket_status(status) if status is not None else None


# --- the user's side ------------------------------------------------------------------------


@unit_of_work
def my_recent_calls(session: Session, user: User, limit: int = RECENT_CALLS_LIMIT) -> list[CallRef]:
    """The user's latest calls, newest first: what a new ticket may refer to."""
    user = _require_active(user)
    limit = min(max(int(limit), 1), RECENT_CALLS_LIMIT)
    logs = session.scalars(
        select(Log).where(Log.user_id == user.id).order_by(Log.created_at.desc(), Log.id.desc()).limit(limit)
    )
    return [_call_ref(log) for log in logs]


@unit_of_work
def my_call(session: Session, user: User, log_id: uuid.UUID | str) -> CallRef | None:
    """One of the user's own calls, however old (a link from a call's detail); None when the id is
    malformed, unknown or someone else's call, which look alike."""
    user = _require_active(user)
    try:
        log_id = log_id if isinstance(log_id, uuid.UUID) else uuid.UUID(str(log_id))
    except ValueError:
        return None
    log = session.scalar(select(Log).where(Log.id == log_id, Log.user_id == user.id))
    return _call_ref(log) if log is not None else None


@unit_of_work
def open_ticket(session: Session, user: User, subject: str, message: str, log_id: uuid.UUID | None = None) -> TicketRow:
    """A new ticket from `user`, optionally about one of their own logged calls."""
    user = _require_active(user)
    subject = validate_ticket_subject(subject)
    if any(ord(ch) < 32 for ch in subject):
        raise ValidationError("subject", _l("Subject must be one line, without control characters"))
    message = _text(message, "message", _l("Message"))
    if log_id is not None:
        try:
            log_id = log_id if isinstance(log_id, uuid.UUID) else uuid.UUID(str(log_id))
        except ValueError:
            raise ValidationError("log_id", _l("Choose one of your own calls")) from None
        owned = session.scalar(select(Log.id).where(Log.id == log_id, Log.user_id == user.id))
        if owned is None:
            # The same message whether the call does not exist or is someone else's.
            raise ValidationError("log_id", _l("Choose one of your own calls: this one is not among them"))
    ticket = Ticket(user_id=user.id, subject=subject, message=message, status="open", log_id=log_id)
    session.add(ticket)
    session.flush()
    return _reload_row(session, ticket)


@unit_of_work
def list_mine(session: Session, user: User, status: str | None = None) -> list[TicketRow]:
    """The user's own tickets, newest first, optionally in one status."""
    user = _require_active(user)
    stmt = _rows_stmt().where(Ticket.user_id == user.id)
    status = _status_filter(status)
    if status is not None:
        stmt = stmt.where(Ticket.status == status)
    return [_row(*row) for row in session.execute(stmt.order_by(Ticket.created_at.desc(), Ticket.id.desc()))]


@unit_of_work
def get_ticket(session: Session, actor: User, ticket_id: uuid.UUID) -> TicketDetail:
    """One ticket with its history and call reference: for its owner or an admin; NotFound for anyone else."""
    actor = _require_active(actor)
    ticket = _load_visible(session, actor, ticket_id)
    authors = aliased(User, name="author")
    history = [
        TicketMessageRow(
            id=message.id,
            author_id=message.author_id,
            author_name=author_name,
            from_owner=message.author_id == ticket.user_id,
            body=message.body,
            created_at=message.created_at,
        )
        for message, author_name in session.execute(
            select(TicketMessage, authors.name)
            .outerjoin(authors, authors.id == TicketMessage.author_id)
            .where(TicketMessage.ticket_id == ticket.id)
            .order_by(TicketMessage.created_at, TicketMessage.id)
        )
    ]
    log = session.get(Log, ticket.log_id) if ticket.log_id is not None else None
    return TicketDetail(
        ticket=_reload_row(session, ticket), history=history, call=_call_ref(log) if log is not None else None
    )


@unit_of_work
def reopen(session: Session, user: User, ticket_id: uuid.UUID, follow_up: str) -> TicketRow:
    """The owner reopens their resolved ticket with a follow-up: back to open, resolvedAt cleared.

    The answer the follow-up replies to moves into the history just before it, and the response
    field is emptied for the next answer, so the conversation reads in order. Closed is final.
    """
    user = _require_active(user)
    follow_up = _text(follow_up, "follow_up", _l("Follow-up"))
    ticket = _load_visible(session, user, ticket_id, lock=True)
    if ticket.user_id != user.id:
        raise PermissionDenied(_l("Only the person who opened this ticket can reopen it"))
    if ticket.status != "resolved":
        status = STATUS_LABELS[ticket.status]
        refusal = (
            _l(
                "Cannot reopen a ticket that is {status} (a closed ticket is final): "
                "only a Resolved ticket can go back to Open",
                status=status,
            )
            if ticket.status == "closed"
            else _l(
                "Cannot reopen a ticket that is {status}: only a Resolved ticket can go back to Open", status=status
            )
        )
        raise ValidationError("status", refusal)
    now = utcnow()
    if ticket.admin_response:
        session.add(
            TicketMessage(ticket_id=ticket.id, author_id=ticket.admin_id, body=ticket.admin_response, created_at=now)
        )
    # A microsecond later, so the follow-up always sorts after the answer it replies to.
    session.add(
        TicketMessage(
            ticket_id=ticket.id, author_id=user.id, body=follow_up, created_at=now + timedelta(microseconds=1)
        )
    )
    ticket.status = "open"
    ticket.resolved_at = None
    ticket.admin_response = None
    _touch(ticket)
    session.flush()
    audit.record(session, "ticket.reopen", "ticket", ticket.id, {"status": ["resolved", "open"]}, actor=user)
    return _reload_row(session, ticket)


# --- the admin's queue ----------------------------------------------------------------------


@unit_of_work
def list_queue(
    session: Session,
    admin: User,
    *,
    status: str | None = None,
    user_id: uuid.UUID | None = None,
    oldest_first: bool = True,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> TicketPage:
    """Admins: every ticket, filtered by status and owner, by age, one page at a time with the total."""
    _require_admin(admin)
    status = _status_filter(status)
    condition = and_(
        Ticket.status == status if status is not None else true(),
        Ticket.user_id == user_id if user_id is not None else true(),
    )
    page_size = min(max(int(page_size), 1), MAX_PAGE_SIZE)
    total = session.scalar(select(func.count()).select_from(Ticket).where(condition)) or 0
    page = min(max(int(page), 1), max(1, -(-total // page_size)))
    # The id breaks ties, so no ticket shows on two pages.
    order = (Ticket.created_at.asc(), Ticket.id.asc()) if oldest_first else (Ticket.created_at.desc(), Ticket.id.desc())
    stmt = _rows_stmt().where(condition).order_by(*order).limit(page_size).offset((page - 1) * page_size)
    return TicketPage(rows=[_row(*row) for row in session.execute(stmt)], total=total, page=page, page_size=page_size)


@unit_of_work
def respond(
    session: Session,
    admin: User,
    ticket_id: uuid.UUID,
    response: str,
    *,
    expected_updated_at: datetime | None = None,
    resolve: bool = False,
) -> TicketRow:
    """Write or edit the admin's response (adminResponse, adminId). The status is left as it is, unless
    `resolve`: then the ticket also moves to resolved, in the same transaction ("Send and resolve"), with
    the same two audit rows as answering and then resolving.

    With `expected_updated_at` (the `updated_at` the form was loaded with), a save over someone
    else's change since is refused with ConflictError.
    """
    admin = _require_admin(admin)
    response = _text(response, "response", _l("Response"))
    ticket = _load_visible(session, admin, ticket_id, lock=True)
    if expected_updated_at is not None and not same_instant(ticket.updated_at, expected_updated_at):
        raise ConflictError(_l("This ticket changed since you opened it; reload it and try again"))
    if ticket.status == "closed":
        raise ValidationError("response", _l("This ticket is closed, which is final: its response cannot change"))
    if resolve and "resolved" not in ADMIN_TRANSITIONS[ticket.status]:
        raise ValidationError("status", _refusal(ticket.status, "resolved"))
    answered_before = bool(ticket.admin_response)
    ticket.admin_response = response
    ticket.admin_id = admin.id
    _touch(ticket)
    session.flush()
    changes = {"admin_response": "edited" if answered_before else "answered", "length": len(response)}
    audit.record(session, "ticket.answer", "ticket", ticket.id, changes, actor=admin)
    if resolve:
        _move(session, admin, ticket, "resolved")
    return _reload_row(session, ticket)


def allowed_transitions(status: str) -> tuple[str, ...]:
    """Where an administrator may move a ticket in `status`."""
    return ADMIN_TRANSITIONS[validate_ticket_status(status)]


@unit_of_work
def set_status(session: Session, admin: User, ticket_id: uuid.UUID, new_status: str) -> TicketRow:
    """Move a ticket along ADMIN_TRANSITIONS; resolvedAt is set on resolving and cleared when it leaves resolved."""
    _require_admin(admin)
    new_status = validate_ticket_status(new_status)
    # Locked, so two admins moving one ticket at once are checked one after the other.
    ticket = _load_visible(session, admin, ticket_id, lock=True)
    _move(session, admin, ticket, new_status)
    return _reload_row(session, ticket)


def _move(session: Session, admin: User, ticket: Ticket, new_status: str) -> None:
    """The status change of a locked ticket, with its audit row; ValidationError for a move not allowed."""
    current = ticket.status
    if new_status not in ADMIN_TRANSITIONS[current]:
        raise ValidationError("status", _refusal(current, new_status))
    ticket.status = new_status
    if new_status == "resolved":
        ticket.resolved_at = utcnow()
    elif current == "resolved" and new_status != "closed":
        ticket.resolved_at = None  # reopened: it is no longer resolved
    _touch(ticket)
    session.flush()
    audit.record(session, "ticket.status", "ticket", ticket.id, {"status": [current, new_status]}, actor=admin)


def _either(labels: list[Message]) -> Message:
    """ "A or B or C", each label translated where shown."""
    if len(labels) == 1:
        return labels[0]
    return _l("{first} or {rest}", first=labels[0], rest=_either(labels[1:]))


def _refusal(current: str, new_status: str) -> Message:
    here, there = STATUS_LABELS[current], STATUS_LABELS[new_status]
    if current == new_status:
        return _l("Cannot move a ticket from {current} to {new}: it is already {current}", current=here, new=there)
    allowed = ADMIN_TRANSITIONS[current]
    if not allowed:
        return _l("Cannot move a ticket from {current} to {new}: a Closed ticket is final", current=here, new=there)
    return _l(
        "Cannot move a ticket from {current} to {new}: from {current} it can go to {allowed}",
        current=here,
        new=there,
        allowed=_either([STATUS_LABELS[s] for s in allowed]),
    )


@unit_of_work
def open_count(session: Session) -> int:
    """Tickets waiting for an administrator (status open), for the navigation badge."""
    return session.scalar(select(func.count()).select_from(Ticket).where(Ticket.status == "open")) or 0
