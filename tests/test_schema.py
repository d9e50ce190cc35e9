"""The schema contract: migrations build it on both databases and agree with the models."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from mindroute.db import SchemaError, current_revision, downgrade, ensure_schema, head_revision, make_engine, upgrade
from mindroute.models import Base, LimitCounter

DOCUMENT_TABLES = {"users", "refreshtokens", "apikeys", "providers", "userproviders", "logs", "tickets"}
DOCUMENT_INDEXES = {
    "logs": {"logs_userid_idx", "logs_providerid_idx", "logs_createdat_idx", "logs_modelid_idx"},
    "refreshtokens": {"refreshtokens_userid_idx", "refreshtokens_token_idx", "refreshtokens_expiresat_idx"},
    "apikeys": {"apikeys_userid_idx", "apikeys_key_idx", "apikeys_expiresat_idx"},
    "tickets": {"tickets_userid_idx", "tickets_status_idx", "tickets_createdat_idx"},
}
DOCUMENT_COLUMNS = {
    "users": "id email password name role isactive lastlogin createdat updatedat",
    "refreshtokens": "id userid token expiresat isrevoked createdat updatedat",
    "apikeys": "id userid name key lastusedat expiresat createdat updatedat",
    "providers": "id name apikey endpointurl allowimages allowvideos allowfiles maxtokens settings isactive "
    "createdat updatedat",
    "userproviders": "id userid providerid allowed maxtokensoverride settings createdat updatedat",
    "logs": "id userid providerid modelid requesttype requestbody responsebody tokensused prompttokens "
    "completiontokens statuscode errormessage duration ip useragent createdat",
    "tickets": "id userid subject message status adminresponse adminid createdat updatedat resolvedat",
}

fresh = pytest.mark.parametrize("fresh_db_url", ["sqlite", "postgresql"], indirect=True)


@fresh
def test_migrations_build_every_document_table_column_and_index(fresh_db_url) -> None:
    engine = make_engine(fresh_db_url)
    upgrade(engine)
    insp = inspect(engine)
    assert DOCUMENT_TABLES <= set(insp.get_table_names())
    for table, columns in DOCUMENT_COLUMNS.items():
        actual = {c["name"] for c in insp.get_columns(table)}
        assert set(columns.split()) <= actual, table
    for table, names in DOCUMENT_INDEXES.items():
        assert names <= {ix["name"] for ix in insp.get_indexes(table)}, table
    assert current_revision(engine) == head_revision(engine)
    engine.dispose()


@fresh
def test_models_and_migrations_agree(fresh_db_url) -> None:
    engine = make_engine(fresh_db_url)
    upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    if engine.dialect.name == "sqlite":
        # The counters live in their own attached file (mindroute.db.counters_file), created from the model.
        assert [(d[0], d[1].name) for d in diff if d[0] == "add_table"] == [("add_table", "limitcounters")]
        diff = [d for d in diff if not (d[0] == "add_table" and d[1].name == "limitcounters")]
        columns = {c["name"]: str(c["type"]) for c in inspect(engine).get_columns("limitcounters", schema="counters")}
        assert columns == {c.name: str(c.type.compile(engine.dialect)) for c in LimitCounter.__table__.columns}
    assert diff == []
    engine.dispose()


@fresh
def test_downgrade_to_base_and_up_again(fresh_db_url) -> None:
    engine = make_engine(fresh_db_url)
    upgrade(engine)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert DOCUMENT_TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


@fresh
def test_database_newer_than_code_is_refused(fresh_db_url) -> None:
    engine = make_engine(fresh_db_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'fffffuture'"))
    with pytest.raises(SchemaError, match="newer MindRoute"):
        ensure_schema(engine)
    engine.dispose()


def test_document_sql_runs_as_written_on_postgresql(pg_session_db) -> None:
    engine = make_engine(pg_session_db)
    user_id = uuid.uuid4()
    with engine.begin() as conn:
        # Written the document's way: unquoted mixed-case names, server-side defaults.
        conn.execute(
            text("INSERT INTO Users (id, email, password, name) VALUES (:id, 'doc@example.com', 'x', 'Doc')"),
            {"id": user_id},
        )
        conn.execute(text("INSERT INTO Providers (name) VALUES ('Doc provider')"))
        conn.execute(
            text(
                "INSERT INTO Logs (userId, modelId, requestType, tokensUsed) "
                "VALUES (:id, 'gpt-x', 'chat', 7), (:id, 'gpt-x', 'chat', 5)"
            ),
            {"id": user_id},
        )
        row = conn.execute(text("SELECT email, isActive, lastLogin, role, createdAt FROM Users")).one()
        assert row.email == "doc@example.com" and row.isactive is True and row.role == "user"
        totals = conn.execute(text("SELECT modelId, sum(tokensUsed) FROM Logs GROUP BY modelId")).all()
        assert totals == [("gpt-x", 12)]
        provider = conn.execute(text("SELECT allowImages, isActive, protocol FROM Providers")).one()
        assert tuple(provider) == (False, True, "openai")
        conn.execute(text("DELETE FROM Users"))
        assert conn.execute(text("SELECT count(*) FROM Logs WHERE userId IS NULL")).scalar() == 2
    engine.dispose()


def test_utc_defaults_do_not_depend_on_the_server_time_zone(pg_session_db) -> None:
    engine = make_engine(pg_session_db, connect_args={"options": "-c timezone=Asia/Seoul"})
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO Providers (name) VALUES ('tz probe')"))
        skew = conn.execute(
            text("SELECT extract(epoch FROM (timezone('utc', now()) - createdAt)) FROM Providers WHERE name='tz probe'")
        ).scalar()
        conn.execute(text("DELETE FROM Providers WHERE name='tz probe'"))
    assert abs(skew) < 60
    engine.dispose()


def test_constraints_hold(engine) -> None:
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO users (id, email, password, name, role) VALUES (:id, 'a@b.co', 'x', 'A', 'root')"),
                {"id": uuid.uuid4().hex if engine.dialect.name == "sqlite" else uuid.uuid4()},
            )
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO tickets (id, userid, subject, message) VALUES (:id, :uid, 's', 'm')"),
                {"id": uuid.uuid4().hex, "uid": uuid.uuid4().hex}
                if engine.dialect.name == "sqlite"
                else {"id": uuid.uuid4(), "uid": uuid.uuid4()},
            )


@fresh
def test_every_migration_keeps_the_rows_that_point_at_an_altered_table(fresh_db_url) -> None:
    """SQLite alters a table by copying it: with foreign keys enforced, dropping the old users table would delete
    every API key and unlink every Logs row (found in migration 0009). Each step since 0002 must keep them."""
    engine = make_engine(fresh_db_url)
    try:
        upgrade(engine, "0002")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, password, name, role, isactive, createdat, updatedat) VALUES "
                    "(:id, 'keep@example.com', 'x', 'Keep', 'user', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": USER_ID.hex},
            )
            conn.execute(
                text(
                    "INSERT INTO apikeys (id, userid, name, key, prefix, createdat, updatedat) VALUES "
                    "(:id, :user, 'k', 'digest-of-a-key', 'mr-x', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": KEY_ID.hex, "user": USER_ID.hex},
            )
            conn.execute(
                text(
                    "INSERT INTO logs (id, userid, requesttype, createdat) "
                    "VALUES (:id, :user, 'chat', CURRENT_TIMESTAMP)"
                ),
                {"id": LOG_ID.hex, "user": USER_ID.hex},
            )
        upgrade(engine, "head")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM apikeys")).scalar() == 1
            assert str(conn.execute(text("SELECT userid FROM logs")).scalar()).replace("-", "") == USER_ID.hex
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # enforced again after migrating
    finally:
        engine.dispose()


USER_ID, KEY_ID, LOG_ID = (uuid.UUID(int=n) for n in (1, 2, 3))
