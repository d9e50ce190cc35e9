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

from mindroute import i18n
from mindroute.i18n import _, _l, _n
from mindroute.models import AuditLog, User
from mindroute.services import audit
from mindroute.ui import viewer
from mindroute.ui.runtime import engine

PAGE_SIZE = 50
ANY_ACTION = ""  # the action filter's "any" option (a value no action has; shown translated)
CURSORS = "audit_cursors"  # the `before_seq` of every page visited, the current one last

# The stored action ids stay English (the CLI, the CSV and the hash chain read them); the page shows these.
ACTION_LABELS: dict[str, i18n.Message] = {
    "apikey.create": _l("API key created"),
    "apikey.delete": _l("API key deleted"),
    "apikey.revoke": _l("API key revoked"),
    "apikey.rotate": _l("API key rotated"),
    "audit.pruned": _l("Old audit rows deleted"),
    "backup.restore": _l("Backup restored"),
    "grant.bulk_set": _l("Provider permissions set for several users"),
    "grant.set": _l("Provider permission set"),
    "limit.clear": _l("Limits removed"),
    "limit.set": _l("Limits set"),
    "logs.retention_run": _l("Old calls deleted (retention)"),
    "provider.activate": _l("Provider activated"),
    "provider.create": _l("Provider created"),
    "provider.deactivate": _l("Provider deactivated"),
    "provider.delete": _l("Provider deleted"),
    "provider.key_replaced": _l("Provider API key replaced"),
    "provider.settings": _l("Provider settings changed"),
    "provider.update": _l("Provider changed"),
    "secret.rotate": _l("Encryption key rotated"),
    "session.revoke_all": _l("Every session signed out"),
    "signin.failure": _l("Sign-in failed"),
    "signin.success": _l("Signed in"),
    "signin.throttled": _l("Sign-in throttled"),
    "ticket.answer": _l("Ticket answered"),
    "ticket.reopen": _l("Ticket reopened"),
    "ticket.status": _l("Ticket status changed"),
    "user.activate": _l("User activated"),
    "user.create": _l("User created"),
    "user.create_first_admin": _l("First administrator created"),
    "user.deactivate": _l("User deactivated"),
    "user.delete": _l("User deleted"),
    "user.password_change": _l("Password changed"),
    "user.password_set": _l("Password set by an administrator"),
    "user.role": _l("User role changed"),
    "user.sign_up": _l("User signed up"),
    "user.update": _l("User changed"),
}


def action_label(action: str, language: str | None = None) -> str:
    """An action id as the reader's language (or `language`) names it; an id without a label as it is."""
    with i18n.using(language or i18n.current()):
        if action == ANY_ACTION:
            return _("(any action)")
        label = ACTION_LABELS.get(action)
        return action if label is None else i18n.text(label)


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
    """The rows with their headers in the reader's language; the cells are data (the action by its label)."""
    return pd.DataFrame(
        {
            "#": [r.seq for r in rows],
            _("When"): viewer.localize(r.created_at for r in rows),
            _("Actor"): [r.actor_label for r in rows],
            "IP": [r.ip or "" for r in rows],
            _("Action"): [action_label(r.action) for r in rows],
            _("Target"): [f"{r.target_type or ''} {r.target_id or ''}".strip() for r in rows],
            _("Changes"): [
                json.dumps(r.changes, sort_keys=True, ensure_ascii=False) if r.changes else "" for r in rows
            ],
            _("User agent"): [r.user_agent or "" for r in rows],
        }
    )


def audit_explorer(viewer_user: User) -> None:
    """Filters, the table one page at a time (Previous/Next by `seq`), one row's changes, CSV of the filtered rows."""
    db = engine()
    zone = viewer.zone()
    language = i18n.current()  # bound into the selectboxes' format_func: AppTest calls it outside the run
    viewer.zone_note()  # the days of the date filters are in it too
    cols = st.columns(3)
    actor = cols[0].text_input(_("Actor (email or `cli`)"), key="audit_actor", max_chars=255)
    action = cols[1].selectbox(
        _("Action"),
        [ANY_ACTION, *audit.actions(db, viewer_user)],
        format_func=lambda a: action_label(a, language),
        key="audit_action",
    )
    day_help = _("A day in {zone}, like every time on this page", zone=zone.key)
    since = cols[2].date_input(_("From"), value=None, key="audit_since", help=day_help)
    cols = st.columns(3)
    target_type = cols[0].text_input(_("Target type"), key="audit_target_type", max_chars=50)
    target_id = cols[1].text_input(_("Target ID"), key="audit_target_id", max_chars=255)
    until = cols[2].date_input(_("To (included)"), value=None, key="audit_until", help=day_help)
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
        st.info(_("No audit rows match these filters.") if len(stack) == 1 else _("No more rows."))
    else:
        when = _("When")
        st.dataframe(
            audit_table(rows),
            hide_index=True,
            width="stretch",
            key="audit_table",
            # Year-month-day and a 24-hour clock read the same in every language and sort as they read.
            column_config={when: st.column_config.DatetimeColumn(when, format="YYYY-MM-DD HH:mm:ss")},
        )

    def go_next(cursor: int) -> None:
        st.session_state[CURSORS].append(cursor)

    def go_previous() -> None:
        if len(st.session_state[CURSORS]) > 1:
            st.session_state[CURSORS].pop()

    nav = st.columns([1, 1, 4])
    nav[0].button(_("Previous"), key="audit_previous", on_click=go_previous, disabled=len(stack) == 1)
    nav[1].button(
        _("Next"),
        key="audit_next",
        on_click=go_next,
        args=(rows[-1].seq if rows else 0,),
        disabled=not has_next,
    )
    nav[2].caption(
        _n(
            "Page {page}: {shown} of {n} matching row, newest first",
            "Page {page}: {shown} of {n} matching rows, newest first",
            total,
            page=len(stack),
            shown=len(rows),
        )
    )

    if rows:
        by_seq = {r.seq: r for r in rows}
        chosen = st.selectbox(
            _("Row (from this page)"),
            list(by_seq),
            format_func=lambda s: f"#{s} · {action_label(by_seq[s].action, language)}",
            key="audit_selected",
        )
        if chosen in by_seq:
            row = by_seq[chosen]
            st.code(json.dumps(row.changes, indent=2, sort_keys=True, ensure_ascii=False) if row.changes else "{}")
            st.caption(_("The row's hash, then the hash of the row before it:"))
            st.code(f"{row.hash}\n{row.prev_hash}", language=None)

    if st.button(_("Prepare CSV of the matching rows"), key="audit_csv_prepare"):
        body = audit.to_csv(db, viewer_user, flt, zone=zone)
        st.session_state["audit_csv_data"] = (flt, body.encode("utf-8"))
    prepared = st.session_state.get("audit_csv_data")
    if prepared is not None and prepared[0] == flt:
        st.download_button(
            _("Download CSV"), prepared[1], file_name="audit.csv", mime="text/csv", key="audit_csv", on_click="ignore"
        )
