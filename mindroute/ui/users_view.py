"""What the Users and permissions page draws: its tables, choices, and forms filled from stored rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from mindroute import i18n
from mindroute.i18n import _, _l, _n
from mindroute.services.admin_users import UserFilter, UserRow
from mindroute.services.api_keys import ApiKeyRow
from mindroute.services.permissions import MatrixCell, PermissionMatrix
from mindroute.ui.format import tokens
from mindroute.ui.viewer import when

SORT_LABELS = {
    "created_at": _l("Created"),
    "email": _l("Email"),
    "name": _l("Name"),
    "role": _l("Role"),
    "is_active": _l("Active"),
    "last_login": _l("Last login"),
}
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
DEFAULT_SORT = "created_at"  # with "Newest first": the account just created is on top
URL_PARAM = "user"  # ?user=<id>: the user being edited
URL_WRITTEN = "users_url_written"  # the id this session last put in the URL: another one there is a link
CREATED = "create_user_done"  # set by a successful create: the next run empties the form
CREATE_DEFAULTS = {
    "create_user_email": "",
    "create_user_name": "",
    "create_user_password": "",
    "create_user_role": "user",
}
_DATE_SORTS = ("created_at", "last_login")
_TEXT_SORTS = ("email", "name", "role")
ROLE_LABELS = {"admin": _l("Administrator"), "user": _l("User")}
ROLE_CHOICES = {"any": _l("Any role"), "admin": _l("Administrators"), "user": _l("Users")}
STATUS_CHOICES = {"any": _l("Active or not"), "active": _l("Active only"), "inactive": _l("Deactivated only")}
KEY_STATES = {"active": _l("active"), "expired": _l("expired"), "revoked": _l("revoked")}
KEYS_SHOWN_MAX = 500  # a user's keys offered on their limits tab
CONFLICT_MESSAGE = _l(
    "This user was changed by someone else since you opened it. "
    "Reload to see the current values, then make your change again."
)


def user_filter(search: str, role: str, status: str) -> UserFilter:
    return UserFilter(
        search=search,
        role=None if role == "any" else role,
        is_active=None if status == "any" else status == "active",
    )


def label(choices: Mapping[Any, str], code: Any) -> str:
    """A code's display name from one of the dicts above, in the reader's language (a format_func); an unknown
    code as it is."""
    return i18n.text(choices.get(code, code))


def role_label(role: str) -> str:
    """ "admin" -> "Administrator" ("관리자"); an unknown role as it is."""
    return label(ROLE_LABELS, role)


def order_label(sort: str) -> Callable[[bool], str]:
    """How the "Order" choice reads for this sort column: newest first, Z to A, or descending."""
    if sort in _DATE_SORTS:
        return lambda descending: _("Newest first") if descending else _("Oldest first")
    if sort in _TEXT_SORTS:
        return lambda descending: _("Z to A") if descending else _("A to Z")
    return lambda descending: _("Descending") if descending else _("Ascending")


def user_label(row: UserRow) -> str:
    """A user in a select box: option texts are drawn as plain text, never Markdown."""
    if row.is_active:
        return f"{row.email} — {row.name}"
    return _("{email} — {name} (deactivated)", email=row.email, name=row.name)


def key_label(row: ApiKeyRow) -> str:
    """A user's API key in a select box (plain text): its name, prefix and state."""
    state = _("rotating out") if row.rotating_out else label(KEY_STATES, row.state.value)
    return f"{row.name} · {row.prefix}… · {state}"


def user_table(rows: list[UserRow]) -> pd.DataFrame:
    return pd.DataFrame(
        [[r.email, r.name, role_label(r.role), r.is_active, when(r.last_login), when(r.created_at)] for r in rows],
        columns=[_("Email"), _("Name"), _("Role"), _("Active"), _("Last login"), _("Created")],
    )


def access_summary(cell: MatrixCell | None) -> str:
    """One matrix cell: no row and a row turned off both deny; the details show what a grant sets."""
    if cell is None:
        return "—"
    if not cell.allowed:
        return _("off")
    details = [_("allowed")]
    if cell.max_tokens_override is not None:
        details.append(_("≤ {tokens} tokens", tokens=tokens(cell.max_tokens_override)))
    if cell.models:
        details.append(_n("{n} model", "{n} models", len(cell.models)))
    return " · ".join(details)


def provider_heading(name: str, active: bool) -> str:
    """A provider's column header in the matrix: its name, marked when it is inactive."""
    return name if active else _("{name} (inactive)", name=name)


def matrix_table(matrix: PermissionMatrix) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Users × providers, each column headed by what the reader sees: the email, then each provider's name (a
    name that would repeat a header already taken, such as the email's, gets its position added)."""
    email = _("Email")
    columns: dict[str, Any] = {}
    for i, p in enumerate(matrix.providers):
        heading = provider_heading(p.name, p.is_active)
        columns[f"{heading} ({i + 1})" if heading in columns or heading == email else heading] = p
    data = [
        [row.email, *(access_summary(matrix.cell(row.id, p.id)) for p in columns.values())] for row in matrix.users.rows
    ]
    # The email stays in view while the providers scroll sideways; each column is as wide as its
    # provider's name, so no header is cut short (the help repeats the name for very long ones).
    config: dict[str, Any] = {email: st.column_config.TextColumn(email, pinned=True, width="medium")}
    config.update({col: st.column_config.TextColumn(col, help=p.name) for col, p in columns.items()})
    return pd.DataFrame(data, columns=[email, *columns]), config


def load_form(name: str, identity: object, version: datetime | None, values: Mapping[str, Any]) -> datetime | None:
    """Fill a form's widgets from a stored row once per row (not on every run, or typing would be lost).

    Returns the `updated_at` the form was filled from: hand it back as `expected_updated_at`, so a
    save after someone else's change is refused instead of silently undoing it.
    """
    marker = f"{name}__loaded"
    loaded = st.session_state.get(marker)
    if loaded is None or loaded[0] != identity or any(key not in st.session_state for key in values):
        for key, value in values.items():
            st.session_state[key] = value
        loaded = (identity, version)
        st.session_state[marker] = loaded
    return loaded[1]


def reload_form(name: str) -> None:
    """Refill the form from the database on the next run (after a save, or to see someone else's change)."""
    st.session_state.pop(f"{name}__loaded", None)
