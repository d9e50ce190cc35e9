"""Sign-in, throttling, sessions and the cookie routes, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from mindroute import security
from mindroute.db import transaction
from mindroute.http import web
from mindroute.models import AuditLog, LoginAttempt, RefreshToken, User, utcnow
from mindroute.services import auth
from mindroute.validation import ValidationError

PASSWORD = "correct horse battery"
HASH = security.hash_password(PASSWORD)


def add_user(engine, email: str, role: str = "user", active: bool = True) -> User:
    with transaction(engine) as session:
        user = User(email=email, name="N", role=role, password=HASH, is_active=active)
        session.add(user)
    return user


def try_sign_in(engine, email: str, password: str, ip: str | None = "10.0.0.1") -> auth.SignInResult:
    with transaction(engine) as session:
        return auth.sign_in(session, email, password, ip)


def test_sign_in_sets_last_login_and_records_the_attempt(engine) -> None:
    add_user(engine, "a@example.com")
    result = try_sign_in(engine, " A@Example.com ", PASSWORD)
    assert result.user is not None and result.error is None
    with transaction(engine) as session:
        assert session.scalar(select(User.last_login)) is not None
        assert session.scalar(select(LoginAttempt.succeeded)) is True


@pytest.mark.parametrize("email,password", [("a@example.com", "wrong"), ("who@example.com", PASSWORD), ("", "")])
def test_failed_sign_ins_share_one_message_and_are_counted(engine, email: str, password: str) -> None:
    add_user(engine, "a@example.com")
    result = try_sign_in(engine, email, password)
    assert (result.user, result.error) == (None, auth.SIGN_IN_FAILED)
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).where(~LoginAttempt.succeeded)) == 1


def test_deactivated_user_cannot_sign_in(engine) -> None:
    add_user(engine, "off@example.com", active=False)
    assert try_sign_in(engine, "off@example.com", PASSWORD).error == auth.SIGN_IN_FAILED


def test_five_failures_from_one_address_lock_that_address_out_of_the_account(engine) -> None:
    add_user(engine, "a@example.com")
    for _ in range(auth.MAX_FAILURES_PER_ACCOUNT):
        assert not try_sign_in(engine, "a@example.com", "wrong", ip="10.0.0.1").throttled
    blocked = try_sign_in(engine, "a@example.com", PASSWORD, ip="10.0.0.1")
    assert blocked.throttled and blocked.user is None
    assert 14 * 60 < blocked.wait_seconds <= 15 * 60
    assert "Try again in 15 minutes" in blocked.error
    # The same account from another address, and another account from this one, are not locked.
    add_user(engine, "b@example.com")
    assert try_sign_in(engine, "b@example.com", PASSWORD, ip="10.0.0.1").user is not None
    assert try_sign_in(engine, "a@example.com", PASSWORD, ip="10.9.9.9").user is not None
    assert try_sign_in(engine, "a@example.com", PASSWORD, ip="10.0.0.1").throttled  # still locked here
    with transaction(engine) as session:  # 16 minutes later the failures no longer count
        session.execute(
            update(LoginAttempt).where(~LoginAttempt.succeeded).values(created_at=utcnow() - timedelta(minutes=16))
        )
    assert try_sign_in(engine, "a@example.com", PASSWORD, ip="10.0.0.1").user is not None


def stranger_failures(engine, email: str, count: int, seconds_ago: float = 1.0) -> None:
    """`count` failed tries for `email` as a stranger's many addresses left them (5 per address)."""
    with transaction(engine) as session:
        for i in range(count):
            session.add(
                LoginAttempt(
                    email=email,
                    ip=f"198.18.{i // 5}.{i % 5}",
                    succeeded=False,
                    created_at=utcnow() - timedelta(seconds=seconds_ago + (count - i) * 0.001),
                )
            )


