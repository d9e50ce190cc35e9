"""The playground's saved conversations in AppTest: kept over a reload, New, Rename, Delete, Regenerate, Copy,
side by side, and the client's address in the Logs row."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from mindroute.db import transaction
from mindroute.models import Conversation, ConversationMessage, Log, Provider, User, UserProvider
from tests.pages.helpers import add_user, app_for, sign_in, texts
from tests.pages.test_playground import PAGE, grant_provider, logs, send, user_on_playground
from tests.providers.fake_base import SLOW_FIRST_BYTE_S
from tests.providers.fakes import FakeOpenAI, FakeServer, expected_answer
from tests.providers.holding import HoldingOpenAI


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeServer]:
    server = FakeServer(FakeOpenAI()).start()
    yield server
    server.stop()


def saved(engine) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every conversation's title and its (role, content) messages."""
    with transaction(engine) as session:
        found = []
        for row in session.scalars(select(Conversation).order_by(Conversation.created_at)):
            messages = session.scalars(
                select(ConversationMessage)
                .where(ConversationMessage.conversation_id == row.id)
                .order_by(ConversationMessage.position)
            )
            found.append((row.title, [(m.role, m.content) for m in messages]))
        return found


def answers(at) -> list[str]:
    return [m.value for m in at.markdown]


def reopened(engine, monkeypatch, conversation: str | None, email: str = "user@example.com"):
    """A new tab (a new session) signed in as `email`, opening the playground with `?conversation=`."""
    at = sign_in(app_for(engine, monkeypatch).run(), email).switch_page(PAGE)
    if conversation is not None:
        at.query_params["conversation"] = conversation
    return at.run()


