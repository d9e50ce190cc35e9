"""Sign-in, throttling and browser sessions (refresh tokens stored only as digests)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from mindroute import security
from mindroute.i18n import Message, _l, _ln
from mindroute.models import LoginAttempt, RefreshToken, User, utcnow
from mindroute.services import audit
from mindroute.services.unit_of_work import unit_of_work
from mindroute.validation import ValidationError, validate_name, validate_password

SIGN_IN_FAILED = _l("Email or password is incorrect")
THROTTLE_WINDOW = timedelta(minutes=15)
# Failures for one account from one address lock that address out of that account.
MAX_FAILURES_PER_ACCOUNT = 5
# Failures from one address, over every account, lock that address out.
MAX_FAILURES_PER_ADDRESS = 20
# Failures for one account from anywhere: past this many, every further try waits a delay that
# doubles with each failure, up to BACKOFF_CAP; addresses the account signed in from are exempt.
BACKOFF_AFTER_FAILURES = 10
BACKOFF_CAP = timedelta(seconds=60)
# An address with a successful sign-in to an account this recently is that account's known address.
KNOWN_ADDRESS_FOR = timedelta(days=30)
SESSION_TTL = timedelta(days=7)
REMEMBERED_SESSION_TTL = timedelta(days=30)
# Absolute lifetime from the first sign-in (OWASP ASVS 3.3): rotation never extends a session past it.
SESSION_MAX_AGE = timedelta(days=7)
REMEMBERED_SESSION_MAX_AGE = timedelta(days=30)
SESSION_ROTATE_AFTER = timedelta(days=1)
# A rotated-out token keeps working this long, so a second tab's reconnect in flight is not lost.
ROTATION_GRACE = timedelta(seconds=60)
PRUNE_REVOKED_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class IssuedSession:
    token: str  # goes into the HttpOnly cookie (or the tab's memory), never into the database
    expires_at: datetime
    remember: bool


@dataclass(frozen=True)
class ResolvedSession:
    """A live session token. `created_at` is the first sign-in of the session (rotation keeps it);
    `issued_at` is when this token of the session was issued."""

    user: User
    token_id: uuid.UUID
    created_at: datetime
    expires_at: datetime
    issued_at: datetime

    def needs_rotation(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) - self.issued_at >= SESSION_ROTATE_AFTER

    @property
    def remember(self) -> bool:
        return self.expires_at - self.created_at > SESSION_MAX_AGE


# --- throttling -----------------------------------------------------------------------------


def _wait_seconds(oldest_counted: datetime, now: datetime) -> int:
    return max(1, math.ceil((oldest_counted + THROTTLE_WINDOW - now).total_seconds()))


def backoff_delay(failures: int) -> timedelta:
    """The account-wide delay after `failures` recent failures from anywhere: none up to
    BACKOFF_AFTER_FAILURES - 1, then 1 s, 2 s, 4 s ... doubling, capped at BACKOFF_CAP."""
    if failures < BACKOFF_AFTER_FAILURES:
        return timedelta(0)
    exponent = min(failures - BACKOFF_AFTER_FAILURES, 16)
    return min(BACKOFF_CAP, timedelta(seconds=2**exponent))


def _same_address(ip: str | None) -> ColumnElement[bool]:
    return LoginAttempt.ip.is_(None) if ip is None else LoginAttempt.ip == ip


def throttle_wait(session: Session, email: str, ip: str | None, now: datetime | None = None) -> int:
    """Seconds to wait before another try is allowed for this email from this address; 0 if none.

    Three rules, all over the last THROTTLE_WINDOW and counted in `loginattempts` so every
    process shares them: MAX_FAILURES_PER_ACCOUNT failures for the account from this address
    (since that address last signed in to it) lock this address out of the account; failures
    from this address over all accounts lock the address out; failures for the account from
    anywhere (since its last sign-in) slow every unknown address down (`backoff_delay`). So a
    stranger can neither lock the owner out of their own address nor guess fast from many.
    """
    now = now or utcnow()
    since = now - THROTTLE_WINDOW
    here = _same_address(ip)
    last_success_any, last_success_here = session.execute(
        select(
            func.max(LoginAttempt.created_at),
            func.max(case((here, LoginAttempt.created_at))),
        ).where(LoginAttempt.email == email, LoginAttempt.succeeded, LoginAttempt.created_at >= now - KNOWN_ADDRESS_FOR)
    ).one()
    waits = []

    pair_since = max(since, last_success_here) if last_success_here else since
    pair_failures = session.scalars(
        select(LoginAttempt.created_at)
        .where(LoginAttempt.email == email, here, ~LoginAttempt.succeeded, LoginAttempt.created_at > pair_since)
        .order_by(LoginAttempt.created_at.desc())
        .limit(MAX_FAILURES_PER_ACCOUNT)
    ).all()
    if len(pair_failures) >= MAX_FAILURES_PER_ACCOUNT:
        waits.append(_wait_seconds(pair_failures[-1], now))

    if ip:
        address_failures = session.scalars(
            select(LoginAttempt.created_at)
            .where(LoginAttempt.ip == ip, ~LoginAttempt.succeeded, LoginAttempt.created_at > since)
            .order_by(LoginAttempt.created_at.desc())
            .limit(MAX_FAILURES_PER_ADDRESS)
        ).all()
        if len(address_failures) >= MAX_FAILURES_PER_ADDRESS:
            waits.append(_wait_seconds(address_failures[-1], now))

    if last_success_here is None:  # the account's known addresses are not slowed by strangers
        account_since = max(since, last_success_any) if last_success_any else since
        failures, latest = session.execute(
            select(func.count(), func.max(LoginAttempt.created_at)).where(
                LoginAttempt.email == email, ~LoginAttempt.succeeded, LoginAttempt.created_at > account_since
            )
        ).one()
        delay = backoff_delay(failures)
        if delay and latest is not None and latest + delay > now:
            waits.append(max(1, math.ceil((latest + delay - now).total_seconds())))
    return max(waits, default=0)


# --- sign-in --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInResult:
    """The outcome of one try. A failure is a result, not an exception, so the caller's
    transaction still commits the failed attempt that throttling counts."""

    user: User | None
    error: str | None = None
    wait_seconds: int = 0

    @property
    def throttled(self) -> bool:
        return self.wait_seconds > 0


def throttled_message(wait_seconds: int) -> Message:
    if wait_seconds < 60:
        seconds = max(1, wait_seconds)
        return _ln(
            "Too many failed sign-ins. Try again in {n} second.",
            "Too many failed sign-ins. Try again in {n} seconds.",
            seconds,
        )
    minutes = math.ceil(wait_seconds / 60)
    return _ln(
        "Too many failed sign-ins. Try again in {n} minute.",
        "Too many failed sign-ins. Try again in {n} minutes.",
        minutes,
    )


def sign_in(
    session: Session, email: str, password: str, ip: str | None = None, user_agent: str | None = None
) -> SignInResult:
    """Check credentials. Every failure says the same thing and costs one bcrypt check.
    Each outcome writes one audit row (signin.success / signin.failure / signin.throttled): the
    browser's user agent is `user_agent`, else the one of the audit actor set for this request."""
    typed = (email or "").strip().lower()[:255]
    ip = ip[:50] if ip else None
    current = audit.current_actor()
    agent = user_agent or (current.user_agent if current else None)
    wait = throttle_wait(session, typed, ip)
    if wait:
        who = audit.AuditActor(None, typed or "(blank)", ip, agent)
        audit.record(session, "signin.throttled", "user", None, {"email": typed, "wait_seconds": wait}, actor=who)
        return SignInResult(user=None, error=throttled_message(wait), wait_seconds=wait)
    user = session.scalar(select(User).where(User.email == typed)) if typed else None
    ok = security.verify_password(password or "", user.password if user else None)
    if not ok or user is None or not user.is_active:
        session.add(LoginAttempt(email=typed, ip=ip, succeeded=False))
        session.flush()
        reason = "inactive account" if ok and user is not None else "wrong email or password"
        who = audit.AuditActor(None, typed or "(blank)", ip, agent)
        target = user.id if user is not None else None
        audit.record(session, "signin.failure", "user", target, {"email": typed, "reason": reason}, actor=who)
        return SignInResult(user=None, error=SIGN_IN_FAILED)
    session.add(LoginAttempt(email=typed, ip=ip, succeeded=True))
    user.last_login = utcnow()
    session.flush()
    who = audit.AuditActor(user.id, user.email, ip, agent)
    audit.record(session, "signin.success", "user", user.id, None, actor=who)
    return SignInResult(user=user)


