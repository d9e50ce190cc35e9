"""MindRoute API keys: issuing, listing, revoking, rotating and verifying them, with who may do what.

A user acts on their own keys only; an administrator on anyone's. A non-admin asking for someone
else's key gets NotFound, exactly as for a key that does not exist, so key ids leak nothing.

The database keeps a key's SHA-256 digest (`apikeys.key`) and its display prefix, never the key.
A key stops working when `expiresat` or `revokedat` passes, whichever comes first. Revoking sets
`revokedat` to now; rotating with a grace period sets the old key's `revokedat` to now + grace, so
it keeps working until then (and reads as active, with `stops_at`, meanwhile).

Each public service takes an engine (and runs in a transaction of its own) or a session already in one.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, true, update
from sqlalchemy.orm import Session

from mindroute import security
from mindroute.errors import NotFound, PermissionDenied
from mindroute.i18n import _l
from mindroute.models import ApiKey, User, utcnow
from mindroute.services import audit
from mindroute.services.paging import Page
from mindroute.services.unit_of_work import unit_of_work
from mindroute.services.users import for_update, require_active, require_active_admin
from mindroute.validation import API_KEY_NAME_MAX, FieldChecks, ValidationError, validate_api_key_name  # noqa: F401

EXPIRY_PRESETS: dict[str, timedelta | None] = {
    "30 days": timedelta(days=30),
    "90 days": timedelta(days=90),
    "365 days": timedelta(days=365),
    "Never": None,
}
LAST_USED_RESOLUTION = timedelta(minutes=1)  # a busy key costs at most one write a minute
PRESENTED_KEY_MAX_CHARS = 256  # far above a real key; longer input is not hashed at all
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
KEY_NOT_FOUND = _l("This API key does not exist or was deleted")

# Compared against when no row matches, so an unknown key goes through the same comparison.
_NO_MATCH_DIGEST = security.digest("mindroute: no such key")


class KeyState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class RotationGrace(StrEnum):
    """How long a rotated-out key keeps working, so clients can switch to the replacement."""

    NONE = "none"
    ONE_HOUR = "1 hour"
    ONE_DAY = "24 hours"

    @property
    def duration(self) -> timedelta:
        return _GRACE_DURATIONS[self]


_GRACE_DURATIONS = {
    RotationGrace.NONE: timedelta(0),
    RotationGrace.ONE_HOUR: timedelta(hours=1),
    RotationGrace.ONE_DAY: timedelta(hours=24),
}


class KeyRefusal(StrEnum):
    """Why a presented key was not accepted; the API turns it into an error response."""

    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    OWNER_DEACTIVATED = "owner_deactivated"

    @property
    def message(self) -> str:
        return _REFUSAL_MESSAGES[self]


_REFUSAL_MESSAGES = {
    KeyRefusal.UNKNOWN: "Unknown API key",
    KeyRefusal.EXPIRED: "This API key has expired",
    KeyRefusal.REVOKED: "This API key has been revoked",
    KeyRefusal.OWNER_DEACTIVATED: "The account this API key belongs to is deactivated",
}


@dataclass(frozen=True)
class VerifiedKey:
    user: User
    key_id: uuid.UUID


class IssuedApiKey(NamedTuple):
    """A new key: unpacks as `(key, plaintext)`. Show the plaintext once; it is stored nowhere."""

    key: ApiKey
    plaintext: str

    def __repr__(self) -> str:  # the plaintext must not end up in a log line or a traceback
        return f"IssuedApiKey(key_id={self.key.id!s}, prefix={self.key.prefix!r})"


@dataclass(frozen=True)
class ApiKeyRow:
    """What a key table shows of a key (never its digest)."""

    id: uuid.UUID
    user_id: uuid.UUID
    owner_email: str
    owner_name: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    state: KeyState

    @property
    def stops_at(self) -> datetime | None:
        """When an active key stops working (expiry, or the end of a rotation grace); None if never."""
        if self.state is not KeyState.ACTIVE:
            return None
        ends = [moment for moment in (self.expires_at, self.revoked_at) if moment is not None]
        return min(ends, default=None)

    @property
    def rotating_out(self) -> bool:
        """Still working, but already replaced: it stops at the end of its grace period."""
        return self.state is KeyState.ACTIVE and self.revoked_at is not None


ApiKeyPage = Page[ApiKeyRow]  # one page of the list, with the total on every page


# --- expiry ---------------------------------------------------------------------------------


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def expiry_from_preset(preset: str, now: datetime | None = None) -> datetime | None:
    """The expiry for one of EXPIRY_PRESETS ("30 days" … "Never"), counted from now."""
    if preset not in EXPIRY_PRESETS:
        raise ValidationError(
            "expires_at",
            _l(
                "Unknown expiry {preset}: choose one of {choices}",
                preset=repr(preset),
                choices=", ".join(EXPIRY_PRESETS),
            ),
        )
    lifetime = EXPIRY_PRESETS[preset]
    return None if lifetime is None else (now or utcnow()) + lifetime


def expiry_from_date(day: date, zone: tzinfo = UTC) -> datetime:
    """A key expiring on `day` works through that whole day in the viewer's zone: it stops at the next midnight."""
    next_midnight = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(days=1)
    return _naive_utc(next_midnight)


