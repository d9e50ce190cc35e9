"""Sign-in, throttling and browser sessions (refresh tokens stored only as digests)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from mindroute import security
from mindroute.models import LoginAttempt, RefreshToken, User, utcnow
from mindroute.validation import ValidationError, validate_name, validate_password

SIGN_IN_FAILED = "Email or password is incorrect"
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20
SESSION_TTL = timedelta(days=7)
REMEMBERED_SESSION_TTL = timedelta(days=30)
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
    user: User
    token_id: uuid.UUID
    created_at: datetime
    expires_at: datetime

    def needs_rotation(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) - self.created_at >= SESSION_ROTATE_AFTER


# --- throttling -----------------------------------------------------------------------------


def _wait_seconds(oldest_counted: datetime, now: datetime) -> int:
    return max(1, int((oldest_counted + THROTTLE_WINDOW - now).total_seconds()))


def throttle_wait(session: Session, email: str, ip: str | None, now: datetime | None = None) -> int:
    """Seconds to wait before another try is allowed for this email or address; 0 if none."""
    now = now or utcnow()
    since = now - THROTTLE_WINDOW
    last_success = session.scalar(
        select(func.max(LoginAttempt.created_at)).where(
            LoginAttempt.email == email, LoginAttempt.succeeded, LoginAttempt.created_at >= since
        )
    )
    account_since = max(since, last_success) if last_success else since
    account_failures = session.scalars(
        select(LoginAttempt.created_at)
        .where(LoginAttempt.email == email, ~LoginAttempt.succeeded, LoginAttempt.created_at > account_since)
        .order_by(LoginAttempt.created_at.desc())
        .limit(MAX_FAILURES_PER_ACCOUNT)
    ).all()
    waits = []
    if len(account_failures) >= MAX_FAILURES_PER_ACCOUNT:
        waits.append(_wait_seconds(account_failures[-1], now))
    if ip:
        address_failures = session.scalars(
            select(LoginAttempt.created_at)
            .where(LoginAttempt.ip == ip, ~LoginAttempt.succeeded, LoginAttempt.created_at > since)
            .order_by(LoginAttempt.created_at.desc())
            .limit(MAX_FAILURES_PER_ADDRESS)
        ).all()
        if len(address_failures) >= MAX_FAILURES_PER_ADDRESS:
            waits.append(_wait_seconds(address_failures[-1], now))
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


def throttled_message(wait_seconds: int) -> str:
    minutes = max(1, math.ceil(wait_seconds / 60))
    return f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."


def sign_in(session: Session, email: str, password: str, ip: str | None = None) -> SignInResult:
    """Check credentials. Every failure says the same thing and costs one bcrypt check."""
    typed = (email or "").strip().lower()[:255]
    ip = ip[:50] if ip else None
    wait = throttle_wait(session, typed, ip)
    if wait:
        return SignInResult(user=None, error=throttled_message(wait), wait_seconds=wait)
    user = session.scalar(select(User).where(User.email == typed)) if typed else None
    ok = security.verify_password(password or "", user.password if user else None)
    if not ok or user is None or not user.is_active:
        session.add(LoginAttempt(email=typed, ip=ip, succeeded=False))
        session.flush()
        return SignInResult(user=None, error=SIGN_IN_FAILED)
    session.add(LoginAttempt(email=typed, ip=ip, succeeded=True))
    user.last_login = utcnow()
    session.flush()
    return SignInResult(user=user)


# --- sessions -------------------------------------------------------------------------------


def issue_session(session: Session, user: User, remember: bool = False) -> IssuedSession:
    token, token_digest = security.generate_session_token()
    expires_at = utcnow() + (REMEMBERED_SESSION_TTL if remember else SESSION_TTL)
    session.add(RefreshToken(user_id=user.id, token=token_digest, expires_at=expires_at))
    session.flush()
    return IssuedSession(token=token, expires_at=expires_at, remember=remember)


def resolve_session(session: Session, token: str | None) -> ResolvedSession | None:
    """The signed-in user for a session token, or None: one indexed query (token digest)."""
    if not token or len(token) > 200:
        return None
    row = session.execute(
        select(User, RefreshToken.id, RefreshToken.created_at, RefreshToken.expires_at)
        .join(RefreshToken, RefreshToken.user_id == User.id)
        .where(
            RefreshToken.token == security.digest(token),
            ~RefreshToken.is_revoked,
            RefreshToken.expires_at > utcnow(),
            User.is_active,
        )
    ).first()
    if row is None:
        return None
    user, token_id, created_at, expires_at = row
    return ResolvedSession(user=user, token_id=token_id, created_at=created_at, expires_at=expires_at)


def rotate_session(session: Session, current: ResolvedSession) -> IssuedSession:
    """Replace a day-old token: a new one with the same remaining lifetime class; the old one ends soon."""
    remember = current.expires_at - current.created_at > SESSION_TTL
    issued = issue_session(session, current.user, remember=remember)
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == current.token_id)
        .values(expires_at=min(current.expires_at, utcnow() + ROTATION_GRACE))
    )
    return issued


def revoke_token(session: Session, token: str | None) -> None:
    if token:
        session.execute(
            update(RefreshToken).where(RefreshToken.token == security.digest(token)).values(is_revoked=True)
        )


def revoke_user_sessions(session: Session, user_id: uuid.UUID, except_token: str | None = None) -> int:
    """Sign a user out everywhere (optionally keeping the session making the change)."""
    stmt = update(RefreshToken).where(RefreshToken.user_id == user_id, ~RefreshToken.is_revoked)
    if except_token:
        stmt = stmt.where(RefreshToken.token != security.digest(except_token))
    return session.execute(stmt.values(is_revoked=True)).rowcount or 0


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
    attempts = session.execute(delete(LoginAttempt).where(LoginAttempt.created_at < now - THROTTLE_WINDOW)).rowcount
    return tokens or 0, attempts or 0


# --- the account page -----------------------------------------------------------------------


def change_name(session: Session, user: User, name: str) -> None:
    user.name = validate_name(name)
    session.add(user)
    session.flush()


def change_password(session: Session, user: User, current: str, new: str, keep_token: str | None) -> int:
    """Requires the current password; signs out every other session. Returns sessions revoked."""
    if not security.verify_password(current or "", user.password):
        raise ValidationError("current_password", "Current password is incorrect")
    validate_password(new, email=user.email, field="new_password")
    if security.verify_password(new, user.password):
        raise ValidationError("new_password", "The new password must differ from the current one")
    user.password = security.hash_password(new)
    session.add(user)
    session.flush()
    return revoke_user_sessions(session, user.id, except_token=keep_token)
