"""The role checks every service that changes or reads guarded data starts with (the CLI's actor is None)."""

from __future__ import annotations

from mindroute.errors import PermissionDenied
from mindroute.i18n import Message, _l
from mindroute.models import User


def require_admin(actor: User | None) -> None:
    """The role check every admin-only service starts with. `None` is the trusted CLI."""
    if actor is not None and (actor.role != "admin" or not actor.is_active):
        raise PermissionDenied(_l("Only administrators can do this"))


def require_active(actor: User | None, refusal: Message) -> User:
    """`actor` when signed in and active, else PermissionDenied(refusal): a whole sentence, such as
    `_l("Sign in to manage API keys")` (a sentence built from fragments cannot be translated)."""
    if actor is None or not actor.is_active:
        raise PermissionDenied(refusal)
    return actor


def require_active_admin(actor: User | None, refusal: Message) -> User:
    """`actor` when a signed-in, active administrator (not the CLI's None); PermissionDenied otherwise."""
    active = require_active(actor, refusal)
    require_admin(active)
    return active