def _validate_expiry(expires: datetime | None, now: datetime) -> datetime | None:
    if expires is None:
        return None
    if not isinstance(expires, datetime):
        raise ValidationError(
            "expires_at", _l("The expiry must be a date and time, or none for a key that never expires")
        )
    expires = _naive_utc(expires)
    if expires <= now:
        raise ValidationError("expires_at", _l("The expiry date must be in the future"))
    return expires


# --- state ----------------------------------------------------------------------------------


def key_state(key: ApiKey, now: datetime | None = None) -> KeyState:
    """Revoked wins over expired: a key revoked before it expired reads as revoked."""
    now = now or utcnow()
    if key.revoked_at is not None and key.revoked_at <= now:
        return KeyState.REVOKED
    if key.expires_at is not None and key.expires_at <= now:
        return KeyState.EXPIRED
    return KeyState.ACTIVE


def _state_condition(state: KeyState, now: datetime) -> ColumnElement[bool]:
    """The SQL form of `key_state(...) == state`."""
    revoked = and_(ApiKey.revoked_at.is_not(None), ApiKey.revoked_at <= now)
    expired = and_(ApiKey.expires_at.is_not(None), ApiKey.expires_at <= now)
    if state is KeyState.REVOKED:
        return revoked
    not_revoked = or_(ApiKey.revoked_at.is_(None), ApiKey.revoked_at > now)
    if state is KeyState.EXPIRED:
        return and_(not_revoked, expired)
    return and_(not_revoked, or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))


def _row(key: ApiKey, owner: User, now: datetime) -> ApiKeyRow:
    return ApiKeyRow(
        id=key.id,
        user_id=key.user_id,
        owner_email=owner.email,
        owner_name=owner.name,
        name=key.name,
        prefix=key.prefix,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        state=key_state(key, now),
    )


# --- authorization --------------------------------------------------------------------------


def _require_active(actor: User | None) -> User:
    return require_active(actor, _l("Sign in to manage API keys"))


def _require_admin(actor: User | None) -> User:
    return require_active_admin(actor, _l("Sign in to manage API keys"))


def _is_admin(actor: User) -> bool:
    return actor.role == "admin"


def _load_visible(session: Session, actor: User, key_id: uuid.UUID, *, lock: bool = False) -> tuple[ApiKey, User]:
    """The key and its owner, if `actor` may act on it; NotFound otherwise (existence is not leaked)."""
    stmt = select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.id == key_id)
    if not _is_admin(actor):
        stmt = stmt.where(ApiKey.user_id == actor.id)
    row = session.execute(for_update(session, stmt) if lock else stmt).first()
    if row is None:
        raise NotFound(KEY_NOT_FOUND)
    return row[0], row[1]


# --- issuing --------------------------------------------------------------------------------


def _issue(
    session: Session, owner_id: uuid.UUID, name: str, expires_at: datetime | None, now: datetime
) -> IssuedApiKey:
    new = security.generate_api_key()
    key = ApiKey(
        user_id=owner_id,
        name=name,
        key=new.digest,
        prefix=new.prefix,
        expires_at=expires_at,
        created_at=now,
        updated_at=now,
    )
    session.add(key)
    session.flush()
    return IssuedApiKey(key=key, plaintext=new.plaintext)


def check_new_key(
    name: str, preset: str | None, day: date | None, zone: tzinfo, *, custom_date: bool = False
) -> datetime | None:
    """The Create key form's fields checked together (every problem at once, each for its field): the expiry
    that a preset (`preset`) or a chosen day in `zone` (`day`) means; `custom_date` with no day is a problem."""
    checks = FieldChecks()
    checks.check(validate_api_key_name, name)
    expires: datetime | None = None
    if custom_date and day is None:
        checks.problems["expires_at"] = _l("Choose the day the key stops working")
    elif day is None:
        expires = checks.check(expiry_from_preset, preset)
    else:
        expires = checks.check(expiry_from_date, day, zone)
    checks.raise_any()
    return expires