@unit_of_work
def sign_in_and_issue(
    session: Session, email: str, password: str, ip: str | None = None, user_agent: str | None = None
) -> tuple[SignInResult, IssuedSession | None]:
    """The sign-in form's one action: check the credentials and, when they pass, open a session. Refused
    outright when password sign-in is off (MINDROUTE_PASSWORD_SIGNIN=false: single sign-on only)."""
    from mindroute.config import get_settings

    if not get_settings().password_signin:
        return SignInResult(user=None, error=_l("Password sign-in is off: sign in with single sign-on")), None
    result = sign_in(session, email, password, ip, user_agent)
    return result, issue_session(session, result.user) if result.user else None


@unit_of_work
def create_first_admin_and_sign_in(
    session: Session, *, email: str, name: str, password: str, password_repeat: str | None, ip: str | None = None
) -> IssuedSession:
    """The first-run form in a tab-lived session: the first administrator created and signed in, in one
    transaction (users.create_first_admin's refusals, every field's at once)."""
    from mindroute.services import users  # users imports nothing of auth; kept local all the same

    user = users.create_first_admin(session, email=email, name=name, password=password, password_repeat=password_repeat)
    session.add(LoginAttempt(email=user.email, ip=ip[:50] if ip else None, succeeded=True))
    user.last_login = utcnow()
    session.flush()
    current = audit.current_actor()
    who = audit.AuditActor(user.id, user.email, ip, current.user_agent if current else None)
    audit.record(session, "signin.success", "user", user.id, None, actor=who)
    return issue_session(session, user)