def test_a_strangers_failures_from_many_addresses_do_not_lock_the_owner_out(engine) -> None:
    add_user(engine, "owner@example.com")
    assert try_sign_in(engine, "owner@example.com", PASSWORD, ip="192.0.2.10").user is not None  # known address
    with transaction(engine) as session:  # the owner signed in from there yesterday
        session.execute(update(LoginAttempt).values(created_at=utcnow() - timedelta(days=1)))
    stranger_failures(engine, "owner@example.com", 50)
    assert try_sign_in(engine, "owner@example.com", "wrong", ip="198.18.99.1").throttled  # strangers wait
    # A new address of the owner's waits the backoff (at most a minute), never 15 minutes.
    new_place = try_sign_in(engine, "owner@example.com", PASSWORD, ip="192.0.2.77")
    assert new_place.throttled and new_place.wait_seconds <= auth.BACKOFF_CAP.total_seconds()
    assert new_place.error == f"Too many failed sign-ins. Try again in {new_place.wait_seconds} seconds."
    assert 50 < new_place.wait_seconds
    owner = try_sign_in(engine, "owner@example.com", PASSWORD, ip="192.0.2.10")  # the known address: in
    assert owner.user is not None and not owner.throttled


def test_failures_from_anywhere_slow_the_account_down_with_a_growing_capped_backoff(engine) -> None:
    add_user(engine, "a@example.com")
    for i in range(auth.BACKOFF_AFTER_FAILURES):  # ten addresses, one wrong try each: no delay yet
        result = try_sign_in(engine, "a@example.com", "wrong", ip=f"198.18.0.{i}")
        assert not result.throttled and result.error == auth.SIGN_IN_FAILED
    slowed = try_sign_in(engine, "a@example.com", PASSWORD, ip="198.18.1.1")  # right password, unknown address
    assert slowed.throttled and slowed.user is None and 1 <= slowed.wait_seconds <= 1
    assert slowed.error == "Too many failed sign-ins. Try again in 1 second."
    with transaction(engine) as session:  # a throttled try is not checked, so not counted
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == auth.BACKOFF_AFTER_FAILURES
        session.execute(update(LoginAttempt).values(created_at=utcnow() - timedelta(seconds=3)))
    assert try_sign_in(engine, "a@example.com", "wrong", ip="198.18.1.1").error == auth.SIGN_IN_FAILED
    assert try_sign_in(engine, "a@example.com", "wrong", ip="198.18.1.2").wait_seconds == 2  # 11 failures: 2 s
    assert [auth.backoff_delay(n).total_seconds() for n in (9, 10, 11, 12, 15, 16, 17, 1000)] == [
        0,
        1,
        2,
        4,
        32,
        60,
        60,
        60,
    ]
    stranger_failures(engine, "b@example.com", 40, seconds_ago=30)
    assert 29 <= try_sign_in(engine, "b@example.com", "wrong", ip="198.18.9.9").wait_seconds <= 30


def test_address_throttle_after_twenty_failures_across_accounts(engine) -> None:
    add_user(engine, "a@example.com")
    for i in range(auth.MAX_FAILURES_PER_ADDRESS):
        try_sign_in(engine, f"guess{i}@example.com", "wrong", ip="203.0.113.5")
    assert try_sign_in(engine, "a@example.com", PASSWORD, ip="203.0.113.5").throttled
    assert try_sign_in(engine, "a@example.com", PASSWORD, ip="198.51.100.7").user is not None


def test_a_success_resets_the_counter_of_its_address(engine) -> None:
    add_user(engine, "a@example.com")
    for _ in range(auth.MAX_FAILURES_PER_ACCOUNT - 1):
        try_sign_in(engine, "a@example.com", "wrong")
    assert try_sign_in(engine, "a@example.com", PASSWORD).user is not None
    assert not try_sign_in(engine, "a@example.com", "wrong").throttled
    assert try_sign_in(engine, "a@example.com", PASSWORD).user is not None


