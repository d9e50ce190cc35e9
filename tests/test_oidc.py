"""Single sign-on on both databases: the local OpenID Connect issuer's signed ID tokens, checked as a client
checks them, become MindRoute users and sessions; refusals, roles and revocation as the policy says."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from sqlalchemy import Engine, select

from mindroute.db import transaction
from mindroute.models import AuditLog, User
from mindroute.services import auth, oidc
from mindroute.services.users import create_user
from tests.oidc_issuer import CLIENT_ID, CLIENT_SECRET, Issuer, RunningIssuer

SECRET = "x" * 44
REDIRECT = "http://127.0.0.1:9/oauth2callback"


@pytest.fixture(scope="module")
def issuer():
    with RunningIssuer() as running:
        yield running


def sign_in_at_issuer(issuer, **identity) -> dict:
    """The authorization code flow as a client runs it; returns the verified ID token's claims."""
    issuer.identity = {"sub": identity.pop("sub", f"sub-{uuid.uuid4().hex[:8]}"), **identity}
    nonce, state = uuid.uuid4().hex, uuid.uuid4().hex
    with httpx.Client(base_url=issuer.url) as client:
        meta = client.get("/.well-known/openid-configuration").json()
        query = {
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "state": state,
            "nonce": nonce,
            "scope": "openid email profile",
        }
        answer = client.get(meta["authorization_endpoint"], params=query)
        assert answer.status_code == 302
        back = parse_qs(urlparse(answer.headers["location"]).query)
        assert back["state"] == [state]
        form = {"grant_type": "authorization_code", "code": back["code"][0], "redirect_uri": REDIRECT}
        tokens = client.post(meta["token_endpoint"], data=form, auth=(CLIENT_ID, CLIENT_SECRET)).json()
        again = client.post(meta["token_endpoint"], data=form, auth=(CLIENT_ID, CLIENT_SECRET))
        assert again.status_code == 400  # a code is good once
        keys = KeySet.import_key_set(client.get(meta["jwks_uri"]).json())
    token = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"])
    claims = dict(token.claims)
    assert claims["iss"] == issuer.url and claims["aud"] == CLIENT_ID and claims["nonce"] == nonce
    assert claims["exp"] > time.time()
    return claims


def audit_rows(engine: Engine, action: str) -> list[AuditLog]:
    with transaction(engine) as session:
        return list(session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.seq)))


def make_user(engine: Engine, email: str, role: str = "user") -> uuid.UUID:
    with transaction(engine) as session:
        return create_user(session, None, email=email, name="Existing", password="correct horse 1", role=role).id


def test_only_the_issuers_key_verifies_its_id_tokens(issuer) -> None:
    claims = sign_in_at_issuer(issuer, email="a@example.com", email_verified=True)
    served = KeySet.import_key_set({"keys": [issuer.key.as_dict(private=False)]})
    impostor = Issuer(port=issuer.port)  # the same issuer URL and kid, another key
    forged = impostor.id_token(dict(claims, email="admin@example.com"), claims["nonce"])
    with pytest.raises(BadSignatureError):
        jwt.decode(forged, served, algorithms=["RS256"])
    assert jwt.decode(issuer.id_token(claims, claims["nonce"]), served, algorithms=["RS256"]).claims["sub"]


def test_a_known_verified_email_signs_in_and_the_same_sign_in_maps_to_one_session(engine, issuer) -> None:
    user_id = make_user(engine, "ann@example.com")
    claims = sign_in_at_issuer(issuer, email="Ann@Example.com", email_verified=True, name="Ann")
    first = oidc.sign_in(engine, claims, oidc.OidcPolicy(), SECRET, ip="10.0.0.1", user_agent="UA")
    assert first.refusal is None and first.created and first.user.id == user_id
    again = oidc.sign_in(engine, claims, oidc.OidcPolicy(), SECRET)
    assert not again.created and again.token == first.token
    with transaction(engine) as session:
        resolved = auth.resolve_session(session, first.token)
        assert resolved is not None and resolved.user.id == user_id
        assert session.get(User, user_id).last_login is not None
    success = audit_rows(engine, "signin.success")
    assert len(success) == 1 and success[0].changes["method"] == "sso" and success[0].ip == "10.0.0.1"


def test_the_session_token_needs_the_secret_key(issuer) -> None:
    claims = sign_in_at_issuer(issuer, email="k@example.com", email_verified=True)
    assert oidc.session_token(claims, SECRET) == oidc.session_token(dict(claims), SECRET)
    assert oidc.session_token(claims, SECRET) != oidc.session_token(claims, "y" * 44)
    assert oidc.session_token(claims, SECRET) != oidc.session_token(dict(claims, nonce="other"), SECRET)


@pytest.mark.parametrize(
    ("identity", "message", "reason"),
    [
        ({"email": "u@example.com", "email_verified": False}, oidc.UNVERIFIED, "email not verified"),
        ({"email": "u@example.com"}, oidc.UNVERIFIED, "email not verified"),
        ({"email_verified": True}, oidc.NO_EMAIL, "no email claim"),
    ],
)
def test_an_unverified_or_missing_email_is_refused_and_audited(engine, issuer, identity, message, reason) -> None:
    make_user(engine, "u@example.com")
    claims = sign_in_at_issuer(issuer, **identity)
    result = oidc.sign_in(engine, claims, oidc.OidcPolicy(create_users=True), SECRET)
    assert result.user is None and result.refusal == message
    failures = audit_rows(engine, "signin.failure")
    assert [row.changes["reason"] for row in failures] == [reason]
    assert audit_rows(engine, "signin.success") == []


