"""The database engine a CLI command works on, with the schema brought up to date first."""

from __future__ import annotations

from sqlalchemy import Engine

from mindroute.db import ensure_schema, get_engine


def migrated_engine() -> Engine:
    engine = get_engine()
    ensure_schema(engine)
    return engine
