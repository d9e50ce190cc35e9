"""The call explorer shared by the admin Logs page and a user's Calls page: filters, keyset pages, one call.

The service scopes every read by the viewer (log_explorer): an administrator sees every call, a user
their own. What a call holds (bodies, errors, names) is untrusted text: drawn with st.text/st.code only.
"""

from __future__ import annotations

import uuid
from datetime import tzinfo

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from mindroute import i18n
from mindroute.analytics.filter import UsageFilter
from mindroute.errors import NotFound
from mindroute.i18n import _, _l, _n
from mindroute.models import User
from mindroute.services import log_explorer, usage
from mindroute.services.log_explorer import CallDetail, CallRow, Cursor
from mindroute.timezones import iso_time
from mindroute.ui import usage_view, viewer
from mindroute.ui.runtime import engine

PAGE_SIZES = (25, 50, 100)
SUPPORT_PAGE = "pages/workspace/support.py"
SUPPORT_CALL_PARAM = "call"  # ?call=<log id> on the Support page: the call a new ticket is about
CALL_PARAM = "call"  # ?call=<log id> on Logs and Calls: the call whose detail is open
DASH = "—"
SOURCE_LABELS = {"playground": _l("Playground"), "api": _l("API")}
DELETED_KEY = "deleted key"  # CallRow.api_key_label's word for a key deleted since (log_explorer)
# The table's columns (and the CSV's, in the reader's language), by a stable name.
HEADERS = {
    "time": _l("Time"),
    "user": _l("User"),
    "provider": _l("Provider"),
    "model": _l("Model"),
    "type": _l("Type"),
    "source": _l("Source"),
    "api_key": _l("API key"),
    "status": _l("Status"),
    "tokens": _l("Tokens"),
    "duration": _l("Duration (ms)"),
    "error": _l("Error"),
}


def header(name: str) -> str:
    return i18n.text(HEADERS[name])


def source_text(source: str) -> str:
    label = SOURCE_LABELS.get(source)
    return i18n.text(label) if label is not None else source


def key_text(row: CallRow) -> str:
    """The key's name; a key deleted since, or no key, in the reader's words."""
    if row.api_key_id is not None and row.api_key_name is None:
        return _("deleted key")
    return row.api_key_label


def _shown(value: object) -> str:
    return DASH if value is None else str(value)


def _number(value: int | float | None) -> str:
    """A count or a duration in ms: whole, with thousands separators; a dash when there is none."""
    return DASH if value is None else i18n.number(round(value))


def calls_noun(count: int) -> str:
    return _n("{n} call", "{n} calls", count)


def call_columns(rows: list[CallRow], *, with_user: bool, csv_zone: tzinfo | None = None) -> dict[str, list[object]]:
    """The table's columns by their headers. On the page: times zone-aware in the viewer's zone, numbers as
    text with thousands separators. For the CSV (`csv_zone` given) the same columns, times ISO-8601 with
    their offset in that zone, plain numbers (the download runs outside the page's run, so the zone is passed)."""
    if csv_zone is not None:
        times: list[object] = [iso_time(r.created_at, csv_zone) for r in rows]
    else:
        times = list(viewer.localize(r.created_at for r in rows))

    def number(value: int | float | None) -> object:
        if csv_zone is not None:
            return "" if value is None else round(value)
        return _number(value)

    def text(value: str | None) -> str:
        return value or ("" if csv_zone is not None else DASH)

    columns: dict[str, list[object]] = {header("time"): times}
    if with_user:
        deleted = _("deleted user")
        columns[header("user")] = [r.user_email or deleted for r in rows]
    columns |= {
        header("provider"): [text(r.provider) for r in rows],
        header("model"): [text(r.model) for r in rows],
        header("type"): [usage_view.request_type_text(r.request_type) for r in rows],
        header("source"): [source_text(r.source) for r in rows],
        header("api_key"): [key_text(r) for r in rows],
        header("status"): [number(r.status_code) for r in rows],
        header("tokens"): [number(r.tokens_used) for r in rows],
        header("duration"): [number(r.duration_ms) for r in rows],
        header("error"): [r.error_message or "" for r in rows],
    }
    return columns


def call_table(rows: list[CallRow], *, with_user: bool) -> pd.DataFrame:
    return pd.DataFrame(call_columns(rows, with_user=with_user))


