"""The process's database engine for the pages, migrated once on first use."""

from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from mindroute.config import ConfigError, get_settings
from mindroute.db import SchemaError, ensure_schema, get_engine
from mindroute.i18n import _


@st.cache_resource(show_spinner=False)  # the spinner is drawn by engine(), in the reader's language
def _engine() -> Engine:
    engine = get_engine()
    ensure_schema(engine)  # a no-op when already at head; advisory-locked on PostgreSQL
    return engine


_prepared = False  # this process has built (and migrated) its engine once: no spinner from then on


def engine() -> Engine:
    """The engine, or a one-line error on the page (and a stop) when settings are wrong."""
    global _prepared
    try:
        get_settings()
        if _prepared:
            return _engine()
        # The first run of the process may migrate: say so (after half a second), in the reader's language.
        with st.spinner(_("Preparing the database…")):
            built = _engine()
        _prepared = True
        return built
    except (ConfigError, SchemaError) as exc:
        # The operator's settings problem stays as the settings say it (English, like the logs).
        st.error(_("MindRoute cannot start: {problem}", problem=str(exc)))
        st.stop()
        raise  # unreachable: st.stop() raises
