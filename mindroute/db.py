"""Engines, sessions, and bringing a database to the schema of this code."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from mindroute.config import PROJECT_ROOT, get_settings

# Any constant works; it names "MindRoute migrations" among advisory locks on the server.
MIGRATION_LOCK_ID = 0x4D696E64526F7574  # "MindRout"
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"


# Kept open per process: the API's database threads, its log writer and the app's sessions; more
# than the pool's default 5, so busy moments do not open and close connections on every checkout.
POOL_SIZE = 12
POOL_MAX_OVERFLOW = 20


class SchemaError(Exception):
    """The database's schema does not fit this version of MindRoute."""


# The rate-limit counters' own SQLite file, attached to every connection of a SQLite file database under this
# name. Its write lock is not the database's: taking a call's counters never waits for the Logs writer's
# transaction. A write transaction started with BEGIN IMMEDIATE would lock both files, so none is.
COUNTERS_SCHEMA = "counters"


def counters_file(database: str) -> Path:
    """The counters' file beside a SQLite database file: `mindroute.db` -> `mindroute.db-counters` (this minute's
    counts only: safe to delete while MindRoute is stopped; never part of a backup)."""
    return Path(f"{database}-counters")


@functools.cache
def _counters_ddl() -> str:
    """CREATE TABLE IF NOT EXISTS counters.limitcounters, from the model (one definition of its columns)."""
    from sqlalchemy import MetaData
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateTable

    from mindroute.models import LimitCounter

    table = LimitCounter.__table__.to_metadata(MetaData(), schema=COUNTERS_SCHEMA)
    return str(CreateTable(table, if_not_exists=True).compile(dialect=sqlite.dialect()))


def _sqlite_connect(counters: Path | None) -> Callable[[sqlite3.Connection, Any], None]:
    def on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        if counters is not None:
            cur.execute(f"ATTACH DATABASE ? AS {COUNTERS_SCHEMA}", (str(counters),))
            cur.execute(f"PRAGMA {COUNTERS_SCHEMA}.journal_mode=WAL")
            cur.execute(f"PRAGMA {COUNTERS_SCHEMA}.synchronous=NORMAL")
            cur.execute(_counters_ddl())
        cur.close()

    return on_connect


def make_engine(url: URL | str, **kwargs: Any) -> Engine:
    """An engine with MindRoute's connection settings for either backend."""
    engine_url = make_url(url)
    if engine_url.get_backend_name() == "sqlite":
        database = engine_url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        if database and database != ":memory:" and "poolclass" not in kwargs:
            kwargs.setdefault("pool_size", POOL_SIZE)
            kwargs.setdefault("max_overflow", POOL_MAX_OVERFLOW)
        engine = create_engine(engine_url, **kwargs)
        on_file = database and database != ":memory:" and not database.startswith("file:")
        event.listen(engine, "connect", _sqlite_connect(counters_file(database) if on_file else None))
        return engine
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", POOL_SIZE)
        kwargs.setdefault("max_overflow", POOL_MAX_OVERFLOW)
    kwargs.setdefault("pool_pre_ping", True)
    # Sessions in UTC, so NOW()-style expressions and naive timestamps agree.
    kwargs.setdefault("connect_args", {"options": "-c timezone=UTC"})
    return create_engine(engine_url, **kwargs)


_engine: Engine | None = None


def get_engine() -> Engine:
    """The process's engine for MINDROUTE_DATABASE_URL (one pool per process)."""
    global _engine
    if _engine is None:
        _engine = make_engine(get_settings().database_url)
    return _engine


@contextlib.contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Session]:
    """One unit of work: commits when the block ends, rolls back everything on error."""
    with Session(engine or get_engine(), expire_on_commit=False) as session, session.begin():
        yield session


# --- migrations -----------------------------------------------------------------------------


def migrations_dir() -> Path:
    """The Alembic scripts: inside the package in an installed wheel (pyproject.toml puts them there), else the
    checkout's top-level migrations/."""
    packaged = Path(__file__).resolve().parent / "migrations"
    return packaged if (packaged / "env.py").is_file() else PROJECT_ROOT / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(migrations_dir()))
    # Rendered without the password; env.py uses the connection handed over in attributes.
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=True).replace("%", "%%"))
    return cfg


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _check_not_newer(engine: Engine, conn: Any) -> None:
    current = MigrationContext.configure(conn).get_current_revision()
    if current is None:
        return
    script = ScriptDirectory.from_config(alembic_config(engine))
    try:
        script.get_revision(current)
    except CommandError:
        raise SchemaError(
            f"the database is at schema revision {current}, which this version of MindRoute does not know; "
            "it was migrated by a newer MindRoute. Upgrade MindRoute, or restore a backup made for this version."
        ) from None


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Any]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # Two processes starting together: the second waits, then finds nothing to do.
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
                conn.commit()
        else:
            # SQLite alters a table by copying it and dropping the old one, and with foreign keys enforced that
            # DROP runs the ON DELETE action of every row pointing at the table (a users change would delete
            # every API key, grant and ticket and unlink every Logs row). So migrations run with enforcement off
            # (a pragma that works only outside a transaction), and _migrate checks the keys before committing.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def _migrate(engine: Engine, alembic_command: Callable[[Config, str], None], revision: str) -> None:
    """Run an Alembic command under the migration lock, refusing a database newer than this code."""
    with _migration_lock(engine) as conn:
        _check_not_newer(engine, conn)
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        alembic_command(cfg, revision)
        if engine.dialect.name == "sqlite":
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                conn.rollback()
                raise SchemaError(f"migrating to {revision} would leave rows pointing at missing ones: {broken[:3]}")
        conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision`, refusing a database newer than this code."""
    _migrate(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    _migrate(engine, command.downgrade, revision)


def ensure_schema(engine: Engine) -> None:
    """Called by the app and the CLI on start: migrate to head unless already there."""
    head = head_revision(engine)
    if current_revision(engine) == head:
        return
    upgrade(engine)
