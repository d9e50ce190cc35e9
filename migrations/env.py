"""Alembic environment: the database comes from MINDROUTE_DATABASE_URL, like the app's."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from mindroute.models import Base

config = context.config
target_metadata = Base.metadata


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # called by mindroute.db, which holds the migration lock
        run_with(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    from mindroute.config import get_settings
    from mindroute.db import make_engine

    engine = make_engine(get_settings().database_url)
    with engine.connect() as conn:
        run_with(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("MindRoute migrations run online only: set MINDROUTE_DATABASE_URL and run `alembic upgrade head`.")
run_migrations_online()
