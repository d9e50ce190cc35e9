"""The process's database engine for the pages, migrated once on first use."""

from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from mindroute.config import ConfigError, get_settings
from mindroute.db import SchemaError, ensure_schema, get_engine


@st.cache_resource(show_spinner="Preparing the database…")
def _engine() -> Engine:
    engine = get_engine()
    ensure_schema(engine)  # a no-op when already at head; advisory-locked on PostgreSQL
    return engine


def engine() -> Engine:
    """The engine, or a one-line error on the page (and a stop) when settings are wrong."""
    try:
        get_settings()
        return _engine()
    except (ConfigError, SchemaError) as exc:
        st.error(f"MindRoute cannot start: {exc}")
        st.stop()
        raise  # unreachable: st.stop() raises
