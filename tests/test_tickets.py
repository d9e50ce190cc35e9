"""Support tickets on SQLite and PostgreSQL: opening, the queue, the status lifecycle, reopening, who sees what."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from mindroute import security
from mindroute.db import transaction
from mindroute.errors import ConflictError, NotFound, PermissionDenied
from mindroute.models import TICKET_STATUSES, AuditLog, Log, Ticket, TicketMessage, User, utcnow
from mindroute.services import tickets
from mindroute.services.tickets import ADMIN_TRANSITIONS, STATUS_LABELS
from mindroute.validation import ValidationError

# bcrypt costs ~0.25 s a hash: users are inserted with this one precomputed hash.
PASSWORD_HASH = security.hash_password("correct horse battery")
ALLOWED = [(old, new) for old, targets in ADMIN_TRANSITIONS.items() for new in targets]
REFUSED = [pair for pair in itertools.product(TICKET_STATUSES, repeat=2) if pair not in ALLOWED]


def add_user(engine, email: str, role: str = "user") -> User:
    with transaction(engine) as session:
        user = User(email=email, name=email.split("@")[0].title(), role=role, password=PASSWORD_HASH)
        session.add(user)
    return user


def add_call(engine, user: User, model: str = "gpt-x", minutes_ago: int = 0) -> uuid.UUID:
    with transaction(engine) as session:
        log = Log(
            user_id=user.id,
            model_id=model,
            request_type="chat",
            status_code=500,
            created_at=utcnow() - timedelta(minutes=minutes_ago),
        )
        session.add(log)
        session.flush()
        return log.id


def open_ticket(engine, user: User, subject: str = "Timeouts", message: str = "Calls time out", log_id=None):
    with transaction(engine) as session:
        return tickets.open_ticket(session, user, subject, message, log_id)


def set_status(engine, admin: User, ticket_id: uuid.UUID, status: str) -> tickets.TicketRow:
    with transaction(engine) as session:
        return tickets.set_status(session, admin, ticket_id, status)


def get(engine, actor: User, ticket_id: uuid.UUID) -> tickets.TicketDetail:
    with transaction(engine) as session:
        return tickets.get_ticket(session, actor, ticket_id)


def force_status(engine, ticket_id: uuid.UUID, status: str) -> None:
    resolved_at = utcnow() if status in ("resolved", "closed") else None
    with transaction(engine) as session:
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(status=status, resolved_at=resolved_at))


def ticket_count(engine) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(Ticket)) or 0


@pytest.fixture
def people(engine) -> tuple[User, User, User]:
    return (
        add_user(engine, "admin@example.com", role="admin"),
        add_user(engine, "alice@example.com"),
        add_user(engine, "bob@example.com"),
    )


# --- opening --------------------------------------------------------------------------------


def test_a_user_opens_a_ticket_and_sees_it_in_their_list(engine, people) -> None:
    _, alice, _ = people
    row = open_ticket(engine, alice, "  Timeouts  ", "Calls time out since noon")
    assert (row.subject, row.message, row.status, row.status_label) == (
        "Timeouts",
        "Calls time out since noon",
        "open",
        "Open",
    )
    assert row.admin_response is None and row.resolved_at is None and row.log_id is None
    with transaction(engine) as session:
        assert [t.id for t in tickets.list_mine(session, alice)] == [row.id]
        assert [t.id for t in tickets.list_mine(session, alice, "open")] == [row.id]
        assert tickets.list_mine(session, alice, "resolved") == []
        with pytest.raises(ValidationError):
            tickets.list_mine(session, alice, "lost")


@pytest.mark.parametrize(
    "subject,message,field",
    [
        ("", "m", "subject"),
        ("   ", "m", "subject"),
        ("s" * 256, "m", "subject"),
        ("line\nbreak", "m", "subject"),
        ("s", "", "message"),
        ("s", " \n ", "message"),
        ("s", "m" * (tickets.MESSAGE_MAX_CHARS + 1), "message"),
    ],
)
def test_bad_subject_or_message_is_refused_and_nothing_written(engine, people, subject, message, field) -> None:
    _, alice, _ = people
    with pytest.raises(ValidationError) as refused:
        open_ticket(engine, alice, subject, message)
    assert refused.value.field == field
    assert ticket_count(engine) == 0


def test_a_subject_of_exactly_255_characters_is_accepted(engine, people) -> None:
    _, alice, _ = people
    assert len(open_ticket(engine, alice, "s" * 255).subject) == 255


def test_a_ticket_refers_only_to_one_of_the_users_own_calls(engine, people) -> None:
    _, alice, bob = people
    bobs_call = add_call(engine, bob)
    for log_id in (bobs_call, uuid.uuid4(), "not-a-uuid"):
        with pytest.raises(ValidationError) as refused:
            open_ticket(engine, alice, log_id=log_id)
        assert refused.value.field == "log_id"
    assert ticket_count(engine) == 0
    mine = add_call(engine, alice, model="claude-x")
    row = open_ticket(engine, alice, log_id=mine)
    detail = get(engine, alice, row.id)
    assert detail.ticket.log_id == mine and detail.call.model_id == "claude-x"
    assert detail.call.status_code == 500 and detail.ticket.call_in_logs and detail.ticket.call_status == 500
    # Deleting old logs unlinks the reference; the ticket stays.
    with transaction(engine) as session:
        session.execute(delete(Log).where(Log.id == mine))
    detail = get(engine, alice, row.id)
    assert detail.ticket.log_id is None and detail.call is None and not detail.ticket.call_in_logs


def test_recent_calls_are_the_users_own_newest_first(engine, people) -> None:
    _, alice, bob = people
    older, newer = add_call(engine, alice, minutes_ago=10), add_call(engine, alice, minutes_ago=1)
    add_call(engine, bob)
    with transaction(engine) as session:
        assert [call.id for call in tickets.my_recent_calls(session, alice)] == [newer, older]
        assert [call.id for call in tickets.my_recent_calls(session, alice, limit=1)] == [newer]


# --- the status lifecycle -------------------------------------------------------------------


def test_the_full_lifecycle_sets_resolved_at_and_keeps_it_when_closed(engine, people) -> None:
    admin, alice, _ = people
    ticket = open_ticket(engine, alice)
    assert set_status(engine, admin, ticket.id, "in_progress").resolved_at is None
    before = utcnow()
    resolved = set_status(engine, admin, ticket.id, "resolved")
    assert before <= resolved.resolved_at <= utcnow()
    closed = set_status(engine, admin, ticket.id, "closed")
    assert closed.status == "closed" and closed.resolved_at == resolved.resolved_at
    assert closed.next_statuses == () and not closed.can_reopen


@pytest.mark.parametrize("old,new", ALLOWED)
def test_every_allowed_transition_sets_or_clears_resolved_at(engine, people, old, new) -> None:
    admin, alice, _ = people
    ticket = open_ticket(engine, alice)
    force_status(engine, ticket.id, old)
    row = set_status(engine, admin, ticket.id, new)
    assert row.status == new
    # Set on resolving, kept on closing a resolved ticket, cleared when an admin takes it back up.
    stays_resolved = new == "resolved" or (old, new) == ("resolved", "closed")
    assert (row.resolved_at is not None) == stays_resolved


@pytest.mark.parametrize("old,new", REFUSED)
def test_every_refused_transition_names_both_statuses_and_writes_nothing(engine, people, old, new) -> None:
    admin, alice, _ = people
    ticket = open_ticket(engine, alice)
    force_status(engine, ticket.id, old)
    before = get(engine, admin, ticket.id).ticket
    with pytest.raises(ValidationError) as refused:
        set_status(engine, admin, ticket.id, new)
    assert refused.value.field == "status"
    assert f"from {STATUS_LABELS[old]} to {STATUS_LABELS[new]}" in refused.value.message
    if old == new:
        assert f"already {STATUS_LABELS[old]}" in refused.value.message
    elif old == "closed":
        assert "final" in refused.value.message
    assert get(engine, admin, ticket.id).ticket == before


def test_an_unknown_status_is_refused(engine, people) -> None:
    admin, alice, _ = people
    ticket = open_ticket(engine, alice)
    with pytest.raises(ValidationError) as refused:
        set_status(engine, admin, ticket.id, "done")
    assert refused.value.field == "status"
    with pytest.raises(ValidationError):
        tickets.allowed_transitions("done")
    assert tickets.allowed_transitions("resolved") == ("in_progress", "closed")


# --- responding -----------------------------------------------------------------------------


def test_an_admin_writes_and_edits_the_response(engine, people) -> None:
    admin, alice, _ = people
    other_admin = add_user(engine, "second@example.com", role="admin")
    ticket = open_ticket(engine, alice)
    with transaction(engine) as session:
        first = tickets.respond(session, admin, ticket.id, "  Try again  ")
    assert (first.admin_response, first.admin_id, first.admin_name, first.status) == (
        "Try again",
        admin.id,
        "Admin",
        "open",
    )
    with transaction(engine) as session:
        edited = tickets.respond(session, other_admin, ticket.id, "Fixed", expected_updated_at=first.updated_at)
    assert (edited.admin_response, edited.admin_id) == ("Fixed", other_admin.id)
    with pytest.raises(ConflictError):  # saved over a form loaded before the edit
        with transaction(engine) as session:
            tickets.respond(session, admin, ticket.id, "Stale", expected_updated_at=first.updated_at)
    with pytest.raises(ValidationError) as empty:
        with transaction(engine) as session:
            tickets.respond(session, admin, ticket.id, "  ")
    assert empty.value.field == "response"
    force_status(engine, ticket.id, "closed")
    with pytest.raises(ValidationError) as closed:
        with transaction(engine) as session:
            tickets.respond(session, admin, ticket.id, "Too late")
    assert closed.value.field == "response"
    assert get(engine, alice, ticket.id).ticket.admin_response == "Fixed"


def audit_actions(engine, ticket_id: uuid.UUID) -> list[tuple[str, dict]]:
    with transaction(engine) as session:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.target_id == str(ticket_id)).order_by(AuditLog.seq)
        ).all()
        return [(r.action, r.changes) for r in rows]


@pytest.mark.parametrize("status", ["open", "in_progress"])
def test_send_and_resolve_is_one_step_with_both_audit_rows(engine, people, status) -> None:
    admin, alice, _ = people
    ticket = open_ticket(engine, alice)
    force_status(engine, ticket.id, status)
    with transaction(engine) as session:
        done = tickets.respond(session, admin, ticket.id, "Fixed upstream", resolve=True)
    assert (done.status, done.admin_response, done.admin_id) == ("resolved", "Fixed upstream", admin.id)
    assert done.resolved_at is not None
    assert audit_actions(engine, ticket.id) == [
        ("ticket.answer", {"admin_response": "answered", "length": 14}),
        ("ticket.status", {"status": [status, "resolved"]}),
    ]


@pytest.mark.parametrize("status", ["resolved", "closed"])
def test_send_and_resolve_refuses_what_cannot_be_resolved_and_writes_nothing(engine, people, status) -> None:
    admin, alice, _ = people
    ticket = open_ticket(engine, alice)
    force_status(engine, ticket.id, status)
    with pytest.raises(ValidationError) as refused:
        with transaction(engine) as session:
            tickets.respond(session, admin, ticket.id, "Again", resolve=True)
    assert refused.value.field == ("status" if status == "resolved" else "response")
    assert get(engine, alice, ticket.id).ticket.admin_response is None
    assert audit_actions(engine, ticket.id) == []


def test_a_failed_resolve_leaves_no_answer_behind(engine, people) -> None:
    """The answer and the status change are one transaction: a conflict on one writes neither."""
    admin, alice, _ = people
    ticket = open_ticket(engine, alice)
    stale = ticket.updated_at
    with transaction(engine) as session:
        tickets.set_status(session, admin, ticket.id, "in_progress")
    with pytest.raises(ConflictError):
        with transaction(engine) as session:
            tickets.respond(session, admin, ticket.id, "Done", expected_updated_at=stale, resolve=True)
    row = get(engine, alice, ticket.id).ticket
    assert (row.status, row.admin_response) == ("in_progress", None)


def test_the_queue_lists_the_linked_calls_status_and_error(engine, people) -> None:
    admin, alice, _ = people
    with transaction(engine) as session:
        log = Log(user_id=alice.id, model_id="m", request_type="chat", status_code=502, error_message="upstream broke")
        session.add(log)
        session.flush()
        call_id = log.id
    about = open_ticket(engine, alice, subject="Broken", log_id=call_id)
    plain = open_ticket(engine, alice, subject="A question")
    with transaction(engine) as session:
        rows = {r.id: r for r in tickets.list_queue(session, admin).rows}
    assert (rows[about.id].call_status, rows[about.id].call_error, rows[about.id].call_in_logs) == (
        502,
        "upstream broke",
        True,
    )
    assert (rows[plain.id].call_status, rows[plain.id].call_error, rows[plain.id].call_in_logs) == (None, None, False)
    assert get(engine, admin, about.id).call.error_message == "upstream broke"


# --- reopening ------------------------------------------------------------------------------


def reopen(engine, user: User, ticket_id: uuid.UUID, follow_up: str = "Still broken") -> tickets.TicketRow:
    with transaction(engine) as session:
        return tickets.reopen(session, user, ticket_id, follow_up)


def test_the_owner_reopens_a_resolved_ticket_with_a_follow_up(engine, people) -> None:
    admin, alice, _ = people
    ticket = open_ticket(engine, alice)
    with transaction(engine) as session:
        tickets.respond(session, admin, ticket.id, "Restart it")
    assert set_status(engine, admin, ticket.id, "resolved").can_reopen
    row = reopen(engine, alice, ticket.id, "  Restarted, still broken  ")
    assert (row.status, row.resolved_at, row.admin_response) == ("open", None, None)
    detail = get(engine, admin, ticket.id)
    assert detail.ticket.message == "Calls time out"  # the first message stays where it was
    history = [(m.body, m.author_name, m.from_owner) for m in detail.history]
    assert history == [("Restart it", "Admin", False), ("Restarted, still broken", "Alice", True)]
    # Answered and resolved again, then reopened again: the history keeps growing in order.
    with transaction(engine) as session:
        tickets.respond(session, admin, ticket.id, "Patched")
    set_status(engine, admin, ticket.id, "resolved")
    reopen(engine, alice, ticket.id, "Works now, thanks; one more thing")
    bodies = [m.body for m in get(engine, alice, ticket.id).history]
    assert bodies == ["Restart it", "Restarted, still broken", "Patched", "Works now, thanks; one more thing"]


@pytest.mark.parametrize("status", ["open", "in_progress", "closed"])
def test_only_a_resolved_ticket_can_be_reopened(engine, people, status) -> None:
    _, alice, _ = people
    ticket = open_ticket(engine, alice)
    force_status(engine, ticket.id, status)
    with pytest.raises(ValidationError) as refused:
        reopen(engine, alice, ticket.id)
    assert refused.value.field == "status" and STATUS_LABELS[status] in refused.value.message
    if status == "closed":
        assert "final" in refused.value.message
    assert get(engine, alice, ticket.id).ticket.status == status and get(engine, alice, ticket.id).history == []


def test_reopening_needs_a_follow_up_and_the_owner(engine, people) -> None:
    admin, alice, bob = people
    ticket = open_ticket(engine, alice)
    force_status(engine, ticket.id, "resolved")
    with pytest.raises(ValidationError) as empty:
        reopen(engine, alice, ticket.id, "   ")
    assert empty.value.field == "follow_up"
    with pytest.raises(PermissionDenied):  # an admin sees the ticket, but it is not theirs to reopen
        reopen(engine, admin, ticket.id)
    with pytest.raises(NotFound):
        reopen(engine, bob, ticket.id)
    detail = get(engine, alice, ticket.id)
    assert detail.ticket.status == "resolved" and detail.ticket.resolved_at is not None and detail.history == []


# --- who may see what -----------------------------------------------------------------------


def test_a_user_cannot_read_or_change_another_users_tickets(engine, people) -> None:
    _, alice, bob = people
    ticket = open_ticket(engine, alice)
    force_status(engine, ticket.id, "resolved")
    with pytest.raises(NotFound) as hidden:
        get(engine, bob, ticket.id)
    with pytest.raises(NotFound) as missing:
        get(engine, bob, uuid.uuid4())
    assert str(hidden.value) == str(missing.value)  # someone else's ticket looks like no ticket
    with pytest.raises(NotFound):
        reopen(engine, bob, ticket.id)
    for admin_only in (
        lambda s: tickets.respond(s, bob, ticket.id, "mine now"),
        lambda s: tickets.set_status(s, bob, ticket.id, "closed"),
        lambda s: tickets.list_queue(s, bob),
    ):
        with pytest.raises(PermissionDenied):
            with transaction(engine) as session:
                admin_only(session)
    with transaction(engine) as session:
        assert tickets.list_mine(session, bob) == []
    detail = get(engine, alice, ticket.id)
    assert detail.ticket.status == "resolved" and detail.ticket.admin_response is None


# --- the admin's queue ----------------------------------------------------------------------


def test_the_queue_filters_by_status_and_user_sorts_by_age_and_pages(engine, people) -> None:
    admin, alice, bob = people
    subjects = ["a-old", "b-mid", "a-new", "b-newest"]
    ids = {}
    for age, subject in zip((40, 30, 20, 10), subjects, strict=True):
        owner = alice if subject.startswith("a") else bob
        ids[subject] = open_ticket(engine, owner, subject).id
        with transaction(engine) as session:
            session.execute(
                update(Ticket).where(Ticket.id == ids[subject]).values(created_at=utcnow() - timedelta(minutes=age))
            )
    set_status(engine, admin, ids["b-mid"], "in_progress")

    def queue(**filters) -> tickets.TicketPage:
        with transaction(engine) as session:
            return tickets.list_queue(session, admin, **filters)

    assert [r.subject for r in queue().rows] == subjects
    assert [r.subject for r in queue(oldest_first=False).rows] == subjects[::-1]
    assert [r.subject for r in queue(status="open").rows] == ["a-old", "a-new", "b-newest"]
    assert [(r.subject, r.owner_email) for r in queue(user_id=bob.id, status="in_progress").rows] == [
        ("b-mid", "bob@example.com")
    ]
    page = queue(page=2, page_size=3)
    assert (page.total, page.pages, page.page, [r.subject for r in page.rows]) == (4, 2, 2, ["b-newest"])
    assert queue(page=99, page_size=3).page == 2
    with pytest.raises(ValidationError):
        queue(status="lost")


def test_open_count_counts_only_tickets_waiting_for_an_admin(engine, people) -> None:
    admin, alice, bob = people
    first, second = open_ticket(engine, alice), open_ticket(engine, bob)
    open_ticket(engine, bob)
    set_status(engine, admin, first.id, "in_progress")
    set_status(engine, admin, second.id, "resolved")
    with transaction(engine) as session:
        assert tickets.open_count(session) == 1
    reopen(engine, bob, second.id)
    with transaction(engine) as session:
        assert tickets.open_count(session) == 2


def test_deleting_the_answering_admin_keeps_the_history(engine, people) -> None:
    admin, alice, _ = people
    ticket = open_ticket(engine, alice)
    with transaction(engine) as session:
        tickets.respond(session, admin, ticket.id, "Restart it")
    force_status(engine, ticket.id, "resolved")
    reopen(engine, alice, ticket.id)
    with transaction(engine) as session:
        session.execute(delete(User).where(User.id == admin.id))
    detail = get(engine, alice, ticket.id)
    assert [(m.body, m.author_name, m.from_owner) for m in detail.history] == [
        ("Restart it", None, False),
        ("Still broken", "Alice", True),
    ]
    assert detail.ticket.admin_id is None
    with transaction(engine) as session:  # and deleting the owner takes the ticket and its history
        session.execute(delete(User).where(User.id == alice.id))
        assert session.scalar(select(func.count()).select_from(TicketMessage)) == 0
