"""User administration for the admin console: a searchable, paginated user list and every change to an account.

Accounts are created with `mindroute.services.users.create_user`. Every change here takes the acting
admin, refuses an admin removing their own rights, and refuses any path (demote, deactivate,
delete) that would leave MindRoute without an active administrator. Each public service
takes an engine (and runs in a transaction of its own) or a session already in one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, true
from sqlalchemy.orm import Session

from mindroute import security
from mindroute.errors import ConflictError, NotFound
from mindroute.i18n import _l
from mindroute.models import ROLES, ApiKey, Log, Ticket, User, UserProvider  # noqa: F401 - ROLES for the pages
from mindroute.services import audit
from mindroute.services.auth import revoke_user_sessions
from mindroute.services.paging import Page
from mindroute.services.unit_of_work import unit_of_work
from mindroute.services.users import (
    count_active_admins,
    for_update,
    next_updated_at,
    require_admin,
    same_instant,
)
from mindroute.validation import (
    FieldChecks,
    ValidationError,
    validate_flag,
    validate_name,
    validate_password,
    validate_role,
)

SORT_COLUMNS = ("email", "name", "role", "is_active", "last_login", "created_at")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
SEARCH_MAX_CHARS = 255
LAST_ADMIN_MESSAGE = _l("MindRoute needs at least one active administrator: make another user an administrator first")

_SORT_EXPRESSIONS = {
    "email": User.email,
    "name": User.name,
    "role": User.role,
    "is_active": User.is_active,
    "last_login": User.last_login,
    "created_at": User.created_at,
}


@dataclass(frozen=True)
class UserRow:
    """What the admin's user table shows of an account (never the password hash)."""

    id: uuid.UUID
    email: str
    name: str
    role: str
    is_active: bool
    last_login: datetime | None
    created_at: datetime
    updated_at: datetime  # hand back as `expected_updated_at` when saving an edit


UserPage = Page[UserRow]  # one page of the list, with the total on every page


@dataclass(frozen=True)
class UserFilter:
    """Which users a list or a bulk change covers: all of them when left empty."""

    search: str = ""  # part of the email or the name, any case
    role: str | None = None
    is_active: bool | None = None


@dataclass(frozen=True)
class UserDeletionImpact:
    """What deleting a user takes with it (cascades) and what it keeps (logs lose their user link)."""

    api_keys: int
    tickets: int
    provider_grants: int
    log_rows_unlinked: int