def calls_csv(
    engine_: Engine,
    viewer_user: User,
    flt: UsageFilter,
    search: str,
    *,
    with_user: bool,
    zone: tzinfo,
    language: str | None = None,
) -> bytes:
    """Every matching call (not only the page shown) with the table's columns, read a page at a time; the
    headers and words in `language` (the page's: the download runs outside the page's run), else the run's."""
    rows = [row for page in log_explorer.call_pages(engine_, viewer_user, flt, search=search) for row in page]
    with i18n.using(language or i18n.current()):
        return usage_view.csv_bytes(pd.DataFrame(call_columns(rows, with_user=with_user, csv_zone=zone)))


def call_summary(detail: CallDetail) -> str:
    """The call's facts as one block of plain text, times in the viewer's zone."""
    row = detail.row
    gap = "   "
    return "\n".join(
        [
            _("Call {id}", id=str(row.id)),
            _("Time: {time}", time=viewer.when(row.created_at, seconds=True)),
            _("User: {email}", email=row.user_email or _("(deleted or none)")),
            gap.join(
                [
                    _("Provider: {provider}", provider=row.provider or DASH),
                    _("Model: {model}", model=row.model or DASH),
                    _("Type: {type}", type=usage_view.request_type_text(detail.request_type)),
                ]
            ),
            gap.join(
                [
                    _("Source: {source}", source=source_text(row.source)),
                    _("API key: {key}", key=key_text(row) or DASH),
                ]
            ),
            _("Status: {status}", status=_shown(row.status_code)),
            _(
                "Tokens: {tokens} (input {input}, output {output})",
                tokens=_number(row.tokens_used),
                input=_number(row.prompt_tokens),
                output=_number(row.completion_tokens),
            ),
            gap.join(
                [
                    _("Duration: {ms} ms", ms=_number(row.duration_ms)),
                    _("Time to first token: {ms} ms", ms=_number(detail.time_to_first_token_ms)),
                ]
            ),
            _("IP: {ip}", ip=row.ip or DASH),
            _("User agent: {agent}", agent=detail.user_agent or DASH),
        ]
    )


def ticket_link(row: CallRow, viewer_user: User) -> None:
    """A link to the Support page with this call chosen for a new ticket; only a call's owner opens one
    (the tickets service refuses anyone else's call)."""
    if row.user_id == viewer_user.id:
        st.page_link(
            SUPPORT_PAGE,
            label=_("Open a support ticket about this call"),
            icon=":material/support:",
            query_params={SUPPORT_CALL_PARAM: str(row.id)},
        )
    else:
        st.caption(_("Only the person who made this call can open a support ticket about it."))


def call_detail_view(detail: CallDetail, viewer_user: User) -> None:
    row = detail.row
    st.text(call_summary(detail))
    ticket_link(row, viewer_user)
    if row.error_message:
        st.caption(_("Error"))
        st.code(row.error_message, language=None, wrap_lines=True)
    request_tab, response_tab = st.tabs([_("Request body"), _("Response body")])
    empty = _("(empty)")
    with request_tab:
        st.code(detail.request_body or empty, language="json", wrap_lines=True)
    with response_tab:
        st.code(detail.response_body or empty, language="json", wrap_lines=True)


def _requested_call(prefix: str, table_key: str) -> str | None:
    """The call whose detail is open: the row just clicked (mapped through the ids that table showed, so a
    call logged since cannot shift it), else the one in the URL. Unclicking the row closes the detail."""
    state = st.session_state.get(table_key)
    picked = tuple(state["selection"]["rows"]) if state else ()
    last_key = f"{prefix}_last_pick"
    last = st.session_state.get(last_key)
    st.session_state[last_key] = (table_key, picked)
    if last is not None and last[0] == table_key and last[1] != picked:  # the click of this run
        ids = st.session_state.get(f"{prefix}_shown_ids", {}).get(table_key, [])
        return ids[picked[0]] if picked and picked[0] < len(ids) else None
    return st.query_params.get(CALL_PARAM)


