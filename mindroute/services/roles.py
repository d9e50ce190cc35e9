"""The role checks every service that changes or reads guarded data starts with (the CLI's actor is None)."""

from __future__ import annotations

from mindroute.errors import PermissionDenied
from mindroute.models import User


def require_admin(actor: User | None) -> None:
    """The role check every admin-only service starts with. `None` is the trusted CLI."""
    if actor is not None and (actor.role != "admin" or not actor.is_active):
        raise PermissionDenied("Only administrators can do this")


def require_active(actor: User | None, doing: str) -> User:
    """`actor` when signed in and active, else PermissionDenied("Sign in to <doing>")."""
    if actor is None or not actor.is_active:
        raise PermissionDenied(f"Sign in to {doing}")
    return actor


def require_active_admin(actor: User | None, doing: str) -> User:
    """`actor` when a signed-in, active administrator (not the CLI's None); PermissionDenied otherwise."""
    active = require_active(actor, doing)
    require_admin(active)
    return active