# --- sessions -------------------------------------------------------------------------------


def issue_session(session: Session, user: User, remember: bool = False) -> IssuedSession:
    token, token_digest = security.generate_session_token()
    expires_at = utcnow() + (REMEMBERED_SESSION_TTL if remember else SESSION_TTL)
    session.add(RefreshToken(user_id=user.id, token=token_digest, expires_at=expires_at))
    session.flush()
    return IssuedSession(token=token, expires_at=expires_at, remember=remember)


_SESSION_COLUMNS = (User, RefreshToken.id, RefreshToken.created_at, RefreshToken.expires_at, RefreshToken.updated_at)


def _resolved(row: tuple | None) -> ResolvedSession | None:
    if row is None:
        return None
    user, token_id, created_at, expires_at, issued_at = row
    return ResolvedSession(
        user=user, token_id=token_id, created_at=created_at, expires_at=expires_at, issued_at=issued_at
    )


def resolve_session(session: Session, token: str | None) -> ResolvedSession | None:
    """The signed-in user for a session token, or None: one indexed query (token digest)."""
    if not token or len(token) > 200:
        return None
    return _resolved(
        session.execute(
            select(*_SESSION_COLUMNS)
            .join(RefreshToken, RefreshToken.user_id == User.id)
            .where(
                RefreshToken.token == security.digest(token),
                ~RefreshToken.is_revoked,
                RefreshToken.expires_at > utcnow(),
                User.is_active,
            )
        ).first()
    )


def resolve_successor(session: Session, user_id: uuid.UUID, signed_in_at: datetime) -> ResolvedSession | None:
    """The live token that a session's rotation left in place of the one a connection resolved.

    A session's tokens share their user and first sign-in time (`createdAt`, kept by rotation),
    so a tab whose connection was opened with a token that has since been rotated away keeps
    following its session until it is signed out, revoked or past its absolute lifetime. Only a
    connection that resolved the old token while it was valid may ask (see ui.session).
    """
    return _resolved(
        session.execute(
            select(*_SESSION_COLUMNS)
            .join(RefreshToken, RefreshToken.user_id == User.id)
            .where(
                RefreshToken.user_id == user_id,
                RefreshToken.created_at == signed_in_at,
                ~RefreshToken.is_revoked,
                RefreshToken.expires_at > utcnow(),
                User.is_active,
            )
            .order_by(RefreshToken.updated_at.desc())
            .limit(1)
        ).first()
    )


