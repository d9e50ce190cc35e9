"""Logs: every call, newest first, with the usage filters and a search of error messages; one call's detail."""

from mindroute.ui.session import require_admin

user = require_admin()

import uuid  # noqa: E402

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from mindroute.db import transaction  # noqa: E402
from mindroute.services import analytics, log_explorer  # noqa: E402
from mindroute.ui import usage_view as view  # noqa: E402
from mindroute.ui.format import timestamp  # noqa: E402
from mindroute.ui.render import form_errors  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402

PAGE_SIZES = (25, 50, 100)
STACK = "logs_cursors"  # the `after` cursor of every page visited, the current one last

st.title("Logs")

with transaction(engine()) as session:
    options = analytics.filter_options(session, user)

flt, params = view.filter_widgets("logs", options, True)
if "logs_search" not in st.session_state:
    st.session_state["logs_search"] = (st.query_params.get("q") or "")[: log_explorer.SEARCH_MAX_CHARS]
controls = st.columns([4, 1])
search = controls[0].text_input(
    "Search error messages",
    max_chars=log_explorer.SEARCH_MAX_CHARS,
    placeholder="Part of an error message",
    key="logs_search",
)
page_size = controls[1].selectbox("Per page", PAGE_SIZES, key="logs_page_size")
view.keep_in_url(params, {"q": search.strip()})

# Back to the first page whenever the filters change (by their description: a preset's end moves each run).
view_key = (tuple(sorted(params.items())), search.strip(), page_size)
if st.session_state.get("logs_view") != view_key:
    st.session_state["logs_view"] = view_key
    st.session_state[STACK] = [None]
stack = st.session_state[STACK]

with transaction(engine()) as session:
    page = log_explorer.list_calls(session, user, flt, search=search, after=stack[-1], page_size=page_size)


def go_next(cursor: log_explorer.Cursor) -> None:
    st.session_state[STACK].append(cursor)


def go_previous() -> None:
    if len(st.session_state[STACK]) > 1:
        st.session_state[STACK].pop()


if not page.rows:
    st.info("No calls match these filters." if len(stack) == 1 else "No more calls.")
else:
    table = pd.DataFrame(
        {
            "time (UTC)": [r.created_at for r in page.rows],
            "user": [r.user_email for r in page.rows],
            "provider": [r.provider for r in page.rows],
            "model": [r.model for r in page.rows],
            "source": [r.source for r in page.rows],
            "status": [r.status_code for r in page.rows],
            "tokens": [r.tokens_used for r in page.rows],
            "duration (ms)": [r.duration_ms for r in page.rows],
            "error": [r.error_message for r in page.rows],
        }
    )
    st.dataframe(table, hide_index=True, width="stretch", key="logs_table")

nav = st.columns([1, 1, 4])
nav[0].button("Previous", key="logs_previous", on_click=go_previous, disabled=len(stack) == 1)
nav[1].button("Next", key="logs_next", on_click=go_next, args=(page.next_cursor,), disabled=page.next_cursor is None)
nav[2].caption(f"Page {len(stack):,}, {len(page.rows):,} call(s) shown, newest first")

if not page.rows:
    st.stop()

# --- one call ---------------------------------------------------------------------------------

st.header("Call detail")
rows = {str(r.id): r for r in page.rows}
if st.session_state.get("logs_selected") not in rows:
    st.session_state["logs_selected"] = next(iter(rows))
chosen = st.selectbox(
    "Call (from this page)",
    list(rows),
    format_func=lambda i: f"{timestamp(rows[i].created_at)} · {rows[i].model or '—'} · {rows[i].status_code or '—'}",
    key="logs_selected",
)
detail = None
with form_errors():
    with transaction(engine()) as session:
        detail = log_explorer.call_detail(session, user, uuid.UUID(chosen))
if detail is None:
    st.stop()

row = detail.row


def shown(value: object) -> str:
    return "—" if value is None else str(value)


st.text(
    "\n".join(
        [
            f"Call {row.id}",
            f"Time: {row.created_at.isoformat(' ')} UTC",
            f"User: {row.user_email or '(deleted or none)'}",
            f"Provider: {row.provider or '—'}   Model: {row.model or '—'}   Type: {detail.request_type}",
            f"Source: {row.source}   API key: {row.api_key_id or '—'}",
            f"Status: {row.status_code if row.status_code is not None else '—'}",
            f"Tokens: {row.tokens_used if row.tokens_used is not None else '—'} "
            f"(input {row.prompt_tokens if row.prompt_tokens is not None else '—'}, "
            f"output {row.completion_tokens if row.completion_tokens is not None else '—'})",
            f"Duration: {row.duration_ms if row.duration_ms is not None else '—'} ms   "
            f"Time to first token: {shown(detail.time_to_first_token_ms)} ms",
            f"IP: {row.ip or '—'}",
            f"User agent: {detail.user_agent or '—'}",
        ]
    )
)
if row.error_message:
    st.caption("Error")
    st.code(row.error_message, language=None, wrap_lines=True)
request_tab, response_tab = st.tabs(["Request body", "Response body"])
with request_tab:
    st.code(detail.request_body or "(empty)", language="json", wrap_lines=True)
with response_tab:
    st.code(detail.response_body or "(empty)", language="json", wrap_lines=True)
