"""The call explorer shared by the admin Logs page and a user's Calls page: filters, keyset pages, one call.

The service scopes every read by the viewer (log_explorer): an administrator sees every call, a user
their own. What a call holds (bodies, errors, names) is untrusted text: drawn with st.text/st.code only.
"""

from __future__ import annotations

import uuid

import pandas as pd
import streamlit as st

from mindroute.models import User
from mindroute.services import log_explorer, usage
from mindroute.services.log_explorer import CallDetail, CallRow, Cursor
from mindroute.ui import usage_view
from mindroute.ui.format import timestamp
from mindroute.ui.render import form_errors
from mindroute.ui.runtime import engine

PAGE_SIZES = (25, 50, 100)
SUPPORT_PAGE = "pages/workspace/support.py"
SUPPORT_CALL_PARAM = "call"  # ?call=<log id> on the Support page: the call a new ticket is about


def _shown(value: object) -> str:
    return "—" if value is None else str(value)


def call_table(rows: list[CallRow], *, with_user: bool) -> pd.DataFrame:
    columns: dict[str, list[object]] = {"time (UTC)": [r.created_at for r in rows]}
    if with_user:
        columns["user"] = [r.user_email for r in rows]
    columns |= {
        "provider": [r.provider for r in rows],
        "model": [r.model for r in rows],
        "source": [r.source for r in rows],
        "status": [r.status_code for r in rows],
        "tokens": [r.tokens_used for r in rows],
        "duration (ms)": [r.duration_ms for r in rows],
        "error": [r.error_message for r in rows],
    }
    return pd.DataFrame(columns)


def call_summary(detail: CallDetail) -> str:
    """The call's facts as one block of plain text."""
    row = detail.row
    return "\n".join(
        [
            f"Call {row.id}",
            f"Time: {row.created_at.isoformat(' ')} UTC",
            f"User: {row.user_email or '(deleted or none)'}",
            f"Provider: {row.provider or '—'}   Model: {row.model or '—'}   Type: {detail.request_type}",
            f"Source: {row.source}   API key: {row.api_key_id or '—'}",
            f"Status: {_shown(row.status_code)}",
            f"Tokens: {_shown(row.tokens_used)} "
            f"(input {_shown(row.prompt_tokens)}, output {_shown(row.completion_tokens)})",
            f"Duration: {_shown(row.duration_ms)} ms   Time to first token: {_shown(detail.time_to_first_token_ms)} ms",
            f"IP: {row.ip or '—'}",
            f"User agent: {detail.user_agent or '—'}",
        ]
    )


def ticket_link(row: CallRow, viewer: User) -> None:
    """A link to the Support page with this call chosen for a new ticket; only a call's owner opens one
    (the tickets service refuses anyone else's call)."""
    if row.user_id == viewer.id:
        st.page_link(
            SUPPORT_PAGE,
            label="Open a support ticket about this call",
            icon=":material/support:",
            query_params={SUPPORT_CALL_PARAM: str(row.id)},
        )
    else:
        st.caption("Only the person who made this call can open a support ticket about it.")


def call_detail_view(detail: CallDetail, viewer: User) -> None:
    row = detail.row
    st.text(call_summary(detail))
    ticket_link(row, viewer)
    if row.error_message:
        st.caption("Error")
        st.code(row.error_message, language=None, wrap_lines=True)
    request_tab, response_tab = st.tabs(["Request body", "Response body"])
    with request_tab:
        st.code(detail.request_body or "(empty)", language="json", wrap_lines=True)
    with response_tab:
        st.code(detail.response_body or "(empty)", language="json", wrap_lines=True)


def call_explorer(viewer: User, prefix: str) -> None:
    """Filters (kept in the URL), a search of error messages, a keyset-paged table newest first, and
    the detail of one call from the page shown. Widget keys start with `prefix`."""
    is_admin = viewer.role == "admin"
    stack_key = f"{prefix}_cursors"  # the `after` cursor of every page visited, the current one last
    search_key = f"{prefix}_search"

    options = usage.filter_options(engine(), viewer)

    flt, params = usage_view.filter_widgets(prefix, options, is_admin)
    if search_key not in st.session_state:
        st.session_state[search_key] = (st.query_params.get("q") or "")[: log_explorer.SEARCH_MAX_CHARS]
    controls = st.columns([4, 1])
    search = controls[0].text_input(
        "Search error messages",
        max_chars=log_explorer.SEARCH_MAX_CHARS,
        placeholder="Part of an error message",
        key=search_key,
    )
    page_size = controls[1].selectbox("Per page", PAGE_SIZES, key=f"{prefix}_page_size")
    usage_view.keep_in_url(params, {"q": search.strip()})

    # Back to the first page whenever the filters change (by their description: a preset's end moves each run).
    view_key = (tuple(sorted(params.items())), search.strip(), page_size)
    if st.session_state.get(f"{prefix}_view") != view_key:
        st.session_state[f"{prefix}_view"] = view_key
        st.session_state[stack_key] = [None]
    stack = st.session_state[stack_key]

    page = log_explorer.list_calls(engine(), viewer, flt, search=search, after=stack[-1], page_size=page_size)

    def go_next(cursor: Cursor) -> None:
        st.session_state[stack_key].append(cursor)

    def go_previous() -> None:
        if len(st.session_state[stack_key]) > 1:
            st.session_state[stack_key].pop()

    if not page.rows:
        st.info("No calls match these filters." if len(stack) == 1 else "No more calls.")
    else:
        table = call_table(page.rows, with_user=is_admin)
        st.dataframe(table, hide_index=True, width="stretch", key=f"{prefix}_table")

    nav = st.columns([1, 1, 4])
    nav[0].button("Previous", key=f"{prefix}_previous", on_click=go_previous, disabled=len(stack) == 1)
    nav[1].button(
        "Next", key=f"{prefix}_next", on_click=go_next, args=(page.next_cursor,), disabled=page.next_cursor is None
    )
    nav[2].caption(f"Page {len(stack):,}, {len(page.rows):,} call(s) shown, newest first")

    if not page.rows:
        return

    st.header("Call detail")
    rows = {str(r.id): r for r in page.rows}
    selected_key = f"{prefix}_selected"
    if st.session_state.get(selected_key) not in rows:
        st.session_state[selected_key] = next(iter(rows))
    chosen = st.selectbox(
        "Call (from this page)",
        list(rows),
        format_func=lambda i: (
            f"{timestamp(rows[i].created_at)} · {rows[i].model or '—'} · {rows[i].status_code or '—'}"
        ),
        key=selected_key,
    )
    detail = None
    with form_errors():
        detail = log_explorer.call_detail(engine(), viewer, uuid.UUID(chosen))
    if detail is not None:
        call_detail_view(detail, viewer)