def test_session_token_is_stored_only_as_digest_and_resolves(engine) -> None:
    user = add_user(engine, "a@example.com")
    with transaction(engine) as session:
        issued = auth.issue_session(session, session.get(User, user.id), remember=True)
    with transaction(engine) as session:
        stored = session.scalar(select(RefreshToken.token))
        assert stored == security.digest(issued.token) and issued.token not in stored
        resolved = auth.resolve_session(session, issued.token)
        assert resolved.user.email == "a@example.com"
        assert timedelta(days=29) < resolved.expires_at - utcnow() <= timedelta(days=30)
        assert auth.resolve_session(session, "not-a-token") is None


def test_revoked_expired_and_deactivated_sessions_do_not_resolve(engine) -> None:
    user = add_user(engine, "a@example.com")
    with transaction(engine) as session:
        tokens = [auth.issue_session(session, session.get(User, user.id)).token for _ in range(3)]
    with transaction(engine) as session:
        auth.revoke_token(session, tokens[0])
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.token == security.digest(tokens[1]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with transaction(engine) as session:
        assert auth.resolve_session(session, tokens[0]) is None
        assert auth.resolve_session(session, tokens[1]) is None
        assert auth.resolve_session(session, tokens[2]) is not None
        session.execute(update(User).values(is_active=False))
    with transaction(engine) as session:
        assert auth.resolve_session(session, tokens[2]) is None


def test_rotation_issues_a_new_token_and_ends_the_old_one_soon(engine) -> None:
    user = add_user(engine, "a@example.com")
    with transaction(engine) as session:
        old = auth.issue_session(session, session.get(User, user.id)).token
        day_old = utcnow() - timedelta(days=1, minutes=1)  # signed in and issued a day ago
        session.execute(update(RefreshToken).values(created_at=day_old, updated_at=day_old))
    with transaction(engine) as session:
        current = auth.resolve_session(session, old)
        assert current.needs_rotation()
        new = auth.rotate_session(session, current)
    with transaction(engine) as session:
        old_row = session.scalar(select(RefreshToken).where(RefreshToken.token == security.digest(old)))
        assert old_row.expires_at <= utcnow() + auth.ROTATION_GRACE
        assert not auth.resolve_session(session, new.token).needs_rotation()


@pytest.mark.parametrize("remember,cap", [(True, auth.REMEMBERED_SESSION_MAX_AGE), (False, auth.SESSION_MAX_AGE)])
def test_rotation_never_extends_a_session_past_its_absolute_lifetime(engine, remember, cap) -> None:
    user = add_user(engine, "a@example.com")
    with transaction(engine) as session:
        token = auth.issue_session(session, session.get(User, user.id), remember=remember).token
        signed_in = utcnow() - cap + timedelta(hours=2)  # signed in long ago, the last token a day old
        ttl = auth.REMEMBERED_SESSION_TTL if remember else auth.SESSION_TTL
        session.execute(
            update(RefreshToken).values(
                created_at=signed_in, updated_at=utcnow() - timedelta(days=1), expires_at=signed_in + ttl
            )
        )
    for _ in range(3):  # rotate again and again: the session keeps its first sign-in time and its end
        with transaction(engine) as session:
            current = auth.resolve_session(session, token)
            assert current.remember is remember and current.needs_rotation()
            issued = auth.rotate_session(session, current)
            assert issued.remember is remember and issued.expires_at <= current.created_at + cap
            token = issued.token
        with transaction(engine) as session:
            rotated = auth.resolve_session(session, token)
            assert rotated.created_at == current.created_at and rotated.expires_at <= signed_in + cap
            session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == rotated.token_id)
                .values(updated_at=utcnow() - timedelta(days=1))
            )
    with transaction(engine) as session:  # past the absolute lifetime it is over, rotation or not
        session.execute(update(RefreshToken).values(created_at=signed_in - timedelta(hours=3)))
        session.execute(update(RefreshToken).values(expires_at=signed_in - timedelta(hours=3) + cap))
    with transaction(engine) as session:
        assert auth.resolve_session(session, token) is None


