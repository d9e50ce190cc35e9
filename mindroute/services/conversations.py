"""Saved Playground conversations: each is its owner's only, kept in `conversations` and `conversationmessages`.

Another user's conversation is NotFound, exactly like one that does not exist. A question and its answer are
saved together when the answer ends (one transaction); a regenerated answer replaces the last one. Titles and
stored text have size limits; `meta` keeps only the keys of META_KEYS (never attachment bytes, never a secret).

Each public service takes an engine (and runs in a transaction of its own) or a session already in one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mindroute.errors import NotFound
from mindroute.i18n import _l
from mindroute.models import Conversation, ConversationMessage, User, utcnow
from mindroute.services.roles import require_active
from mindroute.services.unit_of_work import unit_of_work
from mindroute.services.users import for_update
from mindroute.validation import ValidationError

TITLE_MAX = 200  # the column's size
TITLE_FROM_QUESTION = 60  # a new conversation is titled with the start of its first question
CONTENT_MAX = 100_000  # characters of one stored message: a long answer fits, a pasted book does not
MESSAGES_MAX = 500  # messages of one conversation; then a new one is started
LIST_MAX = 200  # conversations the list offers, newest first
CONVERSATION_NOT_FOUND = _l("This conversation does not exist or was deleted")
TRUNCATED_NOTE = "\n\n[… cut: the rest was longer than the Playground keeps]"
# What a stored message may carry besides its text: what the page shows under it.
META_KEYS = frozenset(
    {
        "provider",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "duration_ms",
        "ttft_ms",
        "cost_usd",
        "status",
        "error",
        "stopped",
        "log_id",
        "attachments",
        "truncated",
    }
)
SETTINGS_KEYS = frozenset({"temperature", "max_tokens", "system_prompt", "stream"})


@dataclass(frozen=True)
class NewMessage:
    """A message to save: its role, text and what is shown under it (filtered to META_KEYS)."""

    role: str
    content: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredMessage:
    position: int
    role: str
    content: str  # untrusted (the user's words, the model's output): render as plain text or safe markdown
    meta: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class ConversationSummary:
    id: uuid.UUID
    title: str  # untrusted
    provider_id: uuid.UUID | None
    model_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ConversationDetail:
    summary: ConversationSummary
    settings: dict[str, Any]
    messages: list[StoredMessage]


def title_from(question: str) -> str:
    """A new conversation's title: the first line of its first question, shortened; "New conversation" if empty."""
    line = " ".join(question.strip().split("\n", 1)[0].split())
    if not line:
        return "New conversation"
    return line if len(line) <= TITLE_FROM_QUESTION else line[: TITLE_FROM_QUESTION - 1].rstrip() + "…"


def validate_title(title: str | None) -> str:
    cleaned = " ".join((title or "").split())
    if not cleaned:
        raise ValidationError("title", _l("A title is required"))
    if len(cleaned) > TITLE_MAX:
        raise ValidationError(
            "title", _l("A title has at most {max} characters (this one has {got})", max=TITLE_MAX, got=len(cleaned))
        )
    return cleaned


def validate_question(text: str) -> None:
    """A question longer than CONTENT_MAX is refused before it is sent (ValidationError on "content")."""
    if len(text) > CONTENT_MAX:
        raise ValidationError(
            "content", _l("A message has at most {max} characters (this one has {got})", max=CONTENT_MAX, got=len(text))
        )


def validate_room(messages: int) -> None:
    """A conversation of `messages` messages has room for one more question and its answer (else a
    ValidationError on "conversation"): checked before the call, so no answer is paid for that cannot be kept."""
    if messages + 2 > MESSAGES_MAX:
        raise ValidationError(
            "conversation", _l("A conversation keeps at most {max} messages: start a new one", max=MESSAGES_MAX)
        )


def _summary(row: Conversation) -> ConversationSummary:
    return ConversationSummary(row.id, row.title, row.provider_id, row.model_id, row.created_at, row.updated_at)


def _owned(session: Session, user: User, conversation_id: uuid.UUID, *, lock: bool = False) -> Conversation:
    stmt = select(Conversation).where(Conversation.id == conversation_id, Conversation.user_id == user.id)
    row = session.scalar(for_update(session, stmt) if lock else stmt)
    if row is None:
        raise NotFound(CONVERSATION_NOT_FOUND)
    return row