@unit_of_work
def create_key(session: Session, actor: User, owner_id: uuid.UUID, name: str, expires: datetime | None) -> IssuedApiKey:
    """A new key for `owner_id` (oneself; admins for anyone). `expires` None: never expires."""
    actor = _require_active(actor)
    if owner_id != actor.id and not _is_admin(actor):
        raise PermissionDenied(_l("You can only create API keys for yourself"))
    name = validate_api_key_name(name)
    now = utcnow()
    expires_at = _validate_expiry(expires, now)
    owner = session.get(User, owner_id)
    if owner is None:
        raise NotFound(_l("This user no longer exists"))
    if not owner.is_active:
        raise ValidationError(
            "owner_id", _l("{email} is deactivated: a key for this account would not work", email=owner.email)
        )
    issued = _issue(session, owner.id, name, expires_at, now)
    audit.record(
        session,
        "apikey.create",
        "apikey",
        issued.key.id,
        {"owner": owner.email, "name": name, "prefix": issued.key.prefix, "expires_at": expires_at},
        actor=actor,
    )
    return issued


@unit_of_work
def rotate_key(
    session: Session, actor: User, key_id: uuid.UUID, grace: RotationGrace | str = RotationGrace.NONE
) -> IssuedApiKey:
    """Replace a key: same owner, name and expiry policy; the old one works for `grace` more, then is revoked.

    The expiry policy is the old key's lifetime (expiry minus creation): a 90-day key gets a new
    90-day key, a key that never expires a key that never expires. The old key's own expiry still
    applies during the grace period. A key already revoked (or already rotated) cannot be rotated.
    """
    actor = _require_active(actor)
    try:
        grace = RotationGrace(grace)
    except ValueError:
        choices = ", ".join(g.value for g in RotationGrace)
        raise ValidationError(
            "grace", _l("Unknown grace period {grace}: choose one of {choices}", grace=repr(grace), choices=choices)
        ) from None
    # Locked, so two rotations of one key at the same moment cannot both issue a replacement.
    old, owner = _load_visible(session, actor, key_id, lock=True)
    if old.revoked_at is not None:
        raise ValidationError(
            "key",
            _l("The key {prefix}… was already revoked or rotated; create a new key instead", prefix=old.prefix),
        )
    if not owner.is_active:
        raise ValidationError("key", _l("{email} is deactivated: a replacement key would not work", email=owner.email))
    now = utcnow()
    expires_at = None if old.expires_at is None else now + (old.expires_at - old.created_at)
    issued = _issue(session, owner.id, old.name, expires_at, now)
    old.revoked_at = now + grace.duration
    session.flush()
    audit.record(
        session,
        "apikey.rotate",
        "apikey",
        old.id,
        {
            "owner": owner.email,
            "new_key": str(issued.key.id),
            "prefix": [old.prefix, issued.key.prefix],
            "grace": grace.value,
            "old_revoked_at": old.revoked_at,
        },
        actor=actor,
    )
    return issued


# --- listing --------------------------------------------------------------------------------


@unit_of_work
def list_my_keys(session: Session, actor: User, state: KeyState | str | None = None) -> list[ApiKeyRow]:
    """The actor's own keys, newest first, optionally only those in one state."""
    actor = _require_active(actor)
    now = utcnow()
    stmt = select(ApiKey).where(ApiKey.user_id == actor.id)
    if state is not None:
        stmt = stmt.where(_state_condition(_validate_state(state), now))
    keys = session.scalars(stmt.order_by(ApiKey.created_at.desc(), ApiKey.id.desc()))
    return [_row(key, actor, now) for key in keys]


@unit_of_work
def get_key(session: Session, actor: User, key_id: uuid.UUID) -> ApiKeyRow:
    actor = _require_active(actor)
    key, owner = _load_visible(session, actor, key_id)
    return _row(key, owner, utcnow())


def _validate_state(state: KeyState | str) -> KeyState:
    try:
        return KeyState(state)
    except ValueError:
        choices = ", ".join(s.value for s in KeyState)
        raise ValidationError(
            "state", _l("Unknown key state {state}: choose one of {choices}", state=repr(state), choices=choices)
        ) from None


