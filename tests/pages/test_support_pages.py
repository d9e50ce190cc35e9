"""Support and the ticket queue in AppTest: opening, answering (and Send and resolve), moving, reopening, closing;
the call's error in the queue; the ticket in the URL; refusals; plain text."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from streamlit.testing.v1 import AppTest

from mindroute.db import transaction
from mindroute.models import AuditLog, Log, Ticket, TicketMessage, User, utcnow
from mindroute.services import tickets
from mindroute.ui import navigation
from tests.pages.helpers import add_user, app_for, click, error_under, markdown_texts, sign_in, texts

SUPPORT = "pages/workspace/support.py"
QUEUE = "pages/admin/tickets.py"
HOSTILE = "![x](http://evil.example/a.png) <b>hi</b>"


def on_page(engine, monkeypatch, email: str, page: str) -> AppTest:
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def load(engine, email: str) -> User:
    with transaction(engine) as session:
        return session.scalar(select(User).where(User.email == email))


def open_ticket(engine, email: str, subject: str, age: timedelta = timedelta(0)) -> uuid.UUID:
    owner = load(engine, email)
    with transaction(engine) as session:
        row = tickets.open_ticket(session, owner, subject, f"Details of {subject}")
        session.execute(update(Ticket).where(Ticket.id == row.id).values(created_at=utcnow() - age))
    return row.id


def stored(engine, ticket_id: uuid.UUID) -> Ticket:
    with transaction(engine) as session:
        return session.get(Ticket, ticket_id)


def ticket_count(engine) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(Ticket))


def table(at: AppTest, column: str):
    """The table showing this column (keys of read-only tables are not kept in the element tree)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def queue_subjects(at: AppTest) -> list[str]:
    return list(table(at, "User")["Subject"])