def test_new_users_only_when_allowed(engine, issuer) -> None:
    claims = sign_in_at_issuer(issuer, email="new@example.com", email_verified=True, name="New\x07 Person")
    refused = oidc.sign_in(engine, claims, oidc.OidcPolicy(), SECRET)
    assert refused.refusal == oidc.NOT_ALLOWED
    with transaction(engine) as session:
        assert session.scalar(select(User).where(User.email == "new@example.com")) is None
    claims = sign_in_at_issuer(issuer, email="new@example.com", email_verified=True, name="New\x07 Person")
    made = oidc.sign_in(engine, claims, oidc.OidcPolicy(create_users=True), SECRET)
    assert made.refusal is None and made.user.role == "user" and made.user.name == "New Person"
    created = audit_rows(engine, "user.create")
    assert len(created) == 1 and created[0].actor_label == "sso" and created[0].changes["via"] == "sso"


def test_the_admin_role_follows_the_group_claim_up_and_down(engine, issuer) -> None:
    user_id = make_user(engine, "g@example.com")
    policy = oidc.OidcPolicy(admin_group="mindroute-admins")
    up = sign_in_at_issuer(issuer, email="g@example.com", email_verified=True, groups=["staff", "mindroute-admins"])
    assert oidc.sign_in(engine, up, policy, SECRET).user.role == "admin"
    down = sign_in_at_issuer(issuer, email="g@example.com", email_verified=True, groups=["staff"])
    assert oidc.sign_in(engine, down, policy, SECRET).user.role == "user"
    changes = [row.changes["role"] for row in audit_rows(engine, "user.role")]
    assert changes == [["user", "admin"], ["admin", "user"]]
    kept = sign_in_at_issuer(issuer, email="g@example.com", email_verified=True, groups=["mindroute-admins"])
    assert oidc.sign_in(engine, kept, oidc.OidcPolicy(), SECRET).user.role == "user"  # no policy: role untouched
    with transaction(engine) as session:
        assert session.get(User, user_id).role == "user"


def test_the_admin_role_from_an_email_list_for_a_new_user(engine, issuer) -> None:
    policy = oidc.OidcPolicy(create_users=True, admin_emails=frozenset({"boss@example.com"}))
    boss = sign_in_at_issuer(issuer, email="boss@example.com", email_verified=True)
    staff = sign_in_at_issuer(issuer, email="staff@example.com", email_verified=True)
    assert oidc.sign_in(engine, boss, policy, SECRET).user.role == "admin"
    assert oidc.sign_in(engine, staff, policy, SECRET).user.role == "user"


def test_signing_out_everywhere_ends_the_sso_session_for_good(engine, issuer) -> None:
    user_id = make_user(engine, "r@example.com")
    claims = sign_in_at_issuer(issuer, email="r@example.com", email_verified=True)
    first = oidc.sign_in(engine, claims, oidc.OidcPolicy(), SECRET)
    assert first.refusal is None
    assert auth.revoke_user_sessions(engine, user_id) == 1
    replay = oidc.sign_in(engine, claims, oidc.OidcPolicy(), SECRET)  # the same cookie, after the revocation
    assert replay.user is None and replay.refusal == oidc.SIGNED_OUT
    fresh = oidc.sign_in(
        engine, sign_in_at_issuer(issuer, email="r@example.com", email_verified=True), oidc.OidcPolicy(), SECRET
    )
    assert fresh.refusal is None and fresh.token != first.token


def test_a_stale_id_token_cannot_start_a_session(engine, issuer) -> None:
    make_user(engine, "s@example.com")
    claims = sign_in_at_issuer(issuer, email="s@example.com", email_verified=True)
    stale = dict(claims, iat=claims["iat"] - int(oidc.FRESH_FOR.total_seconds()) - 60)
    result = oidc.sign_in(engine, stale, oidc.OidcPolicy(), SECRET)
    assert result.refusal == oidc.SIGNED_OUT
    assert [row.changes["reason"] for row in audit_rows(engine, "signin.failure")] == ["stale id token"]


def test_an_inactive_user_is_refused(engine, issuer) -> None:
    user_id = make_user(engine, "i@example.com")
    with transaction(engine) as session:
        session.get(User, user_id).is_active = False
    claims = sign_in_at_issuer(issuer, email="i@example.com", email_verified=True)
    assert oidc.sign_in(engine, claims, oidc.OidcPolicy(), SECRET).refusal == oidc.INACTIVE


def test_signing_out_of_one_sso_session_keeps_it_out(engine, issuer) -> None:
    make_user(engine, "o@example.com")
    claims = sign_in_at_issuer(issuer, email="o@example.com", email_verified=True)
    assert oidc.sign_in(engine, claims, oidc.OidcPolicy(), SECRET).refusal is None
    oidc.revoke(engine, claims, SECRET)
    assert oidc.sign_in(engine, claims, oidc.OidcPolicy(), SECRET).refusal == oidc.SIGNED_OUT