@unit_of_work
def list_all_keys(
    session: Session,
    actor: User,
    *,
    user_id: uuid.UUID | None = None,
    state: KeyState | str | None = None,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> ApiKeyPage:
    """Admins: every key with its owner, newest first, filtered by owner and state, one page at a time."""
    _require_admin(actor)
    now = utcnow()
    condition = and_(
        ApiKey.user_id == user_id if user_id is not None else true(),
        _state_condition(_validate_state(state), now) if state is not None else true(),
    )
    page_size = min(max(int(page_size), 1), MAX_PAGE_SIZE)
    total = session.scalar(select(func.count()).select_from(ApiKey).where(condition)) or 0
    page = min(max(int(page), 1), max(1, -(-total // page_size)))
    stmt = (
        select(ApiKey, User)
        .join(User, User.id == ApiKey.user_id)
        .where(condition)
        # The id breaks ties, so no key shows on two pages.
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    rows = [_row(key, owner, now) for key, owner in session.execute(stmt)]
    return ApiKeyPage(rows=rows, total=total, page=page, page_size=page_size)


# --- revoking and deleting ------------------------------------------------------------------


@unit_of_work
def revoke_key(session: Session, actor: User, key_id: uuid.UUID) -> ApiKeyRow:
    """Stop a key now (one's own; admins any). Ends a rotation grace early; a revoked key stays as it was."""
    actor = _require_active(actor)
    key, owner = _load_visible(session, actor, key_id)
    now = utcnow()
    if key.revoked_at is None or key.revoked_at > now:
        before = key.revoked_at
        key.revoked_at = now
        session.flush()
        audit.record(
            session,
            "apikey.revoke",
            "apikey",
            key.id,
            {"owner": owner.email, "prefix": key.prefix, "revoked_at": [before, now]},
            actor=actor,
        )
    return _row(key, owner, now)


@unit_of_work
def delete_key(session: Session, actor: User, key_id: uuid.UUID) -> None:
    """Remove a key for good (one's own; admins any); it stops working at once."""
    actor = _require_active(actor)
    key, owner = _load_visible(session, actor, key_id)
    prefix = key.prefix
    session.execute(delete(ApiKey).where(ApiKey.id == key.id).execution_options(synchronize_session=False))
    session.expunge(key)
    audit.record(session, "apikey.delete", "apikey", key_id, {"owner": owner.email, "prefix": prefix}, actor=actor)


# --- use by the API -------------------------------------------------------------------------


def digests_match(stored_digest: str | None, presented_digest: str) -> bool:
    """Constant-time comparison of digests; None (no row) is compared against a dummy, so an unknown
    key costs the same comparison."""
    stored = stored_digest if stored_digest is not None else _NO_MATCH_DIGEST
    return hmac.compare_digest(stored.encode("ascii"), presented_digest.encode("ascii")) and stored_digest is not None


def presented_digest(presented_key: str | None) -> str | None:
    """The digest of a key-shaped string; None for anything else (refused without a lookup).

    Shape checks (prefix, length) look at no secret; only the digest goes further."""
    if not isinstance(presented_key, str) or len(presented_key) > PRESENTED_KEY_MAX_CHARS:
        return None
    if not security.looks_like_api_key(presented_key):
        return None
    return security.digest(presented_key)


def refusal_for(key: Any, owner_is_active: bool, now: datetime | None = None) -> KeyRefusal | None:
    """Why a found key (anything with revoked_at / expires_at) may not be used now; None if it may."""
    state = key_state(key, now)
    if state is KeyState.REVOKED:
        return KeyRefusal.REVOKED
    if state is KeyState.EXPIRED:
        return KeyRefusal.EXPIRED
    if not owner_is_active:
        return KeyRefusal.OWNER_DEACTIVATED
    return None


def verify_key(session: Session, presented_key: str | None, now: datetime | None = None) -> VerifiedKey | KeyRefusal:
    """The user a presented key belongs to, or why it is refused. Writes nothing.

    One indexed lookup by the key's digest. Only the digest reaches the database and the
    comparison, and the comparison is constant-time, so timing depends on the secret part no
    more than SHA-256 does. Shape checks (prefix, length) come first; they look at no secret.
    """
    digest = presented_digest(presented_key)
    if digest is None:
        return KeyRefusal.UNKNOWN
    found = select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.key == digest)
    row = session.execute(found).first()
    if not digests_match(row[0].key if row is not None else None, digest) or row is None:
        return KeyRefusal.UNKNOWN
    key, owner = row[0], row[1]
    refusal = refusal_for(key, owner.is_active, _naive_utc(now) if now else None)
    return refusal if refusal is not None else VerifiedKey(user=owner, key_id=key.id)


def touch_last_used(session: Session, key_id: uuid.UUID, now: datetime | None = None) -> bool:
    """Record a use of the key, at most once a minute; True if this call wrote.

    The condition is in the UPDATE itself, so two app processes using one key at the same moment
    write once: PostgreSQL re-checks the WHERE after the first writer commits, SQLite has one writer.
    """
    now = _naive_utc(now) if now else utcnow()
    result = session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_RESOLUTION),
        )
        # Use is not an edit: updatedat keeps meaning "the key's settings last changed".
        .values(last_used_at=now, updated_at=ApiKey.updated_at)
        .execution_options(synchronize_session=False)
    )
    return (result.rowcount or 0) > 0