def test_a_rotated_away_token_leads_to_its_successor_until_the_session_ends(engine) -> None:
    user = add_user(engine, "a@example.com")
    with transaction(engine) as session:
        old = auth.issue_session(session, session.get(User, user.id)).token
        other = auth.issue_session(session, session.get(User, user.id)).token  # another browser's session
        day_old = utcnow() - timedelta(days=1, minutes=1)
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.token == security.digest(old))
            .values(created_at=day_old, updated_at=day_old)
        )
    with transaction(engine) as session:
        first = auth.resolve_session(session, old)
        new = auth.rotate_session(session, first)
    with transaction(engine) as session:  # the grace is over for the old token ...
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.token == security.digest(old))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with transaction(engine) as session:
        assert auth.resolve_session(session, old) is None
        successor = auth.resolve_successor(session, first.user.id, first.created_at)  # ... not for its session
        assert successor is not None and successor.token_id == auth.resolve_session(session, new.token).token_id
        auth.revoke_token(session, new.token)  # signing out (the cookie now holds the new token) ends it
    with transaction(engine) as session:
        assert auth.resolve_successor(session, first.user.id, first.created_at) is None
        assert auth.resolve_session(session, other) is not None


def test_prune_removes_expired_and_old_revoked_tokens_and_old_attempts(engine) -> None:
    user = add_user(engine, "a@example.com")
    with transaction(engine) as session:
        live, expired, revoked = (auth.issue_session(session, session.get(User, user.id)).token for _ in range(3))
        session.add(LoginAttempt(email="x@example.com", created_at=utcnow() - timedelta(hours=1)))
    with transaction(engine) as session:
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.token == security.digest(expired))
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.token == security.digest(revoked))
            .values(is_revoked=True, updated_at=utcnow() - timedelta(days=2))
        )
    with transaction(engine) as session:
        auth.prune(session)
    with transaction(engine) as session:
        assert session.scalars(select(RefreshToken.token)).all() == [security.digest(live)]
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 0


def test_change_password_requires_current_and_signs_out_other_sessions(engine) -> None:
    user = add_user(engine, "a@example.com")
    with transaction(engine) as session:
        mine, other = (auth.issue_session(session, session.get(User, user.id)).token for _ in range(2))
    with pytest.raises(ValidationError) as wrong:
        with transaction(engine) as session:
            auth.change_password(session, session.get(User, user.id), "nope", "new password 1", mine)
    assert wrong.value.field == "current_password"
    with pytest.raises(ValidationError) as too_long:
        with transaction(engine) as session:
            auth.change_password(session, session.get(User, user.id), PASSWORD, "é" * 40, mine)
    assert too_long.value.field == "new_password" and "72 bytes" in too_long.value.message
    with transaction(engine) as session:
        assert auth.change_password(session, session.get(User, user.id), PASSWORD, "new password 1", mine) == 1
    with transaction(engine) as session:
        assert auth.resolve_session(session, mine) is not None
        assert auth.resolve_session(session, other) is None
        assert security.verify_password("new password 1", session.get(User, user.id).password)


# --- the cookie routes, through real HTTP requests in-process --------------------------------


@pytest.fixture
def client(engine, monkeypatch) -> TestClient:
    import mindroute.db as db

    monkeypatch.setattr(db, "_engine", engine)

    async def page(_request):  # stands in for Streamlit's index page
        return PlainTextResponse("page")

    app = Starlette(routes=[*web.routes(), Route("/", page)], middleware=web.middleware())
    return TestClient(app, base_url="http://mr.test")


SAME_ORIGIN = {"Origin": "http://mr.test"}


