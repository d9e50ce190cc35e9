"""The Audit page's body: filters, a keyset-paged table of audit rows newest first, and a CSV download.

Times and the date filters' days are in the viewer's zone (mindroute/ui/viewer.py), said once on the page;
the CSV carries ISO-8601 times with that zone's offset.

Everything in a row (actor label, user agent, target id, changes) is untrusted text: it is drawn only in
st.dataframe cells and st.code, never as Markdown or HTML.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import pandas as pd
import streamlit as st

from mindroute.models import AuditLog, User
from mindroute.services import audit
from mindroute.ui import viewer
from mindroute.ui.runtime import engine

PAGE_SIZE = 50
ANY_ACTION = "(any action)"
CURSORS = "audit_cursors"  # the `before_seq` of every page visited, the current one last


def _moment(day: date | None, zone: tzinfo, *, end: bool = False) -> datetime | None:
    """A day from the date pickers, in the viewer's zone, as the naive UTC bound the service takes (the end
    day included: up to the next day's midnight there, which a DST change may put 23 or 25 hours later)."""
    if day is None:
        return None
    local = datetime.combine(day + timedelta(days=1) if end else day, time.min, tzinfo=zone)
    return local.astimezone(UTC).replace(tzinfo=None)


def audit_filter(
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    since: date | None,
    until: date | None,
    zone: tzinfo = UTC,
) -> audit.AuditFilter:
    """The service's filter from the widgets' values (blank means any); days are in `zone`."""
    return audit.AuditFilter(
        actor=actor.strip() or None,
        action=None if action == ANY_ACTION else action,
        target_type=target_type.strip() or None,
        target_id=target_id.strip() or None,
        since=_moment(since, zone),
        until=_moment(until, zone, end=True),
    )


def audit_table(rows: list[AuditLog]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "#": [r.seq for r in rows],
            "When": viewer.localize(r.created_at for r in rows),
            "Actor": [r.actor_label for r in rows],
            "IP": [r.ip or "" for r in rows],
            "Action": [r.action for r in rows],
            "Target": [f"{r.target_type or ''} {r.target_id or ''}".strip() for r in rows],
            "Changes": [json.dumps(r.changes, sort_keys=True, ensure_ascii=False) if r.changes else "" for r in rows],
            "User agent": [r.user_agent or "" for r in rows],
        }
    )


def audit_explorer(viewer_user: User) -> None:
    """Filters, the table one page at a time (Previous/Next by `seq`), one row's changes, CSV of the filtered rows."""
    db = engine()
    zone = viewer.zone()
    viewer.zone_note()  # the days of the date filters are in it too
    cols = st.columns(3)
    actor = cols[0].text_input("Actor (email or cli)", key="audit_actor", max_chars=255)
    action = cols[1].selectbox("Action", [ANY_ACTION, *audit.actions(db, viewer_user)], key="audit_action")
    day_help = f"A day in {zone.key}, like every time on this page"
    since = cols[2].date_input("From", value=None, key="audit_since", help=day_help)
    cols = st.columns(3)
    target_type = cols[0].text_input("Target type", key="audit_target_type", max_chars=50)
    target_id = cols[1].text_input("Target id", key="audit_target_id", max_chars=255)
    until = cols[2].date_input("To (included)", value=None, key="audit_until", help=day_help)
    flt = audit_filter(actor, action, target_type, target_id, since, until, zone)

    if st.session_state.get("audit_view") != flt:  # back to the first page whenever the filters change
        st.session_state["audit_view"] = flt
        st.session_state[CURSORS] = [None]
    stack: list[int | None] = st.session_state[CURSORS]
    rows = audit.list_rows(db, viewer_user, flt, before_seq=stack[-1], limit=PAGE_SIZE + 1)
    has_next = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    total = audit.count_rows(db, viewer_user, flt)

    if not rows:
        st.info("No audit rows match these filters." if len(stack) == 1 else "No more rows.")
    else:
        st.dataframe(
            audit_table(rows),
            hide_index=True,
            width="stretch",
            key="audit_table",
            column_config={"When": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm:ss")},
        )

    def go_next(cursor: int) -> None:
        st.session_state[CURSORS].append(cursor)

    def go_previous() -> None:
        if len(st.session_state[CURSORS]) > 1:
            st.session_state[CURSORS].pop()

    nav = st.columns([1, 1, 4])
    nav[0].button("Previous", key="audit_previous", on_click=go_previous, disabled=len(stack) == 1)
    nav[1].button(
        "Next",
        key="audit_next",
        on_click=go_next,
        args=(rows[-1].seq if rows else 0,),
        disabled=not has_next,
    )
    noun = "matching row" if total == 1 else "matching rows"
    nav[2].caption(f"Page {len(stack):,}: {len(rows):,} of {total:,} {noun}, newest first")

    if rows:
        by_seq = {r.seq: r for r in rows}
        chosen = st.selectbox(
            "Row (from this page)",
            list(by_seq),
            format_func=lambda s: f"#{s} · {by_seq[s].action}",
            key="audit_selected",
        )
        if chosen in by_seq:
            row = by_seq[chosen]
            st.code(json.dumps(row.changes, indent=2, sort_keys=True, ensure_ascii=False) if row.changes else "{}")
            st.text(f"hash {row.hash}\nprev {row.prev_hash}")

    if st.button("Prepare CSV of the matching rows", key="audit_csv_prepare"):
        body = audit.to_csv(db, viewer_user, flt, zone=zone)
        st.session_state["audit_csv_data"] = (flt, body.encode("utf-8"))
    prepared = st.session_state.get("audit_csv_data")
    if prepared is not None and prepared[0] == flt:
        st.download_button(
            "Download CSV", prepared[1], file_name="audit.csv", mime="text/csv", key="audit_csv", on_click="ignore"
        )