def _parse_call_id(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def call_explorer(viewer_user: User, prefix: str) -> None:
    """Filters (kept in the URL), a search of error messages, the total, a keyset-paged table newest first,
    a CSV of every matching call, and the detail of the call clicked (its id kept in the URL as ?call=).
    Widget keys start with `prefix`."""
    is_admin = viewer_user.role == "admin"
    stack_key = f"{prefix}_cursors"  # the `after` cursor of every page visited, the current one last
    search_key = f"{prefix}_search"
    generation_key = f"{prefix}_table_generation"  # a new table widget (no stale selection) for each page shown

    options = usage.filter_options(engine(), viewer_user)

    flt, params = usage_view.filter_widgets(prefix, options, is_admin)
    if search_key not in st.session_state:
        st.session_state[search_key] = (st.query_params.get("q") or "")[: log_explorer.SEARCH_MAX_CHARS]
    controls = st.columns([4, 1])
    typed = controls[0].text_input(
        _("Search error messages"),
        max_chars=log_explorer.SEARCH_MAX_CHARS,
        placeholder=_("Part of an error message"),
        key=search_key,
    )
    search = typed.strip()
    page_size = controls[1].selectbox(
        _("Per page"), PAGE_SIZES, format_func=lambda n: i18n.number(n), key=f"{prefix}_page_size"
    )

    # Back to the first page whenever the filters change (by their description: a preset's end moves each run).
    view_key = (tuple(sorted(params.items())), search, page_size)
    if st.session_state.get(f"{prefix}_view") != view_key:
        st.session_state[f"{prefix}_view"] = view_key
        st.session_state[stack_key] = [None]
        st.session_state[f"{prefix}_total"] = log_explorer.count_calls(engine(), viewer_user, flt, search=search)
        st.session_state[generation_key] = st.session_state.get(generation_key, 0) + 1
    stack = st.session_state[stack_key]
    total: int = st.session_state[f"{prefix}_total"]
    table_key = f"{prefix}_table_{st.session_state[generation_key]}"

    requested = _requested_call(prefix, table_key)
    usage_view.keep_in_url(params, {"q": search, CALL_PARAM: requested or ""})

    page = log_explorer.list_calls(engine(), viewer_user, flt, search=search, after=stack[-1], page_size=page_size)

    def turn(step: int, cursor: Cursor | None = None) -> None:
        if step > 0:
            st.session_state[stack_key].append(cursor)
        elif len(st.session_state[stack_key]) > 1:
            st.session_state[stack_key].pop()
        st.session_state[generation_key] += 1

    viewer.zone_note()
    st.caption(_n("{n} call matches", "{n} calls match", total))
    if not page.rows:
        st.info(_("No calls match these filters.") if len(stack) == 1 else _("No more calls."))
    else:
        st.session_state[f"{prefix}_shown_ids"] = {table_key: [str(r.id) for r in page.rows]}
        st.dataframe(
            call_table(page.rows, with_user=is_admin),
            hide_index=True,
            width="stretch",
            key=table_key,
            on_select="rerun",
            selection_mode="single-row",
            column_config={
                header("time"): st.column_config.DatetimeColumn(header("time"), format="YYYY-MM-DD HH:mm:ss")
            },
        )

    nav = st.columns([1, 1, 3, 2])
    nav[0].button(_("Previous"), key=f"{prefix}_previous", on_click=turn, args=(-1,), disabled=len(stack) == 1)
    nav[1].button(
        _("Next"),
        key=f"{prefix}_next",
        on_click=turn,
        args=(1, page.next_cursor),
        disabled=page.next_cursor is None,
    )
    first = (len(stack) - 1) * page_size + 1
    if page.rows:
        nav[2].caption(
            _(
                "Page {page}: calls {first}–{last}, newest first",
                page=len(stack),
                first=first,
                last=first + len(page.rows) - 1,
            )
        )
    csv_engine, csv_search, csv_zone, csv_language = engine(), search, viewer.zone(), i18n.current()
    nav[3].download_button(
        _("Download CSV"),
        lambda: calls_csv(
            csv_engine, viewer_user, flt, csv_search, with_user=is_admin, zone=csv_zone, language=csv_language
        ),
        file_name=f"{prefix}.csv",
        mime="text/csv",
        key=f"{prefix}_csv",
        on_click="ignore",
        disabled=total == 0,
    )

    st.header(_("Call detail"))
    if requested is None:
        st.caption(_("Click a row to see the call's detail."))
        return
    call_id = _parse_call_id(requested)
    detail = None
    try:
        detail = log_explorer.call_detail(engine(), viewer_user, call_id) if call_id is not None else None
    except NotFound:
        detail = None
    if detail is None:
        # Unknown, malformed and someone else's look alike.
        st.warning(_("Call not found: it does not exist, was deleted, or is not one of the calls you can see."))
        return
    call_detail_view(detail, viewer_user)