def test_sign_in_route_sets_an_httponly_lax_cookie(client, engine) -> None:
    add_user(engine, "a@example.com")
    response = client.post(
        "/auth/signin",
        data={"email": "a@example.com", "password": PASSWORD},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/"
    set_cookie = response.headers["set-cookie"]
    assert set_cookie.startswith(f"{web.SESSION_COOKIE}=") and "HttpOnly" in set_cookie
    assert "SameSite=lax" in set_cookie and "Secure" not in set_cookie and "Max-Age" not in set_cookie


def test_the_sign_in_routes_audit_row_has_the_browsers_user_agent(client, engine) -> None:
    add_user(engine, "a@example.com")
    headers = {**SAME_ORIGIN, "User-Agent": "Mozilla/5.0 (audit test)"}
    client.post("/auth/signin", data={"email": "a@example.com", "password": "no"}, headers=headers)
    client.post("/auth/signin", data={"email": "a@example.com", "password": PASSWORD}, headers=headers)
    with transaction(engine) as session:
        rows = session.execute(select(AuditLog.action, AuditLog.user_agent).order_by(AuditLog.seq)).all()
    assert [tuple(r) for r in rows if r[0].startswith("signin.")] == [
        ("signin.failure", "Mozilla/5.0 (audit test)"),
        ("signin.success", "Mozilla/5.0 (audit test)"),
    ]


def test_remember_me_makes_a_30_day_cookie_and_https_makes_it_secure(client, engine, monkeypatch) -> None:
    from mindroute import config

    add_user(engine, "a@example.com")
    form = {"email": "a@example.com", "password": PASSWORD, "remember": "on"}
    # X-Forwarded-Proto from anyone but a trusted proxy is ignored: the request was plain http.
    spoofed = {**SAME_ORIGIN, "X-Forwarded-Proto": "https"}
    response = client.post("/auth/signin", data=form, headers=spoofed, follow_redirects=False)
    assert response.status_code == 303 and "Secure" not in response.headers["set-cookie"]
    monkeypatch.setenv("MINDROUTE_TRUST_PROXY", "true")
    config.get_settings.cache_clear()
    behind_proxy = {"Origin": "https://mr.test", "X-Forwarded-Proto": "https"}
    response = client.post("/auth/signin", data=form, headers=behind_proxy, follow_redirects=False)
    set_cookie = response.headers["set-cookie"]
    assert "Secure" in set_cookie
    max_age = int(set_cookie.split("Max-Age=")[1].split(";")[0])
    assert 29 * 86400 < max_age <= 30 * 86400


@pytest.mark.parametrize("headers", [{}, {"Origin": "https://evil.example"}, {"Referer": "https://evil.example/x"}])
def test_cross_site_posts_are_refused(client, engine, headers) -> None:
    add_user(engine, "a@example.com")
    response = client.post("/auth/signin", data={"email": "a@example.com", "password": PASSWORD}, headers=headers)
    assert response.status_code == 403 and "set-cookie" not in response.headers
    assert client.post("/auth/signout", headers=headers).status_code == 403


def test_failed_and_throttled_sign_ins_redirect_with_a_code(client, engine) -> None:
    add_user(engine, "a@example.com")
    form = {"email": "a@example.com", "password": "wrong"}
    for _ in range(auth.MAX_FAILURES_PER_ACCOUNT):
        response = client.post("/auth/signin", data=form, headers=SAME_ORIGIN, follow_redirects=False)
        assert response.headers["location"] == "/?signin=failed"
    response = client.post("/auth/signin", data=form, headers=SAME_ORIGIN, follow_redirects=False)
    assert response.headers["location"].startswith("/?signin=throttled&wait=")


def test_sign_out_revokes_the_token_and_clears_the_cookie(client, engine) -> None:
    add_user(engine, "a@example.com")
    client.post("/auth/signin", data={"email": "a@example.com", "password": PASSWORD}, headers=SAME_ORIGIN)
    token = client.cookies[web.SESSION_COOKIE]
    response = client.post("/auth/signout", headers=SAME_ORIGIN, follow_redirects=False)
    assert response.status_code == 303 and f'{web.SESSION_COOKIE}=""' in response.headers["set-cookie"]
    with transaction(engine) as session:
        assert auth.resolve_session(session, token) is None


def test_page_load_rotates_a_day_old_cookie_and_clears_a_dead_one(client, engine) -> None:
    add_user(engine, "a@example.com")
    client.post("/auth/signin", data={"email": "a@example.com", "password": PASSWORD}, headers=SAME_ORIGIN)
    old = client.cookies[web.SESSION_COOKIE]
    html = {"Accept": "text/html"}
    assert "set-cookie" not in client.get("/", headers=html).headers  # fresh: nothing to do
    with transaction(engine) as session:
        two_days = utcnow() - timedelta(days=2)
        session.execute(update(RefreshToken).values(created_at=two_days, updated_at=two_days))
    response = client.get("/", headers=html)
    new = response.cookies[web.SESSION_COOKIE]
    assert new != old
    with transaction(engine) as session:
        assert auth.resolve_session(session, new) is not None
        auth.revoke_token(session, new)
    response = client.get("/", headers=html)
    assert f'{web.SESSION_COOKIE}=""' in response.headers["set-cookie"]


def test_healthz_reports_the_database(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok", "database": "ok"}


def test_healthz_answers_503_without_leaking_the_url(monkeypatch) -> None:
    import mindroute.db as db
    from mindroute.db import make_engine

    monkeypatch.setattr(
        db, "_engine", make_engine("postgresql+psycopg://mr:s3cret-pw@127.0.0.1:1/nowhere", connect_args={})
    )
    response = TestClient(Starlette(routes=web.routes())).get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "unreachable"}
    assert "s3cret" not in response.text


def test_forwarded_for_counts_only_behind_a_trusted_proxy(client, engine, monkeypatch) -> None:
    from mindroute import config

    add_user(engine, "a@example.com")
    spoofed = {**SAME_ORIGIN, "X-Forwarded-For": "203.0.113.99"}
    form = {"email": "a@example.com", "password": "wrong"}
    client.post("/auth/signin", data=form, headers=spoofed, follow_redirects=False)
    monkeypatch.setenv("MINDROUTE_TRUST_PROXY", "true")
    config.get_settings.cache_clear()
    client.post("/auth/signin", data=form, headers=spoofed, follow_redirects=False)
    with transaction(engine) as session:
        ips = session.scalars(select(LoginAttempt.ip).order_by(LoginAttempt.created_at)).all()
    assert ips[0] != "203.0.113.99" and ips[1] == "203.0.113.99"


@pytest.fixture
def page_paths(monkeypatch) -> None:
    from mindroute.ui import navigation

    monkeypatch.setattr(web, "PAGE_PATHS", frozenset(spec.url_path for spec in navigation.PAGES))


@pytest.mark.parametrize(
    ("referer", "landing"),
    [
        ("http://mr.test/usage?range=30d&tz=UTC", "/usage?range=30d&tz=UTC"),
        ("http://mr.test/usage?range=30d&signin=failed&wait=9", "/usage?range=30d"),  # the last outcome dropped
        ("http://mr.test/limits", "/limits"),  # the page then says whether this user may open it
        ("http://mr.test/", "/"),
        ("http://mr.test/signin?x=1", "/"),
        ("http://mr.test/not-a-page?x=1", "/"),
        ("http://mr.test//evil.example/usage", "/"),
        ("http://mr.test/usage/../../evil", "/"),
        ("https://evil.example/usage?range=30d", "/"),  # another origin's page (the Origin is ours)
        ("", "/"),
    ],
)
def test_sign_in_lands_on_the_page_it_was_posted_from_and_nowhere_else(
    client, engine, page_paths, referer: str, landing: str
) -> None:
    add_user(engine, "a@example.com")
    headers = {**SAME_ORIGIN, "Referer": referer} if referer else SAME_ORIGIN
    form = {"email": "a@example.com", "password": PASSWORD}
    response = client.post("/auth/signin", data=form, headers=headers, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == landing
    assert web.SESSION_COOKIE in response.headers["set-cookie"]
    failed = client.post("/auth/signin", data={**form, "password": "no"}, headers=headers, follow_redirects=False)
    separator = "&" if "?" in landing else "?"
    assert failed.headers["location"] == f"{landing}{separator}signin=failed"
