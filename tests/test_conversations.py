"""Saved Playground conversations (services/conversations.py) on both databases: each its owner's only, sizes
limited, a regenerated answer replacing the last one, deletes cascading."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, func, select

from mindroute.db import transaction
from mindroute.errors import NotFound, PermissionDenied
from mindroute.models import Conversation, ConversationMessage, Provider, User
from mindroute.services import conversations
from mindroute.services.conversations import NewMessage
from mindroute.validation import ValidationError


@pytest.fixture
def people(engine) -> tuple[User, User, Provider]:
    with transaction(engine) as session:
        alice = User(email="alice@example.com", name="Alice", password="x")
        bob = User(email="bob@example.com", name="Bob", password="x")
        provider = Provider(name="P", protocol="openai", endpoint_url="http://127.0.0.1:9/v1")
        session.add_all([alice, bob, provider])
    return alice, bob, provider


def exchange(engine, user: User, conversation_id: uuid.UUID, question: str, answer: str, provider=None, **meta):
    return conversations.save_exchange(
        engine,
        user,
        conversation_id,
        NewMessage("user", question, {"attachments": ["a.png"]}),
        NewMessage("assistant", answer, {"model": "m", "status": 200, "log_id": "x", **meta}),
        provider_id=provider.id if provider else None,
        model_id="m",
        settings={"temperature": 0.3, "system_prompt": "be brief", "api_key": "sk-never"},
    )


def message_count(engine) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(ConversationMessage))


def test_a_saved_exchange_is_read_back_in_order_with_its_meta_and_settings(engine, people) -> None:
    alice, _, provider = people
    cid = uuid.uuid4()
    summary = exchange(engine, alice, cid, "What is 2 + 2?\nShow your work", "4", provider, attachment_data="bytes")
    exchange(engine, alice, cid, "and 3 + 3?", "6", provider)
    assert summary.id == cid and summary.title == "What is 2 + 2?"  # the first line of the first question
    detail = conversations.get_conversation(engine, alice, cid)
    assert [(m.position, m.role, m.content) for m in detail.messages] == [
        (0, "user", "What is 2 + 2?\nShow your work"),
        (1, "assistant", "4"),
        (2, "user", "and 3 + 3?"),
        (3, "assistant", "6"),
    ]
    assert detail.messages[0].meta == {"attachments": ["a.png"]}
    assert detail.messages[1].meta == {"model": "m", "status": 200, "log_id": "x"}  # no attachment bytes kept
    assert detail.settings == {"temperature": 0.3, "system_prompt": "be brief"}  # only the known settings
    assert (detail.summary.provider_id, detail.summary.model_id) == (provider.id, "m")


def test_another_users_conversation_is_not_found_for_every_action(engine, people) -> None:
    alice, bob, _ = people
    cid = uuid.uuid4()
    exchange(engine, alice, cid, "mine", "yours truly")
    assert conversations.list_conversations(engine, bob) == []
    with pytest.raises(NotFound):
        conversations.get_conversation(engine, bob, cid)
    with pytest.raises(NotFound):
        conversations.rename_conversation(engine, bob, cid, "taken")
    with pytest.raises(NotFound):
        conversations.delete_conversation(engine, bob, cid)
    with pytest.raises(NotFound):  # nor can anything be added to it
        exchange(engine, bob, cid, "let me in", "no")
    detail = conversations.get_conversation(engine, alice, cid)
    assert detail.summary.title == "mine" and len(detail.messages) == 2


def test_an_inactive_user_cannot_change_conversations(engine, people) -> None:
    alice, _, _ = people
    cid = uuid.uuid4()
    exchange(engine, alice, cid, "q", "a")
    alice.is_active = False
    with pytest.raises(PermissionDenied):
        conversations.rename_conversation(engine, alice, cid, "x")
    with pytest.raises(PermissionDenied):
        exchange(engine, alice, cid, "q", "a")


def test_rename_checks_the_title_at_its_field(engine, people) -> None:
    alice, _, _ = people
    cid = uuid.uuid4()
    exchange(engine, alice, cid, "q", "a")
    assert conversations.rename_conversation(engine, alice, cid, "  Maths   homework ").title == "Maths homework"
    for bad in ("   ", "x" * (conversations.TITLE_MAX + 1)):
        with pytest.raises(ValidationError) as refused:
            conversations.rename_conversation(engine, alice, cid, bad)
        assert refused.value.field == "title"
    assert conversations.list_conversations(engine, alice)[0].title == "Maths homework"


def test_the_list_is_newest_first_by_last_use(engine, people) -> None:
    alice, _, _ = people
    first, second = uuid.uuid4(), uuid.uuid4()
    exchange(engine, alice, first, "first", "a")
    exchange(engine, alice, second, "second", "b")
    assert [c.id for c in conversations.list_conversations(engine, alice)] == [second, first]
    exchange(engine, alice, first, "first again", "c")
    assert [c.id for c in conversations.list_conversations(engine, alice)] == [first, second]


def test_regenerate_replaces_the_last_answer_only(engine, people) -> None:
    alice, _, _ = people
    cid = uuid.uuid4()
    with pytest.raises(NotFound):  # nothing to regenerate in a conversation that does not exist
        conversations.save_exchange(
            engine, alice, cid, None, NewMessage("assistant", "x"), provider_id=None, model_id="m", regenerated=True
        )
    exchange(engine, alice, cid, "q1", "a1")
    exchange(engine, alice, cid, "q2", "a2")
    conversations.save_exchange(
        engine, alice, cid, None, NewMessage("assistant", "a2, again"), provider_id=None, model_id="n", regenerated=True
    )
    detail = conversations.get_conversation(engine, alice, cid)
    assert [m.content for m in detail.messages] == ["q1", "a1", "q2", "a2, again"]
    assert [m.position for m in detail.messages] == [0, 1, 2, 3] and detail.summary.model_id == "n"


def test_sizes_are_limited(engine, people, monkeypatch) -> None:
    alice, _, _ = people
    cid = uuid.uuid4()
    with pytest.raises(ValidationError) as refused:  # a question too long is refused, and nothing is saved
        exchange(engine, alice, cid, "q" * (conversations.CONTENT_MAX + 1), "a")
    assert refused.value.field == "content"
    assert conversations.list_conversations(engine, alice) == []
    # An answer too long (already paid for, and in Logs) keeps its start, marked as cut.
    exchange(engine, alice, cid, "long one please", "w" * (conversations.CONTENT_MAX + 50))
    stored = conversations.get_conversation(engine, alice, cid).messages[1]
    assert len(stored.content) == conversations.CONTENT_MAX and stored.content.endswith(conversations.TRUNCATED_NOTE)
    assert stored.meta["truncated"] is True
    assert len(conversations.get_conversation(engine, alice, cid).summary.title) <= conversations.TITLE_FROM_QUESTION

    monkeypatch.setattr(conversations, "MESSAGES_MAX", 4)
    exchange(engine, alice, cid, "q2", "a2")
    with pytest.raises(ValidationError) as full:
        exchange(engine, alice, cid, "q3", "a3")
    assert full.value.field == "conversation"
    assert message_count(engine) == 4


def test_delete_takes_the_messages_and_deleting_the_user_takes_the_conversations(engine, people) -> None:
    alice, bob, provider = people
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    exchange(engine, alice, mine, "q", "a", provider)
    exchange(engine, bob, theirs, "q", "a", provider)
    conversations.delete_conversation(engine, alice, mine)
    assert conversations.list_conversations(engine, alice) == []
    assert message_count(engine) == 2  # bob's two are left
    with transaction(engine) as session:  # a deleted provider only unlinks the conversation
        session.execute(delete(Provider))
    assert conversations.get_conversation(engine, bob, theirs).summary.provider_id is None
    with transaction(engine) as session:  # the database's cascade, on both dialects
        session.execute(delete(User).where(User.id == bob.id))
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Conversation)) == 0
    assert message_count(engine) == 0


def test_title_from_a_question() -> None:
    assert conversations.title_from("   ") == "New conversation"
    assert conversations.title_from("  hello   world \nmore") == "hello world"
    long = conversations.title_from("word " * 40)
    assert len(long) == conversations.TITLE_FROM_QUESTION and long.endswith("…")