def _row(user: User) -> UserRow:
    return UserRow(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        is_active=user.is_active,
        last_login=user.last_login,
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def user_filter_condition(where: UserFilter) -> ColumnElement[bool]:
    """The SQL condition for `where`; shared by the list, the matrix and bulk permission changes."""
    conditions: list[ColumnElement[bool]] = []
    term = where.search.strip()
    if len(term) > SEARCH_MAX_CHARS:
        raise ValidationError("search", _l("Search must be at most {max} characters", max=SEARCH_MAX_CHARS))
    if term:
        # Lower-casing both sides makes the match case-insensitive on PostgreSQL and SQLite alike
        # (emails are stored lower-cased already). SQLite's lower() folds ASCII letters only.
        pattern = _like_pattern(term.lower())
        conditions.append(or_(User.email.like(pattern, escape="\\"), func.lower(User.name).like(pattern, escape="\\")))
    if where.role is not None:
        conditions.append(User.role == validate_role(where.role))
    if where.is_active is not None:
        conditions.append(User.is_active.is_(True) if where.is_active else User.is_active.is_(False))
    return and_(*conditions) if conditions else true()


@unit_of_work
def list_users(
    session: Session,
    actor: User | None,
    where: UserFilter | None = None,
    *,
    sort: str = "created_at",
    descending: bool = True,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> UserPage:
    """One page of users matching `where`, sorted in the database, with the total count."""
    require_admin(actor)
    where = where or UserFilter()
    if sort not in _SORT_EXPRESSIONS:
        raise ValidationError(
            "sort",
            _l("Cannot sort by {sort}: choose one of {choices}", sort=repr(sort), choices=", ".join(SORT_COLUMNS)),
        )
    page_size = min(max(int(page_size), 1), MAX_PAGE_SIZE)
    condition = user_filter_condition(where)
    total = session.scalar(select(func.count()).select_from(User).where(condition)) or 0
    last_page = max(1, -(-total // page_size))
    page = min(max(int(page), 1), last_page)
    column = _SORT_EXPRESSIONS[sort]
    order = column.desc() if descending else column.asc()
    if column.expression.nullable:
        # Never-signed-in users go last either way, on both databases. (Only where NULLs exist:
        # the clause would keep PostgreSQL from reading the email index backwards.)
        order = order.nulls_last()
    stmt = (
        select(User)
        .where(condition)
        # The id breaks ties, so no row shows on two pages.
        .order_by(order, User.id.desc() if descending else User.id.asc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    return UserPage(rows=[_row(u) for u in session.scalars(stmt)], total=total, page=page, page_size=page_size)


@unit_of_work
def get_user(session: Session, actor: User | None, user_id: uuid.UUID) -> UserRow:
    require_admin(actor)
    return _row(_load(session, user_id))


def _load(session: Session, user_id: uuid.UUID, *, lock: bool = False) -> User:
    stmt = select(User).where(User.id == user_id)
    user = session.scalar(for_update(session, stmt) if lock else stmt)
    if user is None:
        raise NotFound(_l("This user no longer exists"))
    return user


def _lock_active_admins(session: Session) -> None:
    """Serialize every change that could remove an administrator.

    Two admins demoting each other at the same moment would each see two admins and both
    succeed; locking the admin rows (in id order, so no deadlock) makes the second wait and then
    count again.
    """
    stmt = select(User.id).where(User.role == "admin", User.is_active).order_by(User.id)
    session.execute(for_update(session, stmt)).all()


def _refuse_removing_last_admin(session: Session, target: User, field: str) -> None:
    if target.role == "admin" and target.is_active and count_active_admins(session) <= 1:
        raise ValidationError(field, LAST_ADMIN_MESSAGE)


def _is_self(actor: User | None, user_id: uuid.UUID) -> bool:
    return actor is not None and actor.id == user_id


def _touch(user: User) -> None:
    user.updated_at = next_updated_at(user.updated_at)


@unit_of_work
def update_user(
    session: Session,
    actor: User | None,
    user_id: uuid.UUID,
    *,
    name: str | None = None,
    role: str | None = None,
    expected_updated_at: datetime | None = None,
) -> UserRow:
    """Change a user's name and/or role; a field left None keeps its current value.

    Passing only the fields the admin changed means two admins editing different fields both
    keep their change. With `expected_updated_at` (the `updated_at` the form was loaded with) the
    save is refused with ConflictError if anything changed since.
    """
    require_admin(actor)
    checks = FieldChecks()  # a bad name and a bad role are both shown, each at its field
    new_name = checks.check(validate_name, name) if name is not None else None
    new_role = checks.check(validate_role, role) if role is not None else None
    if new_role == "user" and _is_self(actor, user_id):
        checks.problems["role"] = _l("You cannot remove your own administrator role; ask another administrator")
    checks.raise_any()
    if new_role == "user":
        _lock_active_admins(session)
    user = _load(session, user_id, lock=True)
    if expected_updated_at is not None and not same_instant(user.updated_at, expected_updated_at):
        raise ConflictError(
            _l("{email} was changed by someone else since you opened it; reload and try again", email=user.email)
        )
    if new_role == "user":
        _refuse_removing_last_admin(session, user, "role")
    changed = False
    before = {"name": user.name, "role": user.role}
    if new_name is not None and new_name != user.name:
        user.name, changed = new_name, True
    if new_role is not None and new_role != user.role:
        user.role, changed = new_role, True
    if changed:
        _touch(user)
        session.flush()
        changes = audit.diff(before, {"name": user.name, "role": user.role})
        action = "user.role" if "role" in changes else "user.update"
        audit.record(session, action, "user", user.id, changes, actor=actor)
    return _row(user)


@unit_of_work
def set_user_active(session: Session, actor: User | None, user_id: uuid.UUID, active: bool) -> UserRow:
    """Activate or deactivate an account; deactivating also signs it out everywhere."""
    require_admin(actor)
    validate_flag(active, "is_active", _l("Active"))
    if not active and _is_self(actor, user_id):
        raise ValidationError("is_active", _l("You cannot deactivate your own account"))
    if not active:
        _lock_active_admins(session)
    user = _load(session, user_id, lock=True)
    if not active:
        _refuse_removing_last_admin(session, user, "is_active")
    if user.is_active != active:
        user.is_active = active
        _touch(user)
        session.flush()
        action = "user.activate" if active else "user.deactivate"
        audit.record(session, action, "user", user.id, {"is_active": [not active, active]}, actor=actor)
    if not active:
        # A deactivated user's open browser sessions must stop working now, not when they expire.
        revoke_user_sessions(session, user.id, record=False)
    return _row(user)


@unit_of_work
def set_user_password(session: Session, actor: User | None, user_id: uuid.UUID, password: str) -> None:
    """Set a new password for a user (policy as at sign-up) and sign them out everywhere."""
    require_admin(actor)
    user = _load(session, user_id)
    validate_password(password, email=user.email)
    user.password = security.hash_password(password)
    _touch(user)
    session.flush()
    revoke_user_sessions(session, user.id, record=False)
    audit.record(session, "user.password_set", "user", user.id, {"password": "password set"}, actor=actor)


@unit_of_work
def user_deletion_impact(session: Session, actor: User | None, user_id: uuid.UUID) -> UserDeletionImpact:
    """The counts the delete confirmation shows."""
    require_admin(actor)
    _load(session, user_id)

    def count(model: type[ApiKey | Ticket | UserProvider | Log]) -> int:
        return session.scalar(select(func.count()).select_from(model).where(model.user_id == user_id)) or 0

    return UserDeletionImpact(
        api_keys=count(ApiKey), tickets=count(Ticket), provider_grants=count(UserProvider), log_rows_unlinked=count(Log)
    )


@unit_of_work
def delete_user(session: Session, actor: User | None, user_id: uuid.UUID) -> None:
    """Delete an account; its keys, tickets, grants and sessions go with it, its log rows stay unlinked."""
    require_admin(actor)
    if _is_self(actor, user_id):
        raise ValidationError("user", _l("You cannot delete your own account"))
    _lock_active_admins(session)
    user = _load(session, user_id, lock=True)
    _refuse_removing_last_admin(session, user, "user")
    # The database's ON DELETE rules do the cascading, exactly as the schema document defines them.
    email, role = user.email, user.role
    session.execute(delete(User).where(User.id == user.id).execution_options(synchronize_session=False))
    session.expunge(user)
    audit.record(session, "user.delete", "user", user_id, {"email": [email, None], "role": [role, None]}, actor=actor)
