"""Users: creating accounts, with the password policy and the uniqueness of emails."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mindroute import security
from mindroute.errors import PermissionDenied
from mindroute.models import User
from mindroute.validation import (
    ValidationError,
    normalize_email,
    validate_name,
    validate_password,
    validate_role,
)


def require_admin(actor: User | None) -> None:
    """The role check every admin-only service starts with. `None` is the trusted CLI."""
    if actor is not None and (actor.role != "admin" or not actor.is_active):
        raise PermissionDenied("Only administrators can do this")


def find_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def count_active_admins(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User).where(User.role == "admin", User.is_active)) or 0


def admin_exists(session: Session) -> bool:
    return session.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None


def create_user(
    session: Session,
    actor: User | None,
    *,
    email: str,
    name: str,
    password: str,
    role: str = "user",
) -> User:
    """Create an account (admins, or the CLI). Raises ValidationError naming the bad field."""
    require_admin(actor)
    return _insert_user(session, email=email, name=name, password=password, role=role)


def create_first_admin(session: Session, *, email: str, name: str, password: str) -> User:
    """The first-run form: allowed only while no administrator exists."""
    if admin_exists(session):
        raise PermissionDenied("An administrator already exists; sign in instead")
    return _insert_user(session, email=email, name=name, password=password, role="admin")


def sign_up(session: Session, *, email: str, name: str, password: str) -> User:
    """Self sign-up (only when MINDROUTE_ALLOW_SIGNUP is on; the caller checks): always role user."""
    return _insert_user(session, email=email, name=name, password=password, role="user")


def _insert_user(session: Session, *, email: str, name: str, password: str, role: str) -> User:
    email = normalize_email(email)
    name = validate_name(name)
    role = validate_role(role)
    validate_password(password, email=email)
    if find_by_email(session, email) is not None:
        raise ValidationError("email", "Email is already registered")
    user = User(email=email, name=name, role=role, password=security.hash_password(password), is_active=True)
    session.add(user)
    session.flush()
    return user
