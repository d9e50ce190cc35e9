"""Single sign-on in a real Chromium: the app's "Sign in with single sign-on" goes through Streamlit's st.login to
the local OpenID Connect issuer and back, and the person is signed in as MindRoute decides; sign-out ends it."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from mindroute.db import transaction
from mindroute.models import AuditLog, RefreshToken, User
from tests.browser.conftest import running_app
from tests.browser.test_auth_browser import settle
from tests.oidc_issuer import CLIENT_ID, CLIENT_SECRET, RunningIssuer

pytestmark = pytest.mark.browser


@pytest.fixture
def issuer():
    with RunningIssuer() as running:
        yield running


def _sso_app(tmp_path, issuer, **env: str):
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}"\n'
        f'server_metadata_url = "{issuer.metadata_url}"\n'
    )
    return running_app(tmp_path, env=env, args=("--secrets.files", str(secrets_file)))


def _sign_in_with_sso(page, base: str) -> None:
    page.goto(base)
    settle(page)
    button = page.get_by_role("button", name="Sign in with single sign-on")
    button.wait_for()
    with page.expect_navigation(url=lambda url: url.startswith(base), timeout=30_000):
        button.click()
    settle(page)


def test_a_new_verified_user_signs_in_as_admin_by_the_email_list_and_signs_out(
    tmp_path, issuer, browser_context
) -> None:
    issuer.identity = {"sub": "boss-1", "email": "boss@example.com", "email_verified": True, "name": "The Boss"}
    env = {
        "MINDROUTE_PASSWORD_SIGNIN": "false",
        "MINDROUTE_OIDC_CREATE_USERS": "true",
        "MINDROUTE_OIDC_ADMIN_EMAILS": "boss@example.com",
    }
    with _sso_app(tmp_path, issuer, **env) as app:
        page = browser_context.new_page()
        page.goto(app.base_url)
        settle(page)
        assert page.locator("form[data-testid='mr-signin-form']").count() == 0  # password sign-in is off
        _sign_in_with_sso(page, app.base_url)
        sidebar = page.locator("[data-testid='stSidebar']")
        sidebar.get_by_text("The Boss").wait_for()
        assert sidebar.get_by_text("Administrator").count() == 1
        assert issuer.token_requests == 1
        with transaction(app.engine) as session:
            user = session.scalar(select(User).where(User.email == "boss@example.com"))
            assert user is not None and user.role == "admin"
            live = session.scalars(select(RefreshToken).where(~RefreshToken.is_revoked)).all()
            assert len(live) == 1
            actions = list(session.scalars(select(AuditLog.action).order_by(AuditLog.seq)))
        assert actions == ["user.create", "signin.success"]

        page.reload()  # the same sign-in, the same session
        settle(page)
        sidebar.get_by_text("The Boss").wait_for()
        with page.expect_navigation(timeout=30_000):
            sidebar.get_by_role("button", name="Sign out").click()
        settle(page)
        page.get_by_role("button", name="Sign in with single sign-on").wait_for()
        with transaction(app.engine) as session:
            assert session.scalars(select(RefreshToken).where(~RefreshToken.is_revoked)).all() == []


def test_an_unverified_email_is_told_why(tmp_path, issuer, browser_context) -> None:
    issuer.identity = {"sub": "u-1", "email": "who@example.com", "email_verified": False}
    with _sso_app(tmp_path, issuer, MINDROUTE_OIDC_CREATE_USERS="true") as app:
        with transaction(app.engine) as session:
            session.add(User(email="admin@example.com", name="A", role="admin", password="!", is_active=True))
        page = browser_context.new_page()
        _sign_in_with_sso(page, app.base_url)
        page.get_by_text("has not verified this email address").wait_for()
        assert page.get_by_role("button", name="Use another account").count() == 1
        assert page.locator("form[data-testid='mr-signin-form']").count() == 1  # passwords still work beside it
        with transaction(app.engine) as session:
            assert session.scalar(select(User).where(User.email == "who@example.com")) is None
