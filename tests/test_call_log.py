"""The call log: one row per call, described attachments, provider counts only, never a secret."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text

from mindroute.db import make_engine, transaction
from mindroute.models import Log, User
from mindroute.providers.shapes import Attachment, ChatMessage, ChatRequest
from mindroute.services.call_log import (
    RESPONSE_TEXT_MAX_CHARS,
    STOPPED_BY_USER_STATUS,
    CallRecord,
    write_call_log,
)

SECRET = "sk-proj-abcdefghijklmnop1234567890"


def a_request() -> ChatRequest:
    image = Attachment(kind="image", mime_type="image/png", data=b"\x89PNG" + b"0" * 996, filename="cat.png")
    return ChatRequest(
        model="gpt-4o-mini",
        messages=[
            ChatMessage(role="system", text="Be brief."),
            ChatMessage(role="user", text=f"my key is {SECRET}, what is this?", attachments=[image]),
        ],
        temperature=0.2,
        max_tokens=256,
        stream=True,
    )


def test_a_successful_call_is_one_row_with_the_providers_counts(engine) -> None:
    with transaction(engine) as session:
        user = User(email="u@example.com", name="U", password="x")
        session.add(user)
    row_id = write_call_log(
        engine,
        CallRecord(
            user_id=user.id,
            provider_id=None,
            model="gpt-4o-mini",
            request=a_request(),
            status_code=200,
            duration_ms=812,
            text="A cat.",
            finish_reason="stop",
            prompt_tokens=31,
            completion_tokens=3,
            total_tokens=34,
            usage_reported=True,
            time_to_first_token_ms=240,
            ip="10.1.2.3",
            user_agent="pytest",
        ),
    )
    with transaction(engine) as session:
        row = session.get(Log, row_id)
        assert (row.request_type, row.status_code, row.duration, row.model_id) == ("chat", 200, 812, "gpt-4o-mini")
        assert (row.prompt_tokens, row.completion_tokens, row.tokens_used) == (31, 3, 34)
        assert row.request_body["messages"][1]["attachments"] == [
            {"name": "cat.png", "type": "image/png", "size": 1000}
        ]
        assert row.response_body["usage"]["reported"] is True
        assert row.response_body["time_to_first_token_ms"] == 240
        raw = session.execute(text("SELECT requestbody, responsebody FROM logs")).one()
    assert SECRET not in str(raw) and "base64" not in str(raw) and "data:" not in str(raw)


def test_no_usage_reported_means_no_numbers(engine) -> None:
    write_call_log(
        engine,
        CallRecord(
            user_id=None,
            provider_id=None,
            model="llama3",
            request=a_request(),
            status_code=200,
            duration_ms=5,
            text="hi",
            usage_reported=False,
        ),
    )
    with transaction(engine) as session:
        row = session.scalar(select(Log))
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_used) == (None, None, None)
    assert row.response_body["usage"] == {"reported": False, "prompt": None, "completion": None, "total": None}


def test_stopped_stream_and_long_text_are_marked(engine) -> None:
    long_text = "x" * (RESPONSE_TEXT_MAX_CHARS + 10)
    write_call_log(
        engine,
        CallRecord(
            user_id=None,
            provider_id=None,
            model="m",
            request=a_request(),
            status_code=STOPPED_BY_USER_STATUS,
            duration_ms=5,
            text=long_text,
            stopped_by_user=True,
        ),
    )
    with transaction(engine) as session:
        row = session.scalar(select(Log))
    assert row.status_code == 499 and row.response_body["stopped_by_user"] is True
    assert row.response_body["truncated"] is True and row.response_body["text"].endswith(
        "[truncated: 10 more characters]"
    )


def test_refused_call_is_logged_with_its_reason_and_no_secret(engine) -> None:
    key_id = uuid.uuid4()
    write_call_log(
        engine,
        CallRecord(
            user_id=None,
            provider_id=None,
            model="m",
            request=None,
            status_code=403,
            duration_ms=1,
            source="api",
            api_key_id=key_id,
            error_message=f"Provider refused key {SECRET}",
        ),
    )
    with transaction(engine) as session:
        row = session.scalar(select(Log))
    assert row.request_body == {"source": "api", "api_key_id": str(key_id), "model": "m"}
    assert SECRET not in row.error_message and "[redacted]" in row.error_message
    assert row.response_body is None


def test_a_failure_to_log_never_raises(tmp_path, caplog) -> None:
    broken = make_engine(f"sqlite:///{tmp_path / 'no-schema.db'}")
    assert write_call_log(broken, CallRecord(None, None, "m", None, 200, 1)) is None
    assert "could not write the log row" in caplog.text
    with broken.connect() as conn:
        assert conn.execute(select(func.count()).select_from(text("sqlite_master"))).scalar() == 0


def test_a_batch_is_one_transaction_and_a_bad_row_costs_only_itself(engine) -> None:
    from mindroute.analytics.rollups import rebuild_rollups
    from mindroute.services.call_log import write_call_logs

    with transaction(engine) as session:
        user = User(email="batch@example.com", name="B", password="x")
        session.add(user)

    def record(user_id: uuid.UUID, tokens: int) -> CallRecord:
        return CallRecord(
            user_id=user_id,
            provider_id=None,
            model="m",
            request=None,
            status_code=200,
            duration_ms=10 + tokens,
            prompt_tokens=tokens,
            completion_tokens=1,
            usage_reported=True,
            source="api",
        )

    good = [record(user.id, n) for n in range(1, 6)]
    assert all(write_call_logs(engine, good))
    # A row naming a user that does not exist breaks its batch: the others are written one by one.
    ids = write_call_logs(engine, [record(user.id, 10), record(uuid.uuid4(), 11), record(user.id, 12)])
    assert ids[0] is not None and ids[1] is None and ids[2] is not None
    with transaction(engine) as session:
        rows = session.execute(select(Log.prompt_tokens, Log.tokens_used, Log.created_at)).all()
        rolled = session.execute(text("SELECT sum(requests), sum(tokens) FROM usagerollups")).one()
    assert sorted(r.prompt_tokens for r in rows) == [1, 2, 3, 4, 5, 10, 12]
    assert all(r.tokens_used == r.prompt_tokens + 1 for r in rows)
    # The rollups counted exactly the rows written, as a rebuild from Logs finds them.
    assert tuple(rolled) == (7, sum(r.tokens_used for r in rows))
    rebuild_rollups(engine, progress=False)
    with transaction(engine) as session:
        assert tuple(session.execute(text("SELECT sum(requests), sum(tokens) FROM usagerollups")).one()) == (7, 44)


def test_a_batch_stores_each_value_as_a_single_insert_would(engine) -> None:
    """On PostgreSQL a batch goes through COPY, elsewhere through an INSERT: the stored values are
    the same as the ORM's own INSERT of the same row (JSON null for no response, text as sent)."""
    from mindroute.services.call_log import log_values, to_row, write_call_logs

    record = CallRecord(
        user_id=None,
        provider_id=None,
        model="m-é",
        request=a_request(),
        status_code=200,
        duration_ms=12,
        source="api",
        text='tab\there, quote " and backslash \\ and newline\nand 😀',
        usage_reported=True,
        prompt_tokens=3,
        completion_tokens=4,
        ip="127.0.0.1",
        user_agent="ua\\with\tcontrol",
    )
    refused = CallRecord(user_id=None, provider_id=None, model="m", request=None, status_code=401, duration_ms=1)
    [batched, batched_refused] = write_call_logs(engine, [record, refused])
    with transaction(engine) as session:
        by_orm = to_row(record)
        by_orm_refused = to_row(refused)
        session.add_all([by_orm, by_orm_refused])
    columns = [c for c in Log.__table__.columns if c.key != "id"]

    def stored(log_id) -> tuple:
        table = Log.__table__
        with engine.connect() as connection:
            query = select(*columns, table.c.responsebody.is_(None)).where(table.c.id == log_id)
            return tuple(connection.execute(query).one())

    assert stored(batched)[:-1] == stored(by_orm.id)[:-1]
    assert stored(batched_refused) == stored(by_orm_refused.id)
    assert not stored(batched_refused)[-1]  # no response: JSON null, not SQL NULL
    assert log_values(record)["response_body"]["text"] == record.text