def _stored(message: NewMessage) -> ConversationMessage:
    if message.role not in ("user", "assistant"):
        raise ValueError(f"unknown role {message.role!r}")
    meta = {k: v for k, v in message.meta.items() if k in META_KEYS and v is not None}
    content = message.content
    if len(content) > CONTENT_MAX:
        if message.role == "user":
            validate_question(content)
        # An answer was paid for and is in Logs: keep its start rather than refuse to save it.
        content = content[: CONTENT_MAX - len(TRUNCATED_NOTE)] + TRUNCATED_NOTE
        meta["truncated"] = True
    return ConversationMessage(role=message.role, content=content, meta=meta or None)


@unit_of_work
def list_conversations(session: Session, user: User, limit: int = LIST_MAX) -> list[ConversationSummary]:
    """The user's own conversations, the most recently used first."""
    rows = session.scalars(
        select(Conversation)
        .where(Conversation.user_id == user.id)
        .order_by(Conversation.updated_at.desc(), Conversation.id)
        .limit(limit)
    )
    return [_summary(r) for r in rows]


@unit_of_work
def get_conversation(session: Session, user: User, conversation_id: uuid.UUID) -> ConversationDetail:
    """One of the user's own conversations with its messages in order; NotFound for anyone else's."""
    row = _owned(session, user, conversation_id)
    messages = session.scalars(
        select(ConversationMessage)
        .where(ConversationMessage.conversation_id == row.id)
        .order_by(ConversationMessage.position)
    )
    return ConversationDetail(
        _summary(row),
        dict(row.settings or {}),
        [StoredMessage(m.position, m.role, m.content, dict(m.meta or {}), m.created_at) for m in messages],
    )


@unit_of_work
def save_exchange(
    session: Session,
    user: User,
    conversation_id: uuid.UUID,
    question: NewMessage | None,
    answer: NewMessage,
    *,
    provider_id: uuid.UUID | None,
    model_id: str | None,
    settings: dict[str, Any] | None = None,
    regenerated: bool = False,
) -> ConversationSummary:
    """Save a question and its answer at the end of the conversation, creating it (with this id, titled by the
    question) when it is new. `regenerated`: the answer replaces the conversation's last answer instead (no
    question). The conversation remembers the provider, model and settings used last."""
    require_active(user, _l("Sign in to save a conversation"))
    exists = session.scalar(select(Conversation.user_id).where(Conversation.id == conversation_id))
    if exists is None:
        if regenerated or question is None:
            raise NotFound(CONVERSATION_NOT_FOUND)
        row = Conversation(id=conversation_id, user_id=user.id, title=title_from(question.content))
        session.add(row)
        session.flush()
    else:
        row = _owned(session, user, conversation_id, lock=True)  # another user's: NotFound
    count = session.scalar(
        select(func.count()).select_from(ConversationMessage).where(ConversationMessage.conversation_id == row.id)
    )
    last = session.scalar(
        select(ConversationMessage)
        .where(ConversationMessage.conversation_id == row.id)
        .order_by(ConversationMessage.position.desc())
        .limit(1)
    )
    position = (last.position + 1) if last is not None else 0
    new = []
    if regenerated:
        if last is None or last.role != "assistant":
            raise ValidationError("conversation", _l("There is no answer to regenerate"))
        position = last.position
        session.delete(last)
        session.flush()  # the unique (conversation, position) is free before the new answer takes it
    else:
        if question is None:
            raise ValueError("a question is needed unless the answer is regenerated")
        validate_room(count)
        new.append(_stored(question))
    new.append(_stored(answer))
    for offset, message in enumerate(new):
        message.conversation_id = row.id
        message.position = position + offset
        session.add(message)
    row.provider_id = provider_id
    row.model_id = model_id
    if settings is not None:
        row.settings = {k: v for k, v in settings.items() if k in SETTINGS_KEYS}
    row.updated_at = utcnow()  # also when only messages changed: the list is newest first
    session.flush()
    return _summary(row)


@unit_of_work
def rename_conversation(session: Session, user: User, conversation_id: uuid.UUID, title: str) -> ConversationSummary:
    """Give one of the user's own conversations a new title (ValidationError on "title")."""
    require_active(user, _l("Sign in to rename a conversation"))
    cleaned = validate_title(title)
    row = _owned(session, user, conversation_id, lock=True)
    row.title = cleaned
    row.updated_at = utcnow()
    session.flush()
    return _summary(row)


@unit_of_work
def delete_conversation(session: Session, user: User, conversation_id: uuid.UUID) -> None:
    """Delete one of the user's own conversations and its messages."""
    require_active(user, _l("Sign in to delete a conversation"))
    row = _owned(session, user, conversation_id, lock=True)
    # The foreign key cascades too; deleting here keeps it one statement the ORM knows about.
    session.execute(delete(ConversationMessage).where(ConversationMessage.conversation_id == row.id))
    session.delete(row)
