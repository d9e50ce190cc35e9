"""Single sign-on: the claims of an OpenID Connect ID token (verified by Streamlit's `st.login`, Authlib) become a
MindRoute user and a MindRoute session, with the same revocation and audit trail as a password sign-in.

- **Who:** the user whose email the identity provider says it verified (`email_verified`); an unverified email is
  refused. A new email becomes a user only when the policy allows it (`create_users`); an inactive user is refused.
- **Role:** with an admin group (`admin_group`, read from the `groups_claim` claim) or an admin email list
  configured, every sign-in sets the role from them (up or down, audited as `user.role` by "sso"); without either,
  new users are users and existing ones keep their role.
- **Session:** Streamlit keeps the ID token's claims in its own signed, HttpOnly cookie. MindRoute derives the
  session token from them (an HMAC under a key derived from MINDROUTE_SECRET_KEY of the issuer, subject, issue
  time and nonce), so the same sign-in always maps to the same `refreshtokens` row and the database keeps only its
  digest, as for passwords. A row is created only from a FRESH ID token (issued within FRESH_FOR of now, i.e. just
  after the round trip to the identity provider); a revoked or expired row, or a stale token without a row, is
  refused, and the page clears Streamlit's cookie so the browser signs in again. Signing out everywhere therefore
  ends single sign-on sessions too, for good: the old cookie cannot mint a new row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mindroute import security
from mindroute.config import Settings
from mindroute.i18n import _l
from mindroute.models import RefreshToken, User, utcnow
from mindroute.services import audit
from mindroute.services.auth import SESSION_TTL, ResolvedSession, resolve_session, revoke_token
from mindroute.services.unit_of_work import unit_of_work
from mindroute.validation import EMAIL_MAX, NAME_MAX, ValidationError, normalize_email

FRESH_FOR = timedelta(minutes=5)  # an ID token older than this cannot start a session, only continue one
CLOCK_SKEW = timedelta(minutes=2)  # an identity provider's clock a little ahead of ours
SSO_ACTOR_LABEL = "sso"
# The sign-in page's words for a refusal (Messages: English as a str, translated where shown).
UNVERIFIED = _l("Your identity provider has not verified this email address, so it cannot sign you in here.")
NO_EMAIL = _l("Your identity provider did not send an email address, so it cannot sign you in here.")
NOT_ALLOWED = _l("There is no MindRoute account for this email address. Ask an administrator to create one.")
INACTIVE = _l("This account is deactivated. Ask an administrator.")
SIGNED_OUT = _l("This sign-in has ended. Sign in again.")


@dataclass(frozen=True)
class OidcPolicy:
    """What the configuration allows (MINDROUTE_OIDC_* settings)."""

    create_users: bool = False
    admin_group: str | None = None
    groups_claim: str = "groups"
    admin_emails: frozenset[str] = field(default_factory=frozenset)

    @property
    def manages_roles(self) -> bool:
        return bool(self.admin_group or self.admin_emails)


def policy_from(settings: Settings) -> OidcPolicy:
    """The policy the MINDROUTE_OIDC_* settings describe."""
    return OidcPolicy(
        create_users=settings.oidc_create_users,
        admin_group=settings.oidc_admin_group,
        groups_claim=settings.oidc_groups_claim,
        admin_emails=settings.oidc_admin_emails,
    )


class SsoRefusedError(Exception):
    """The claims do not sign anyone in; `message` is for the sign-in page, `reason` for the audit trail."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def _verified(claims: Mapping[str, object]) -> bool:
    value = claims.get("email_verified")
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _email(claims: Mapping[str, object]) -> str:
    email = claims.get("email")
    if not isinstance(email, str) or not email.strip() or len(email.strip()) > EMAIL_MAX:
        raise SsoRefusedError(NO_EMAIL, "no email claim")
    if not _verified(claims):
        raise SsoRefusedError(UNVERIFIED, "email not verified")
    try:
        return normalize_email(email)  # as every email is read and stored (email-validator)
    except ValidationError:
        raise SsoRefusedError(NO_EMAIL, "email not valid") from None


def _display_name(claims: Mapping[str, object], email: str) -> str:
    for key in ("name", "preferred_username", "given_name"):
        value = claims.get(key)
        if isinstance(value, str) and value.strip():
            cleaned = "".join(ch for ch in value.strip() if ord(ch) >= 32)
            if cleaned:
                return cleaned[:NAME_MAX]
    return email.split("@", 1)[0][:NAME_MAX] or email[:NAME_MAX]


def _is_admin(claims: Mapping[str, object], email: str, policy: OidcPolicy) -> bool:
    if email in policy.admin_emails:
        return True
    if policy.admin_group:
        groups = claims.get(policy.groups_claim)
        if isinstance(groups, str):
            groups = [groups]
        return isinstance(groups, list | tuple) and policy.admin_group in groups
    return False


def _issued_at(claims: Mapping[str, object]) -> datetime | None:
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        return None
    return datetime.fromtimestamp(iat, UTC).replace(tzinfo=None)