def _many_messages(count: int) -> ChatRequest:
    return ChatRequest(
        model="gpt-4o-mini", messages=[ChatMessage(role="user", text=f"m{i}") for i in range(count)], stream=False
    )


def test_the_stored_request_body_is_capped_as_a_whole_with_a_marker(engine) -> None:
    """Issue #13 item 10: 700,000 tiny messages (a 23 MB body) are not stored whole, from the
    playground or the API; the newest messages are kept and the marker says how many there were."""
    import json

    from mindroute.services.call_log import REQUEST_BODY_MAX_CHARS

    many = _many_messages(700_000)
    for source in ("playground", "api"):
        record = CallRecord(
            user_id=None,
            provider_id=None,
            model="gpt-4o-mini",
            request=many,
            status_code=404,
            duration_ms=1,
            source=source,
            extra={"user": "u" * 50_000},
        )
        row_id = write_call_log(engine, record)
        with transaction(engine) as session:
            stored = session.get(Log, row_id).request_body
        size = len(json.dumps(stored))
        assert size <= REQUEST_BODY_MAX_CHARS + 5_000, size
        assert stored["truncated"]["messages"] == 700_000
        assert stored["truncated"]["kept"] == len(stored["messages"]) > 100
        assert stored["messages"][-1]["text"] == "m699999"  # the newest are kept, in order
        assert stored["messages"][0]["text"] == f"m{700_000 - len(stored['messages'])}"
        assert stored["truncated"]["chars"] > 20_000_000 // 1_000
        assert len(stored["user"]) == 1_000
        assert stored["source"] == source


def test_a_body_under_the_cap_is_stored_whole_without_a_marker(engine) -> None:
    record = CallRecord(
        user_id=None, provider_id=None, model="m", request=_many_messages(50), status_code=200, duration_ms=1
    )
    row_id = write_call_log(engine, record)
    with transaction(engine) as session:
        stored = session.get(Log, row_id).request_body
    assert [m["text"] for m in stored["messages"]] == [f"m{i}" for i in range(50)]
    assert "truncated" not in stored
