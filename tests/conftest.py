"""Fixtures: a real SQLite file and a real PostgreSQL database per test session, never mocks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

from mindroute import config
from mindroute.db import make_engine, upgrade
from mindroute.models import Base

PG_ADMIN_URL = os.environ.get("MINDROUTE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("MINDROUTE_REQUIRE_POSTGRES") == "1"
TEST_SECRET_KEY = Fernet.generate_key().decode()


def _pg_admin_engine() -> Engine:
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


def _pg_unavailable_reason() -> str | None:
    try:
        with _pg_admin_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        return f"PostgreSQL not reachable at {make_url(PG_ADMIN_URL).render_as_string()}: {exc.__class__.__name__}"
    return None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Skips (or, under MINDROUTE_REQUIRE_POSTGRES=1, fails) without a PostgreSQL server."""
    reason = _pg_unavailable_reason()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " (MINDROUTE_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    yield PG_ADMIN_URL


def create_pg_database(prefix: str = "mindroute_test") -> URL:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _pg_admin_engine().connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(PG_ADMIN_URL).set(database=name)


def drop_pg_database(url: URL) -> None:
    with _pg_admin_engine().connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_session_db(pg_server: str) -> Iterator[URL]:
    """One PostgreSQL database for the whole test session, migrated to head, dropped at the end."""
    url = create_pg_database()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def sqlite_session_db(tmp_path_factory: pytest.TempPathFactory) -> URL:
    path = tmp_path_factory.mktemp("sqlite") / "mindroute.db"
    url = URL.create("sqlite", database=str(path))
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def _truncate_all(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A migrated, emptied database of each dialect: every test using it runs twice."""
    url = request.getfixturevalue("sqlite_session_db" if request.param == "sqlite" else "pg_session_db")
    eng = make_engine(url)
    _truncate_all(eng)
    yield eng
    _truncate_all(eng)  # tests that use the session database directly find it empty too
    eng.dispose()


@pytest.fixture
def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    """An empty, unmigrated database; parametrize indirectly with 'sqlite' or 'postgresql'."""
    if request.param == "sqlite":
        yield URL.create("sqlite", database=str(tmp_path / "fresh.db"))
        return
    request.getfixturevalue("pg_server")
    url = create_pg_database("mindroute_fresh")
    yield url
    drop_pg_database(url)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads the developer's data folder, secrets.toml or environment."""
    for name in list(os.environ):
        if name.startswith("MINDROUTE_") and name not in ("MINDROUTE_REQUIRE_POSTGRES", "MINDROUTE_TEST_PG_URL"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MINDROUTE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MINDROUTE_SECRETS_FILE", str(tmp_path / "no-secrets.toml"))
    monkeypatch.setenv("MINDROUTE_SECRET_KEY", TEST_SECRET_KEY)
    config.get_settings.cache_clear()
    import mindroute.db as db

    monkeypatch.setattr(db, "_engine", None)
    yield
    config.get_settings.cache_clear()