def test_admin_without_providers_is_sent_to_the_providers_page(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com").switch_page(PAGE).run()
    assert "Add a provider on the Providers page" in texts(at)
    assert "Ask an administrator" not in texts(at)
    [link] = at.get("page_link")
    assert "providers" in link.proto.page


def test_settings_sit_at_the_top_of_the_page_not_in_the_sidebar(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    at.run()
    for key in ("pg_provider", "pg_system", "pg_temperature", "pg_stream"):
        assert key not in {w.key for w in at.sidebar.get("selectbox") + at.sidebar.get("text_area")}
    assert at.selectbox(key="pg_provider").value and at.toggle(key="pg_stream").value is True
    assert at.slider(key="pg_temperature").value == 0.7 and at.text_area(key="pg_system").value == ""
    assert "Fake OpenAI · test-model · temperature 0.7 · up to 1,024 tokens" in " ".join(
        re.sub(r"\\(.)", r"\1", c.value) for c in at.caption
    )


def test_the_conversation_is_saved_and_survives_a_reload(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    at.run()
    at.text_area(key="pg_system").input("be brief")
    at.slider(key="pg_temperature").set_value(0.3)
    at = send(at.run(), "first question")
    at = send(at, "second question")
    assert not at.exception, at.exception
    conversation = at.query_params["conversation"]
    [(title, messages)] = saved(engine)
    assert title == "first question"
    assert messages == [
        ("user", "first question"),
        ("assistant", expected_answer("first question")),
        ("user", "second question"),
        ("assistant", expected_answer("second question")),
    ]
    with transaction(engine) as session:
        meta = session.scalars(select(ConversationMessage.meta).order_by(ConversationMessage.position)).all()
        log_ids = [str(i) for i in session.scalars(select(Log.id).order_by(Log.created_at))]
    assert [m["log_id"] for m in meta[1::2]] == log_ids  # each answer names its Logs row

    again = reopened(engine, monkeypatch, conversation)  # a reload: a new session with the URL
    assert not again.exception, again.exception
    assert [str(t.value) for t in again.main.get("text")] == ["first question", "second question"]
    assert expected_answer("second question") in answers(again)
    assert again.text_area(key="pg_system").value == "be brief"  # the conversation's settings come back
    assert again.slider(key="pg_temperature").value == 0.3
    again = send(again, "third")  # and it carries on, with its history
    assert [m["role"] for m in logs(engine)[-1].request_body["messages"]] == ["system"] + ["user", "assistant"] * 2 + [
        "user"
    ]
    assert len(saved(engine)[0][1]) == 6


def test_new_then_pick_from_the_list_newest_first(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    at = send(at.run(), "older one")
    at.button(key="pg_new").click().run()
    assert "conversation" not in at.query_params and expected_answer("older one") not in answers(at)
    at = send(at, "newer one")
    assert len(saved(engine)) == 2
    at.button(key="pg_new").click().run()
    picker = at.selectbox(key="pg_conversation")
    assert picker.options[0] == "New conversation"  # the labels, newest first
    assert picker.options[1].startswith("newer one · ") and picker.options[2].startswith("older one · ")
    picker.select_index(2).run()
    assert expected_answer("older one") in answers(at) and expected_answer("newer one") not in answers(at)


def test_rename_and_delete_with_confirmation(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    at = send(at.run(), "to be renamed")
    title_key = next(t.key for t in at.text_input if t.key.startswith("pg_title_"))
    at.text_input(key=title_key).input("   ")
    at.button(key="pg_rename").click().run()
    assert "A title is required" in texts(at) and saved(engine)[0][0] == "to be renamed"
    at.text_input(key=title_key).input("Renamed <b>bold</b>")
    at.button(key="pg_rename").click().run()
    assert saved(engine)[0][0] == "Renamed <b>bold</b>"
    assert "Renamed." in texts(at)

    at.button(key="pg_delete").click().run()
    assert "Delete “Renamed <b>bold</b>” and its messages?" in texts(at)
    assert len(saved(engine)) == 1  # not before the confirmation
    at.button(key="pg_delete_cancel").click().run()
    assert len(saved(engine)) == 1 and expected_answer("to be renamed") in answers(at)
    at.button(key="pg_delete").click().run()
    at.button(key="pg_delete_confirm").click().run()
    assert saved(engine) == [] and "Conversation deleted." in texts(at)
    assert "conversation" not in at.query_params and expected_answer("to be renamed") not in answers(at)
    assert len(logs(engine)) == 1  # the call stays in Logs


def test_someone_elses_conversation_is_not_found(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    at = send(at.run(), "private matter")
    conversation = at.query_params["conversation"]
    other = add_user(engine, "other@example.com")
    with transaction(engine) as session:
        session.add(UserProvider(user_id=other.id, provider_id=session.scalar(select(Provider.id)), allowed=True))
    theirs = reopened(engine, monkeypatch, conversation, "other@example.com")
    assert "This conversation does not exist or was deleted" in texts(theirs)
    assert "private matter" not in [str(t.value) for t in theirs.text]
    assert theirs.selectbox(key="pg_conversation").options == ["New conversation"]  # only "New conversation"
    mine = reopened(engine, monkeypatch, "not-a-uuid")
    assert "This conversation does not exist or was deleted" in texts(mine)


def test_regenerate_replaces_the_last_answer_and_logs_a_new_call(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    at = send(at.run(), "say it twice")
    at.chat_input(key="pg_input").set_value(None)
    first_log = logs(engine)[0].id
    at.selectbox(key=next(s.key for s in at.selectbox if s.key.startswith("pg_model_"))).set_value("other-model")
    at.button(key="pg_regenerate").click().run()
    assert not at.exception, at.exception
    rows = logs(engine)
    assert len(rows) == 2 and rows[1].model_id == "other-model"
    assert [m["role"] for m in rows[1].request_body["messages"]] == ["user"]  # the old answer is not sent
    [(_, messages)] = saved(engine)
    assert [r for r, _ in messages] == ["user", "assistant"]
    with transaction(engine) as session:
        last = session.scalar(select(ConversationMessage).where(ConversationMessage.position == 1))
    assert last.meta["log_id"] == str(rows[1].id) != str(first_log) and last.meta["model"] == "other-model"
    assert answers(at).count(expected_answer("say it twice")) == 1  # shown once: replaced, not added


def test_copy_shows_the_answer_as_code_never_as_html(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    at = send(at.run(), "<script>alert(1)</script> copy me")
    [code] = at.code
    assert code.value == expected_answer("<script>alert(1)</script> copy me")
    assert all(m.proto.allow_html is False for m in at.markdown)


def test_side_by_side_asks_two_models_and_logs_each(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    at.run()
    at.toggle(key="pg_compare").set_value(True)
    at.run()
    picker = at.multiselect(key="pg_compare_models")
    both = list(picker.value)
    assert len(both) == 2
    picker.set_value(both[:1])
    at = send(at.run(), "only one")
    assert "Choose two or three models to compare." in texts(at) and logs(engine) == []
    at.multiselect(key="pg_compare_models").set_value(both)
    at = send(at.run(), "compare us")
    assert not at.exception, at.exception
    rows = logs(engine)
    assert sorted(r.model_id for r in rows) == ["other-model", "test-model"]
    assert all(r.status_code == 200 and r.request_body["source"] == "playground" for r in rows)
    assert answers(at).count(expected_answer("compare us")) == 2
    captions = re.sub(r"\\(.)", r"\1", " ".join(c.value for c in at.caption))
    assert "Fake OpenAI · test-model" in captions and "Fake OpenAI · other-model" in captions
    assert saved(engine) == []  # a comparison is not a saved conversation


def test_the_clients_address_reaches_the_logs_row(engine, monkeypatch, openai_fake) -> None:
    monkeypatch.setattr("mindroute.ui.session.client_ip", lambda: "198.51.100.7")
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake)
    send(at.run(), "where am I")
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Log)) == 1
        assert session.scalar(select(Log.ip)) == "198.51.100.7"


def test_side_by_side_calls_run_at_the_same_time(engine, monkeypatch, openai_fake) -> None:
    """Two providers whose model answers after SLOW_FIRST_BYTE_S: together in about that time, not twice it."""
    at = user_on_playground(engine, monkeypatch)
    first = grant_provider(engine, "user@example.com", openai_fake, models=["slow"])
    with transaction(engine) as session:
        second = Provider(
            name="Second OpenAI",
            protocol="openai",
            endpoint_url=first.endpoint_url,
            api_key=first.api_key,
            settings={"models": ["slow"], "default_model": "slow", "prices": {}},
        )
        session.add(second)
        session.flush()
        session.add(UserProvider(user_id=logs_owner(engine), provider_id=second.id, allowed=True))
    at.run()
    at.toggle(key="pg_compare").set_value(True)
    at.run()
    assert len(at.multiselect(key="pg_compare_models").value) == 2
    started = time.monotonic()
    at.chat_input(key="pg_input").set_value("take your time")
    at.run(timeout=3 * SLOW_FIRST_BYTE_S)
    elapsed = time.monotonic() - started
    rows = logs(engine)
    assert len(rows) == 2 and all(r.duration >= SLOW_FIRST_BYTE_S * 1000 * 0.9 for r in rows)
    assert elapsed < SLOW_FIRST_BYTE_S * 1.7, elapsed


def logs_owner(engine):
    with transaction(engine) as session:
        return session.scalar(select(User.id).where(User.email == "user@example.com"))


@pytest.fixture(scope="module")
def holding_fake() -> Iterator[FakeServer]:
    server = FakeServer(HoldingOpenAI()).start()
    yield server
    server.stop()


def test_an_interrupted_side_by_side_ends_and_logs_every_call(engine, monkeypatch, holding_fake) -> None:
    """Stop (here AppTest's timeout, which stops the run the same way) while one model has answered and the other
    says nothing: both calls are logged, the silent one as stopped, and the round stays on the page."""
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", holding_fake, models=["test-model", "hold"])
    holding_fake.fake.reset()
    at.run()
    at.toggle(key="pg_compare").set_value(True)
    at.run()
    at.chat_input(key="pg_input").set_value("are you both there?")
    with pytest.raises(RuntimeError, match="timed out"):
        at.run(timeout=1.5)
    deadline = time.monotonic() + 2
    while len(logs(engine)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted((r.model_id, r.status_code) for r in logs(engine)) == [("hold", 499), ("test-model", 200)]
    [held] = [r for r in holding_fake.fake.requests if r.body["model"] == "hold"]
    assert held.disconnected.wait(1.0)  # its upstream request was closed
    at.chat_input(key="pg_input").set_value(None)
    at = at.run()
    assert not at.exception, at.exception
    assert "are you both there?" in [str(t.value) for t in at.main.get("text")]
    assert expected_answer("are you both there?") in answers(at)
    assert "stopped" in " ".join(c.value for c in at.caption)
