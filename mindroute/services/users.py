"""Users: creating accounts, with the password policy and the uniqueness of emails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from mindroute import i18n, security
from mindroute.errors import PermissionDenied
from mindroute.models import User, utcnow
from mindroute.services.roles import require_active, require_active_admin, require_admin  # noqa: F401 - the services' checks
from mindroute.services.unit_of_work import unit_of_work
from mindroute.validation import (
    FieldChecks,
    ValidationError,
    normalize_email,
    validate_name,
    validate_password,
    validate_role,
)

_Stmt = TypeVar("_Stmt", bound="Select[Any]")


def for_update(session: Session, stmt: _Stmt) -> _Stmt:
    """`stmt`, made so that what it reads stays true until this transaction ends, on either database.

    PostgreSQL locks the selected rows (FOR UPDATE; a waiting transaction re-reads them after the
    holder commits). SQLite has no row locks: an UPDATE that matches nothing makes this transaction
    the database's one writer now, so the read sees the latest commit and nobody commits before us.
    Objects already loaded are refreshed with what is read.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("UPDATE users SET role = role WHERE 0"))
        return stmt.execution_options(populate_existing=True)
    return stmt.with_for_update().execution_options(populate_existing=True)


def same_instant(a: datetime, b: datetime) -> bool:
    """Whether two timestamps are the same moment; naive ones are UTC, as every column stores them."""

    def naive_utc(value: datetime) -> datetime:
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value

    return naive_utc(a) == naive_utc(b)


def next_updated_at(previous: datetime) -> datetime:
    """Now, but strictly later than `previous`: an editor holding the old value always sees the change."""
    return max(utcnow(), previous + timedelta(microseconds=1))


def find_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def count_active_admins(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User).where(User.role == "admin", User.is_active)) or 0


@unit_of_work
def admin_exists(session: Session) -> bool:
    return session.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None


@unit_of_work
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
    user = _insert_user(session, email=email, name=name, password=password, role=role)
    _record_created(session, "user.create", user, actor)
    return user


@unit_of_work
def create_first_admin(
    session: Session, *, email: str, name: str, password: str, password_repeat: str | None = None
) -> User:
    """The first-run form: allowed only while no administrator exists. With `password_repeat`, a repeat that
    differs is refused (field "repeat") together with every other problem of the form."""
    if admin_exists(session):
        raise PermissionDenied(i18n._l("An administrator already exists; sign in instead"))
    user = _insert_user(
        session, email=email, name=name, password=password, role="admin", password_repeat=password_repeat
    )
    _record_created(session, "user.create_first_admin", user, user)
    return user


@unit_of_work
def sign_up(session: Session, *, email: str, name: str, password: str) -> User:
    """Self sign-up (only when MINDROUTE_ALLOW_SIGNUP is on; the caller checks): always role user."""
    user = _insert_user(session, email=email, name=name, password=password, role="user")
    _record_created(session, "user.sign_up", user, user)
    return user


def _record_created(session: Session, action: str, user: User, actor: User | None) -> None:
    from mindroute.services import audit  # audit imports the models only; keeps this module's imports light

    changes = {"email": [None, user.email], "name": [None, user.name], "role": [None, user.role]}
    audit.record(session, action, "user", user.id, changes, actor=actor)


def _insert_user(
    session: Session, *, email: str, name: str, password: str, role: str, password_repeat: str | None = None
) -> User:
    """Every problem of the form at once (FieldChecks), each for its field; nothing written when any."""
    checks = FieldChecks()
    name = checks.check(validate_name, name)
    email = checks.check(normalize_email, email)
    role = checks.check(validate_role, role)
    checks.check(validate_password, password, email=email)
    if password_repeat is not None and password_repeat != password:
        checks.check(_refuse, "repeat", i18n._l("The two passwords differ"))
    if email is not None and find_by_email(session, email) is not None:
        checks.check(_refuse, "email", i18n._l("Email is already registered"))
    checks.raise_any()
    user = User(email=email, name=name, role=role, password=security.hash_password(password), is_active=True)
    session.add(user)
    session.flush()
    return user


def _refuse(field: str, message: str) -> None:
    raise ValidationError(field, message)


THEMES = ("light", "dark")
LANGUAGES = tuple(i18n.LANGUAGES)
# In the tz database but not places a person lives in.
_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})


def zone_choices() -> list[str]:
    """The IANA zones Account offers (and set_preferences accepts), sorted."""
    from zoneinfo import available_timezones  # read only here; keeps the import cost off the other services

    return sorted((available_timezones() | {"UTC"}) - _NOT_ZONES)


@unit_of_work
def set_preferences(session: Session, actor: User | None, *, timezone: str | None, theme: str | None) -> User:
    """Save the signed-in user's own display preferences: an IANA zone and 'light' / 'dark'; None follows the
    browser. Raises ValidationError("timezone" / "theme") for a value not offered."""
    me = require_active(actor, i18n._l("Sign in to change your preferences"))
    zone = (timezone or "").strip() or None
    if zone is not None and zone not in zone_choices():
        raise ValidationError("timezone", i18n._l("Choose a time zone from the list"))
    shade = (theme or "").strip().lower() or None
    if shade is not None and shade not in THEMES:
        raise ValidationError("theme", i18n._l("Choose light, dark or follow the browser"))
    user = session.scalar(for_update(session, select(User).where(User.id == me.id)))
    if user is None or not user.is_active:
        raise PermissionDenied(i18n._l("Sign in to change your preferences"))
    user.timezone, user.theme = zone, shade
    session.flush()
    return user


@unit_of_work
def set_language(session: Session, actor: User | None, language: str | None) -> User:
    """Save the signed-in user's console language ('en', 'ko'); None follows the browser.
    Raises ValidationError("language") for a language not offered."""
    me = require_active(actor, i18n._l("Sign in to change your preferences"))
    choice = (language or "").strip().lower() or None
    if choice is not None and choice not in LANGUAGES:
        raise ValidationError("language", i18n._l("Choose a language from the list"))
    user = session.scalar(for_update(session, select(User).where(User.id == me.id)))
    if user is None or not user.is_active:
        raise PermissionDenied(i18n._l("Sign in to change your preferences"))
    user.language = choice
    session.flush()
    return user
