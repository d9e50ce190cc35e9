"""What the Users and permissions page draws: its tables, choices, and forms filled from stored rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from mindroute.services.admin_users import UserFilter, UserRow
from mindroute.services.api_keys import ApiKeyRow
from mindroute.services.permissions import MatrixCell, PermissionMatrix
from mindroute.ui.format import tokens
from mindroute.ui.viewer import when

SORT_LABELS = {
    "created_at": "Created",
    "email": "Email",
    "name": "Name",
    "role": "Role",
    "is_active": "Active",
    "last_login": "Last login",
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
ROLE_CHOICES = {"any": "Any role", "admin": "Administrators", "user": "Users"}
STATUS_CHOICES = {"any": "Active or not", "active": "Active only", "inactive": "Deactivated only"}
KEYS_SHOWN_MAX = 500  # a user's keys offered on their limits tab
CONFLICT_MESSAGE = (
    "This user was changed by someone else since you opened it. "
    "Reload to see the current values, then make your change again."
)


def user_filter(search: str, role: str, status: str) -> UserFilter:
    return UserFilter(
        search=search,
        role=None if role == "any" else role,
        is_active=None if status == "any" else status == "active",
    )


def order_label(sort: str) -> Callable[[bool], str]:
    """How the "Order" choice reads for this sort column: newest first, Z to A, or descending."""
    if sort in _DATE_SORTS:
        return lambda descending: "Newest first" if descending else "Oldest first"
    if sort in _TEXT_SORTS:
        return lambda descending: "Z to A" if descending else "A to Z"
    return lambda descending: "Descending" if descending else "Ascending"


def user_label(row: UserRow) -> str:
    """A user in a select box: option texts are drawn as plain text, never Markdown."""
    return f"{row.email} — {row.name}" + ("" if row.is_active else " (deactivated)")


def key_label(row: ApiKeyRow) -> str:
    """A user's API key in a select box (plain text): its name, prefix and state."""
    return f"{row.name} · {row.prefix}… · {'rotating out' if row.rotating_out else row.state.value}"


def user_table(rows: list[UserRow]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Email": r.email,
                "Name": r.name,
                "Role": r.role,
                "Active": r.is_active,
                "Last login": when(r.last_login),
                "Created": when(r.created_at),
            }
            for r in rows
        ],
        columns=["Email", "Name", "Role", "Active", "Last login", "Created"],
    )


def access_summary(cell: MatrixCell | None) -> str:
    """One matrix cell: no row and a row turned off both deny; the details show what a grant sets."""
    if cell is None:
        return "—"
    if not cell.allowed:
        return "off"
    details = []
    if cell.max_tokens_override is not None:
        details.append(f"≤ {tokens(cell.max_tokens_override)} tokens")
    if cell.models:
        details.append(f"{len(cell.models)} model{'s' if len(cell.models) != 1 else ''}")
    return " · ".join(["allowed", *details])


def matrix_table(matrix: PermissionMatrix) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Users × providers; columns are keyed by position so no provider name can clash with "Email"."""
    columns = {f"provider_{i}": p for i, p in enumerate(matrix.providers)}
    data = [
        {"Email": row.email, **{col: access_summary(matrix.cell(row.id, p.id)) for col, p in columns.items()}}
        for row in matrix.users.rows
    ]
    # The email stays in view while the providers scroll sideways; each column is as wide as its
    # provider's name, so no header is cut short (the help repeats the name for very long ones).
    config: dict[str, Any] = {"Email": st.column_config.TextColumn("Email", pinned=True, width="medium")}
    config.update(
        {
            col: st.column_config.TextColumn(p.name + ("" if p.is_active else " (inactive)"), help=p.name)
            for col, p in columns.items()
        }
    )
    return pd.DataFrame(data, columns=["Email", *columns]), config


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