def click_queue_row(at: AppTest, subject: str) -> AppTest:
    """What a click on the queue's row of this subject does: the table's selection state, then a rerun."""
    queue = next(d for d in at.dataframe if "User" in d.value.columns)
    row = list(queue.value["Subject"]).index(subject)
    at.session_state[queue.key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    return at.run()


def fill_ticket(at: AppTest, subject: str, message: str) -> AppTest:
    at.text_input(key="support_subject").input(subject)
    at.text_area(key="support_message").set_value(message)
    return click(at, "support_submit")


# --- the user's side --------------------------------------------------------------------------


def test_open_a_ticket_about_one_of_my_calls(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    add_user(engine, "other@example.com")
    with transaction(engine) as session:
        mine = Log(
            user_id=load(engine, "user@example.com").id,
            model_id="gpt-test",
            request_type="chat",
            status_code=502,
            tokens_used=1234,
        )
        theirs = Log(user_id=load(engine, "other@example.com").id, model_id="secret-model", request_type="chat")
        session.add_all([mine, theirs])
    open_ticket(engine, "other@example.com", "Someone else's ticket")
    at = on_page(engine, monkeypatch, "user@example.com", SUPPORT)
    assert "You have not opened any tickets." in texts(at)
    call_picker = at.selectbox(key="support_call")
    assert len(call_picker.options) == 2  # "no particular call" and the user's one call
    assert "gpt-test · HTTP 502" in call_picker.options[1]

    call_picker.set_value(str(mine.id))
    at = fill_ticket(at, "The call failed", "It answered 502.")
    assert not at.exception, at.exception
    assert "Ticket opened." in texts(at)
    with transaction(engine) as session:
        ticket = session.scalar(select(Ticket).where(Ticket.log_id.is_not(None)))
    assert (ticket.subject, ticket.message, ticket.status, ticket.log_id) == (
        "The call failed",
        "It answered 502.",
        "open",
        mine.id,
    )
    assert list(table(at, "Answered")["Subject"]) == ["The call failed"]  # never someone else's ticket
    assert any(t.value.startswith("About the call: ") and "gpt-test" in t.value for t in at.text)
    assert "No answer yet." in texts(at)
    assert at.text_input(key="support_subject").value == ""  # ready for the next ticket


@pytest.mark.parametrize(
    ("subject", "message", "field", "error"),
    [
        ("", "Some details", "support_subject", "Subject is required"),
        ("x" * 256, "Some details", "support_subject", "Subject must be at most 255 characters (got 256)"),
        ("A fine subject", "   ", "support_message", "Message is required"),
    ],
    ids=["empty subject", "long subject", "empty message"],
)
def test_bad_ticket_input_is_refused_at_the_field(engine, monkeypatch, subject, message, field, error) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    at = on_page(engine, monkeypatch, "user@example.com", SUPPORT)
    at = fill_ticket(at, subject, message)
    assert error_under(at, field) == error
    assert ticket_count(engine) == 0


def test_a_subject_with_markdown_and_html_is_shown_literally(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    at = on_page(engine, monkeypatch, "user@example.com", SUPPORT)
    at = fill_ticket(at, HOSTILE, f"Message {HOSTILE}")
    assert HOSTILE in [t.value for t in at.text]
    assert f"Message {HOSTILE}" in [t.value for t in at.text]
    assert list(table(at, "Answered")["Subject"]) == [HOSTILE]
    assert all("evil.example" not in value for value in markdown_texts(at))

    at = on_page(engine, monkeypatch, "admin@example.com", QUEUE)
    assert queue_subjects(at) == [HOSTILE]
    assert HOSTILE in [t.value for t in at.text]
    assert all("evil.example" not in value for value in markdown_texts(at))


# --- the queue and a ticket's life --------------------------------------------------------------


def test_queue_filters_by_status_and_user_and_sorts_by_age(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "alice@example.com")
    add_user(engine, "bob@example.com")
    old = open_ticket(engine, "alice@example.com", "Oldest, Alice", timedelta(days=3))
    open_ticket(engine, "bob@example.com", "Middle, Bob", timedelta(days=2))
    open_ticket(engine, "alice@example.com", "Newest, Alice", timedelta(days=1))
    with transaction(engine) as session:
        tickets.set_status(session, load(engine, "admin@example.com"), old, "in_progress")
    at = on_page(engine, monkeypatch, "admin@example.com", QUEUE)
    assert queue_subjects(at) == ["Oldest, Alice", "Middle, Bob", "Newest, Alice"]
    assert "Page 1 of 1 · 3 tickets" in [c.value for c in at.caption]

    at.selectbox(key="queue_oldest_first").set_value(False).run()
    assert queue_subjects(at) == ["Newest, Alice", "Middle, Bob", "Oldest, Alice"]

    at.selectbox(key="queue_status").set_value("open").run()
    assert queue_subjects(at) == ["Newest, Alice", "Middle, Bob"]

    at.text_input(key="queue_search").input("alice").run()
    at.selectbox(key="queue_owner").set_value(str(load(engine, "alice@example.com").id)).run()
    assert queue_subjects(at) == ["Newest, Alice"]
    at.selectbox(key="queue_status").set_value("any").run()
    assert queue_subjects(at) == ["Newest, Alice", "Oldest, Alice"]
    assert set(table(at, "User")["User"]) == {"alice@example.com"}


def test_a_ticket_is_answered_resolved_reopened_with_a_follow_up_and_closed(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_user(engine, "user@example.com")
    tid = open_ticket(engine, "user@example.com", "Cannot call the model")

    admin = on_page(engine, monkeypatch, "admin@example.com", QUEUE)
    assert [b.key for b in admin.button if b.key.startswith("queue_to_")] == [
        "queue_to_in_progress",
        "queue_to_resolved",
        "queue_to_closed",
    ]
    admin.text_area(key="queue_response_text").input("Try again with a smaller prompt.")
    admin = click(admin, "queue_response_save")
    assert "Answer saved." in texts(admin)
    admin = click(admin, "queue_to_in_progress")
    assert stored(engine, tid).status == "in_progress"
    assert "changed since you opened it" not in texts(admin)  # our own changes are not someone else's
    admin = click(admin, "queue_to_resolved")
    resolved = stored(engine, tid)
    assert (resolved.status, resolved.admin_response) == ("resolved", "Try again with a smaller prompt.")
    assert resolved.resolved_at is not None
    assert resolved.admin_id == load(engine, "admin@example.com").id

    user = on_page(engine, monkeypatch, "user@example.com", SUPPORT)
    assert "Try again with a smaller prompt." in [t.value for t in user.text]
    assert "Answered by Ada Admin" in [t.value for t in user.text]
    user = click(user, "support_reopen_submit")
    assert error_under(user, "support_follow_up") == "Follow-up is required"
    user.text_area(key="support_follow_up").input("Still failing with a short prompt.")
    user = click(user, "support_reopen_submit")
    assert "Ticket reopened." in texts(user)
    reopened = stored(engine, tid)
    assert (reopened.status, reopened.resolved_at, reopened.admin_response) == ("open", None, None)
    shown = [t.value for t in user.text]
    answer, follow_up = (
        shown.index("Try again with a smaller prompt."),
        shown.index("Still failing with a short prompt."),
    )
    assert answer < follow_up  # the history reads in order
    assert "support_reopen_submit" not in [b.key for b in user.button]  # only a resolved ticket reopens

    admin.run()
    assert "This ticket was changed since you opened it." in texts(admin)  # the user's reopening
    assert "Still failing with a short prompt." in [t.value for t in admin.text]
    admin = click(admin, "queue_to_closed")
    assert stored(engine, tid).status == "closed"
    assert [b.key for b in admin.button if b.key.startswith("queue_to_")] == []
    assert "Closed is final: this ticket can no longer change." in texts(admin)
    assert "queue_response_save" not in [b.key for b in admin.button]

    user.run()
    assert "This ticket is closed, which is final." in texts(user)
    assert "support_reopen_submit" not in [b.key for b in user.button]
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(TicketMessage)) == 2


def test_an_answer_over_someone_elses_change_is_refused(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "other-admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    tid = open_ticket(engine, "user@example.com", "Help")
    at = on_page(engine, monkeypatch, "admin@example.com", QUEUE)
    with transaction(engine) as session:  # another admin answers while this form is open
        tickets.respond(session, load(engine, "other-admin@example.com"), tid, "Their answer")
    at.text_area(key="queue_response_text").input("My answer")
    at = click(at, "queue_response_save")
    assert "This ticket was changed since you opened it" in error_under(at, "queue_response_text")
    assert stored(engine, tid).admin_response == "Their answer"
    at = click(at, "queue_response_reload")
    assert at.text_area(key="queue_response_text").value == "Their answer"


def test_a_ticket_about_a_call_shows_the_call_in_the_queue(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    owner = load(engine, "user@example.com")
    with transaction(engine) as session:
        log = Log(user_id=owner.id, model_id="gpt-test", request_type="chat", status_code=429, tokens_used=77)
        session.add(log)
        session.flush()
        tickets.open_ticket(session, owner, "Rate limited", "Why?", log.id)
    at = on_page(engine, monkeypatch, "admin@example.com", QUEUE)
    call = table(at, "Model").iloc[0]
    assert (call["Model"], call["Status"], call["Tokens"]) == ("gpt-test", "429", "77")


def on_page_with(engine, monkeypatch, email: str, page: str, query: dict[str, str]) -> AppTest:
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_the_queue_shows_the_linked_calls_error_as_plain_text(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    owner = load(engine, "user@example.com")
    with transaction(engine) as session:
        log = Log(user_id=owner.id, model_id="gpt-test", request_type="chat", status_code=502, error_message=HOSTILE)
        session.add(log)
        session.flush()
        broken = tickets.open_ticket(session, owner, "Broken", "It failed", log.id).id
    open_ticket(engine, "user@example.com", "A question", age=timedelta(hours=1))
    at = on_page(engine, monkeypatch, "admin@example.com", QUEUE)
    at = click_queue_row(at, "Broken")
    assert at.query_params["ticket"] == str(broken)
    listing = table(at, "User").set_index("Subject")
    assert listing.loc["Broken", "Call"] == f"502 · {HOSTILE}"
    assert listing.loc["A question", "Call"] == ""
    assert HOSTILE in [c.value for c in at.code]  # the whole error, as code: never Markdown
    assert not any("evil.example" in m for m in markdown_texts(at))
    links = [link for link in at.page_link if link.proto.query_string]
    assert [link.value for link in links] == ["Open the call in Logs"]
    assert links[0].proto.query_string == f"call={log.id}"


def test_send_and_resolve_answers_and_resolves_in_one_step(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    tid = open_ticket(engine, "user@example.com", "Cannot call the model")
    at = on_page(engine, monkeypatch, "admin@example.com", QUEUE)
    at = click(at, "queue_response_resolve")
    assert error_under(at, "queue_response_text") == "Response is required"
    assert stored(engine, tid).status == "open"
    at.text_area(key="queue_response_text").input("Fixed upstream.")
    at = click(at, "queue_response_resolve")
    assert "Answer sent and the ticket resolved." in texts(at)
    done = stored(engine, tid)
    assert (done.status, done.admin_response) == ("resolved", "Fixed upstream.")
    assert done.resolved_at is not None
    with transaction(engine) as session:
        actions = session.scalars(select(AuditLog.action).where(AuditLog.target_id == str(tid))).all()
    assert sorted(actions) == ["ticket.answer", "ticket.status"]
    assert "queue_response_resolve" not in [b.key for b in at.button]  # resolved: only Save answer is left
    assert "queue_response_save" in [b.key for b in at.button]


def test_the_queue_keeps_the_ticket_being_viewed_in_the_url(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    old = open_ticket(engine, "user@example.com", "Oldest", age=timedelta(days=2))
    new = open_ticket(engine, "user@example.com", "Newest")
    at = on_page(engine, monkeypatch, "admin@example.com", QUEUE)
    assert at.query_params["ticket"] == str(old)  # oldest first: the first on the page
    assert "Oldest" in [t.value for t in at.text] and "Newest" not in [t.value for t in at.text]
    at = click_queue_row(at, "Newest")  # a click on its row opens it
    assert at.query_params["ticket"] == str(new)
    assert "Newest" in [t.value for t in at.text] and "Oldest" not in [t.value for t in at.text]
    at = click_queue_row(at, "Oldest")
    assert at.query_params["ticket"] == str(old)
    assert "Oldest" in [t.value for t in at.text]
    at.run()  # a rerun is not a click: the ticket stays
    assert at.query_params["ticket"] == str(old)

    shared = on_page_with(engine, monkeypatch, "admin@example.com", QUEUE, {"ticket": str(new)})
    assert shared.query_params["ticket"] == str(new)
    assert "Newest" in [t.value for t in shared.text]

    shared.selectbox(key="queue_page_size").set_value(10).run()
    shared.selectbox(key="queue_status").set_value("closed").run()  # no ticket on the page: it stays open
    assert shared.query_params["ticket"] == str(new) and "Newest" in [t.value for t in shared.text]


@pytest.mark.parametrize("value", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_a_queue_link_to_no_ticket_says_so(engine, monkeypatch, value: str) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    tid = open_ticket(engine, "user@example.com", "Only one")
    at = on_page_with(engine, monkeypatch, "admin@example.com", QUEUE, {"ticket": value})
    assert "The linked ticket was not found" in " ".join(w.value for w in at.warning)
    assert at.query_params["ticket"] == str(tid)


def test_support_keeps_the_ticket_being_viewed_in_the_url(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    add_user(engine, "other@example.com")
    first = open_ticket(engine, "user@example.com", "First", age=timedelta(days=1))
    second = open_ticket(engine, "user@example.com", "Second")
    theirs = open_ticket(engine, "other@example.com", "Other's secret subject")
    at = on_page(engine, monkeypatch, "user@example.com", SUPPORT)
    assert at.query_params["ticket"] == str(second)  # newest first
    at.selectbox(key="support_selected").set_value(str(first)).run()
    assert at.query_params["ticket"] == str(first)

    again = on_page_with(engine, monkeypatch, "user@example.com", SUPPORT, {"ticket": str(first)})
    assert again.selectbox(key="support_selected").value == str(first)
    assert "Details of First" in [t.value for t in again.text]

    foreign = on_page_with(engine, monkeypatch, "user@example.com", SUPPORT, {"ticket": str(theirs)})
    assert "The linked ticket is not one of your tickets" in " ".join(w.value for w in foreign.warning)
    assert "Other's secret subject" not in texts(foreign)
    assert foreign.query_params["ticket"] == str(second)
    assert "Times are in UTC." in [c.value for c in foreign.caption]


def test_a_user_cannot_open_the_queue(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    at = sign_in(app_for(engine, monkeypatch).run(), "user@example.com")
    with pytest.raises(Exception):  # noqa: B017 - AppTest raises for a page outside the navigation
        at.switch_page(QUEUE).run()


def test_the_queue_title_carries_the_open_count() -> None:
    queue = next(p for p in navigation.PAGES if p.path == QUEUE)
    assert navigation.page_title(queue, open_tickets=3) == "Ticket queue (3)"
    assert navigation.page_title(queue, open_tickets=0) == "Ticket queue"
    assert navigation.page_title(navigation.PAGES[0], open_tickets=3) == "Overview"


def test_a_row_click_opens_the_ticket_even_after_the_rows_changed(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    first = open_ticket(engine, "user@example.com", "First", age=timedelta(days=2))
    second = open_ticket(engine, "user@example.com", "Second", age=timedelta(days=1))
    at = on_page(engine, monkeypatch, "admin@example.com", QUEUE)
    at.selectbox(key="queue_status").set_value("open").run()
    at = click_queue_row(at, "First")
    assert at.query_params["ticket"] == str(first)
    at = click(at, "queue_to_resolved")  # First leaves the open tickets: the table is a new one
    assert queue_subjects(at) == ["Second"]
    assert at.query_params["ticket"] == str(first) and "First" in [t.value for t in at.text]
    at = click_queue_row(at, "Second")  # the same row index as before, another ticket: it opens
    assert at.query_params["ticket"] == str(second) and "Second" in [t.value for t in at.text]