@unit_of_work
def resolve_or_follow(
    session: Session, token: str | None, successor_of: tuple[uuid.UUID, datetime] | None
) -> ResolvedSession | None:
    """The session of a token; when it is gone and the connection had resolved it while it was valid
    (`successor_of`: its user id and first sign-in time), the live token its rotation left in its place."""
    resolved = resolve_session(session, token)
    if resolved is None and successor_of is not None:
        resolved = resolve_successor(session, *successor_of)
    return resolved


def rotate_session(session: Session, current: ResolvedSession) -> IssuedSession:
    """Replace a day-old token with a new one of the same session: the first sign-in time is kept
    and the expiry never passes the session's absolute lifetime; the old token ends soon."""
    now = utcnow()
    remember = current.remember
    cap = current.created_at + (REMEMBERED_SESSION_MAX_AGE if remember else SESSION_MAX_AGE)
    expires_at = min(now + (REMEMBERED_SESSION_TTL if remember else SESSION_TTL), cap)
    token, token_digest = security.generate_session_token()
    session.add(
        RefreshToken(
            user_id=current.user.id,
            token=token_digest,
            expires_at=expires_at,
            created_at=current.created_at,
            updated_at=now,
        )
    )
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == current.token_id)
        .values(expires_at=min(current.expires_at, now + ROTATION_GRACE))
    )
    session.flush()
    return IssuedSession(token=token, expires_at=expires_at, remember=remember)


@unit_of_work
def revoke_token(session: Session, token: str | None) -> None:
    if token:
        session.execute(
            update(RefreshToken).where(RefreshToken.token == security.digest(token)).values(is_revoked=True)
        )


@unit_of_work
def revoke_user_sessions(
    session: Session, user_id: uuid.UUID, except_token: str | None = None, *, record: bool = True
) -> int:
    """Sign a user out everywhere (optionally keeping the session making the change). Audited as
    session.revoke_all unless `record` is False (a caller whose own audit row covers it)."""
    stmt = update(RefreshToken).where(RefreshToken.user_id == user_id, ~RefreshToken.is_revoked)
    if except_token:
        stmt = stmt.where(RefreshToken.token != security.digest(except_token))
    revoked = session.execute(stmt.values(is_revoked=True)).rowcount or 0
    if record:
        changes = {"sessions_revoked": revoked, "kept_current": bool(except_token)}
        audit.record(session, "session.revoke_all", "user", user_id, changes)
    return revoked


def prune(session: Session, now: datetime | None = None) -> tuple[int, int]:
    """Delete expired or long-revoked tokens and old sign-in attempts; returns (tokens, attempts)."""
    now = now or utcnow()
    tokens = session.execute(
        delete(RefreshToken).where(
            or_(
                RefreshToken.expires_at < now,
                RefreshToken.is_revoked & (RefreshToken.updated_at < now - PRUNE_REVOKED_AFTER),
            )
        )
    ).rowcount
    # Failures count for THROTTLE_WINDOW; successes mark an account's known addresses for longer.
    attempts = session.execute(
        delete(LoginAttempt).where(
            or_(
                ~LoginAttempt.succeeded & (LoginAttempt.created_at < now - THROTTLE_WINDOW),
                LoginAttempt.created_at < now - KNOWN_ADDRESS_FOR,
            )
        )
    ).rowcount
    return tokens or 0, attempts or 0


# --- the account page -----------------------------------------------------------------------


@unit_of_work
def change_name(session: Session, user: User, name: str) -> None:
    user = session.get(User, user.id) or user  # the page's user comes from another session
    user.name = validate_name(name)
    session.add(user)
    session.flush()


@unit_of_work
def change_password(session: Session, user: User, current: str, new: str, keep_token: str | None) -> int:
    """Requires the current password; signs out every other session. Returns sessions revoked."""
    user = session.get(User, user.id) or user  # the page's user comes from another session
    if not security.verify_password(current or "", user.password):
        raise ValidationError("current_password", _l("Current password is incorrect"))
    validate_password(new, email=user.email, field="new_password")
    if security.verify_password(new, user.password):
        raise ValidationError("new_password", _l("The new password must differ from the current one"))
    user.password = security.hash_password(new)
    session.add(user)
    session.flush()
    revoked = revoke_user_sessions(session, user.id, except_token=keep_token, record=False)
    changes = {"password": "password changed", "sessions_revoked": revoked}
    audit.record(session, "user.password_change", "user", user.id, changes, actor=user)
    return revoked
