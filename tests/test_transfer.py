"""Moving a whole installation from SQLite to PostgreSQL keeps every row and value."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from mindroute.cli.transfer import TransferError, copy_database, row_counts
from mindroute.db import make_engine, transaction, upgrade
from mindroute.models import Log, Provider, Ticket, User
from tests.conftest import create_pg_database, drop_pg_database


def test_sqlite_to_postgresql_copies_every_row(tmp_path, pg_server) -> None:
    source = make_engine(URL.create("sqlite", database=str(tmp_path / "src.db")))
    upgrade(source)
    user_id = uuid.uuid4()
    with transaction(source) as session:
        session.add(User(id=user_id, email="a@example.com", name="Ä ö", password="$2b$12$x", role="admin"))
        provider = Provider(
            name="P", protocol="anthropic", settings={"models": ["m1"], "prices": {"m1": {"input": 1.5}}}
        )
        session.add(provider)
        session.flush()
        session.add_all(
            Log(
                user_id=user_id,
                provider_id=provider.id,
                request_type="chat",
                tokens_used=i,
                request_body={"i": i},
                created_at=datetime(2026, 1, 1, 12, 0, i),
            )
            for i in range(7)
        )
        session.add(Ticket(user_id=user_id, subject="s", message="m"))
    target_url = create_pg_database("mindroute_copy")
    target = make_engine(target_url)
    try:
        copied = copy_database(source, target, progress=False)
        assert copied.rows == row_counts(source)
        assert copied.rows["logs"] == 7
        # The source's logs were added without their rollups (as SQL by hand would): the target's
        # rollups of that day are rebuilt; every other table is copied row for row.
        assert copied.rebuilt_days == [datetime(2026, 1, 1)]
        rollups = {"usagerollups", "usagedailyrollups", "usagemodelrollups"}
        in_target = row_counts(target)
        assert {t: n for t, n in in_target.items() if t not in rollups} == {
            t: n for t, n in copied.rows.items() if t not in rollups
        }
        assert {in_target[t] for t in rollups} == {1} and {copied.rows[t] for t in rollups} == {0}
        with transaction(target) as session:
            user = session.get(User, user_id)
            assert (user.name, user.role) == ("Ä ö", "admin")
            assert session.scalar(select(Provider.settings)) == {"models": ["m1"], "prices": {"m1": {"input": 1.5}}}
            assert session.scalar(select(Log.created_at).order_by(Log.created_at.desc())) == datetime(
                2026, 1, 1, 12, 0, 6
            )
        with pytest.raises(TransferError, match="not empty"):
            copy_database(source, target, progress=False)
    finally:
        target.dispose()
        drop_pg_database(target_url)
        source.dispose()


def test_copy_to_command_names_a_non_empty_target(tmp_path, monkeypatch) -> None:
    from mindroute import config
    from mindroute import db as mr_db
    from mindroute.cli import main as cli

    source = tmp_path / "src.db"
    target = tmp_path / "target.db"
    monkeypatch.setenv("MINDROUTE_DATABASE_URL", f"sqlite:///{source}")
    config.get_settings.cache_clear()
    monkeypatch.setattr(mr_db, "_engine", None)
    assert cli.main(["copy-to", f"sqlite:///{target}"]) == 0
    assert cli.main(["copy-to", f"sqlite:///{target}"]) == 0  # still empty: both had no rows
    engine = make_engine(f"sqlite:///{target}")
    with transaction(engine) as session:
        session.add(User(email="x@example.com", name="X", password="x"))
    engine.dispose()
    assert cli.main(["copy-to", f"sqlite:///{target}"]) == 1