def session_token(claims: Mapping[str, object], secret_key: str) -> str:
    """The session token of one single sign-on: the same claims give the same token; nobody without the secret key
    can compute it. Never stored (the row keeps its SHA-256), never sent anywhere."""
    key = hashlib.sha256(b"mindroute sso session\x00" + secret_key.encode()).digest()
    parts = [str(claims.get(name, "")) for name in ("iss", "sub", "aud", "iat", "nonce")]
    return hmac.new(key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()


def _actor(user: User | None, email: str, ip: str | None, user_agent: str | None) -> audit.AuditActor:
    return audit.AuditActor(user.id if user else None, email, ip, user_agent)


def _refuse(
    session: Session, reason: SsoRefusedError, email: str, user: User | None, ip: str | None, agent: str | None
) -> SsoRefusedError:
    changes = {"email": email, "reason": reason.reason, "method": "sso"}
    audit.record(
        session, "signin.failure", "user", user.id if user else None, changes, actor=_actor(user, email, ip, agent)
    )
    return reason


@dataclass(frozen=True)
class SsoSignIn:
    """A signed-in user (`refusal` None), or what the sign-in page says instead."""

    user: User | None
    token: str | None  # the derived session token, for this run's resolution only
    created: bool = False  # a session row was created now (a new sign-in), rather than found
    refusal: str | None = None


@unit_of_work
def sign_in(
    session: Session,
    claims: Mapping[str, object],
    policy: OidcPolicy,
    secret_key: str,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> SsoSignIn:
    """The MindRoute user and session for verified ID token claims, in one transaction. Claims that sign nobody
    in give a result with `refusal` set, and their audit row is committed with it."""
    try:
        return _sign_in(session, claims, policy, secret_key, ip=ip, user_agent=user_agent, now=now)
    except SsoRefusedError as refused:
        return SsoSignIn(None, None, refusal=refused.message)


def _sign_in(
    session: Session,
    claims: Mapping[str, object],
    policy: OidcPolicy,
    secret_key: str,
    *,
    ip: str | None,
    user_agent: str | None,
    now: datetime | None,
) -> SsoSignIn:
    now = now or utcnow()
    ip = ip[:50] if ip else None
    token = session_token(claims, secret_key)
    existing = resolve_session(session, token)
    if existing is not None:
        return SsoSignIn(existing.user, token, created=False)
    try:
        email = _email(claims)
    except SsoRefusedError as refused:
        label = str(claims.get("email") or claims.get("sub") or "(no email)")[:255]
        raise _refuse(session, refused, label, None, ip, user_agent) from None
    user = session.scalar(select(User).where(func.lower(User.email) == email))
    issued = _issued_at(claims)
    if session.scalar(select(RefreshToken.id).where(RefreshToken.token == security.digest(token))) is not None:
        raise _refuse(session, SsoRefusedError(SIGNED_OUT, "session revoked or expired"), email, user, ip, user_agent)
    if issued is None or not (now - FRESH_FOR <= issued <= now + CLOCK_SKEW):
        raise _refuse(session, SsoRefusedError(SIGNED_OUT, "stale id token"), email, user, ip, user_agent)
    if user is None:
        if not policy.create_users:
            raise _refuse(session, SsoRefusedError(NOT_ALLOWED, "no such user"), email, None, ip, user_agent)
        user = _create(session, claims, email, policy, ip, user_agent)
    elif not user.is_active:
        raise _refuse(session, SsoRefusedError(INACTIVE, "inactive account"), email, user, ip, user_agent)
    elif policy.manages_roles:
        _sync_role(session, user, _is_admin(claims, email, policy), ip, user_agent)
    user.last_login = now
    session.add(RefreshToken(user_id=user.id, token=security.digest(token), expires_at=now + SESSION_TTL))
    session.flush()
    changes = {"method": "sso", "issuer": str(claims.get("iss", ""))[:255]}
    audit.record(session, "signin.success", "user", user.id, changes, actor=_actor(user, user.email, ip, user_agent))
    return SsoSignIn(user, token, created=True)


def _create(
    session: Session, claims: Mapping[str, object], email: str, policy: OidcPolicy, ip: str | None, agent: str | None
) -> User:
    role = "admin" if _is_admin(claims, email, policy) else "user"
    # No password signs in to a single sign-on account: a random one, hashed, that nobody ever sees.
    password = security.hash_password(secrets.token_urlsafe(32))
    user = User(email=email, name=_display_name(claims, email), role=role, password=password, is_active=True)
    session.add(user)
    session.flush()
    changes = {"email": [None, user.email], "name": [None, user.name], "role": [None, role], "via": "sso"}
    actor = audit.AuditActor(None, SSO_ACTOR_LABEL, ip, agent)
    audit.record(session, "user.create", "user", user.id, changes, actor=actor)
    return user


def _sync_role(session: Session, user: User, admin: bool, ip: str | None, agent: str | None) -> None:
    role = "admin" if admin else "user"
    if user.role == role:
        return
    changes = {"role": [user.role, role], "via": "sso"}
    user.role = role
    session.flush()
    audit.record(
        session, "user.role", "user", user.id, changes, actor=audit.AuditActor(None, SSO_ACTOR_LABEL, ip, agent)
    )


def resolve(session: Session, claims: Mapping[str, object], secret_key: str) -> ResolvedSession | None:
    """The live session of these claims, or None (read only: for a run that must not create one)."""
    return resolve_session(session, session_token(claims, secret_key))


@unit_of_work
def revoke(session: Session, claims: Mapping[str, object], secret_key: str) -> None:
    """Sign this single sign-on session out (its row stays revoked, so the same ID token cannot come back)."""
    revoke_token(session, session_token(claims, secret_key))
