"""The app shell in AppTest: first run, sign-in and its refusals, throttling, role-gated pages."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from mindroute.db import transaction
from mindroute.models import LoginAttempt, RefreshToken, User, utcnow
from mindroute.services.auth import MAX_FAILURES_PER_ACCOUNT, SIGN_IN_FAILED
from mindroute.ui import navigation
from tests.pages.helpers import ROOT, add_user, app_for, error_under, sign_in, texts

ADMIN_ONLY = [p.path for p in navigation.PAGES if "user" not in p.roles]
EVERY_PAGE = [p.path for p in navigation.PAGES]


def test_no_page_script_sits_directly_in_pages() -> None:
    assert list((ROOT / "pages").glob("*.py")) == []


@pytest.mark.parametrize("path", EVERY_PAGE)
def test_every_page_starts_with_its_guard(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text())
    body = tree.body[1:] if ast.get_docstring(tree) is not None else tree.body
    first, second = body[0], body[1]
    assert isinstance(first, ast.ImportFrom) and first.module == "mindroute.ui.session"
    guard = "require_admin" if path in ADMIN_ONLY else "require_user"
    call = second.value if isinstance(second, (ast.Assign, ast.Expr)) else None
    assert isinstance(call, ast.Call) and getattr(call.func, "id", None) == guard and not call.args, (
        f"{path}: the guard {guard}() must be the first statement"
    )


def test_first_run_shows_only_the_first_admin_form(engine, monkeypatch) -> None:
    at = app_for(engine, monkeypatch).run()
    assert not at.exception
    assert "No administrator exists yet" in texts(at)
    assert [t.key for t in at.text_input] == [
        "first_admin_name",
        "first_admin_email",
        "first_admin_password",
        "first_admin_repeat",
    ]
    at.text_input(key="first_admin_name").input("Ada")
    at.text_input(key="first_admin_email").input("Ada@Example.com")
    at.text_input(key="first_admin_password").input("short")
    at.text_input(key="first_admin_repeat").input("short")
    at.button[0].click().run()
    assert "at least 8 characters" in texts(at)
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0  # nothing half-written

    at.text_input(key="first_admin_password").input("a long enough password")
    at.text_input(key="first_admin_repeat").input("a long enough password")
    at.button[0].click().run()
    with transaction(engine) as session:
        admin = session.scalar(select(User))
        assert (admin.email, admin.role) == ("ada@example.com", "admin")
        assert admin.password.startswith("$2b$12$")
    # A tab-lived session (no cookie routes): the new administrator lands signed in.
    assert "Sign in to MindRoute" not in texts(at)
    assert "Overview" in texts(at)
    with transaction(engine) as session:
        assert session.scalar(select(User.last_login)) is not None


def test_first_run_shows_every_problem_at_its_field(engine, monkeypatch) -> None:
    at = app_for(engine, monkeypatch).run()
    at.text_input(key="first_admin_name").input("   ")
    at.text_input(key="first_admin_email").input("not an email")
    at.text_input(key="first_admin_password").input("short")
    at.text_input(key="first_admin_repeat").input("shorter")
    at.button[0].click().run()
    assert not at.exception
    assert error_under(at, "first_admin_name") == "Name is required"
    assert error_under(at, "first_admin_email") is not None
    assert "at least 8 characters" in (error_under(at, "first_admin_password") or "")
    assert error_under(at, "first_admin_repeat") == "The two passwords differ"
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0


def test_sign_in_success_sets_last_login_and_opens_overview(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = app_for(engine, monkeypatch).run()
    assert "only as long as this browser tab" in texts(at)  # started without app.py's routes
    sign_in(at, "ADMIN@example.com ")
    assert not at.exception
    assert "Overview" in texts(at)
    with transaction(engine) as session:
        assert session.scalar(select(User.last_login)) is not None
        assert session.scalar(select(func.count()).select_from(RefreshToken)) == 1


@pytest.mark.parametrize("case", ["wrong password", "unknown email", "deactivated"])
def test_every_failed_sign_in_says_the_same(engine, monkeypatch, case: str) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "gone@example.com", active=False)
    at = app_for(engine, monkeypatch).run()
    email, password = {
        "wrong password": ("admin@example.com", "not the password"),
        "unknown email": ("nobody@example.com", "whatever it is"),
        "deactivated": ("gone@example.com", None),
    }[case]
    sign_in(at, email, *(() if password is None else (password,)))
    assert [e.value for e in at.error] == [SIGN_IN_FAILED]
    assert "Overview" not in texts(at)


@pytest.mark.parametrize(("email", "password"), [("", ""), ("  ", "something"), ("admin@example.com", "")])
def test_a_blank_sign_in_field_is_said_at_the_field(engine, monkeypatch, email: str, password: str) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = sign_in(app_for(engine, monkeypatch).run(), email, password)
    assert not at.exception
    assert error_under(at, "signin_email") == ("Email is required" if not email.strip() else None)
    assert error_under(at, "signin_password") == ("Password is required" if not password else None)
    assert SIGN_IN_FAILED not in texts(at) and "Overview" not in texts(at)


def test_throttling_refuses_after_five_failures_even_with_the_right_password(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = app_for(engine, monkeypatch).run()
    for _ in range(MAX_FAILURES_PER_ACCOUNT):
        sign_in(at, "admin@example.com", "wrong password!")
    sign_in(at, "admin@example.com")
    assert "Too many failed sign-ins. Try again in 15 minutes." in texts(at)
    assert "Overview" not in texts(at)
    with transaction(engine) as session:  # the counters live in the database, not the process
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == MAX_FAILURES_PER_ACCOUNT


def test_a_strangers_failures_from_other_addresses_do_not_keep_the_owner_out(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    with transaction(engine) as session:  # the owner signed in from this browser's address before
        session.add(
            LoginAttempt(email="admin@example.com", ip=None, succeeded=True, created_at=utcnow() - timedelta(days=2))
        )
        for i in range(50):  # then a stranger failed 50 times from ten other addresses
            session.add(LoginAttempt(email="admin@example.com", ip=f"198.18.0.{i % 10}", succeeded=False))
    at = app_for(engine, monkeypatch).run()
    sign_in(at, "admin@example.com")
    assert not at.error
    assert "Overview" in texts(at)


def test_deactivated_user_is_signed_out_on_the_next_run(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    at = sign_in(app_for(engine, monkeypatch).run(), "user@example.com")
    assert "Overview" in texts(at)
    with transaction(engine) as session:
        session.execute(update(User).where(User.email == "user@example.com").values(is_active=False))
    at.run()
    assert "Sign in to MindRoute" in texts(at)


@pytest.mark.parametrize("path", ADMIN_ONLY or ["(no admin pages yet)"])
def test_user_cannot_open_admin_pages(engine, monkeypatch, path: str) -> None:
    if not ADMIN_ONLY:
        pytest.skip("no admin-only pages are registered")
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    at = sign_in(app_for(engine, monkeypatch).run(), "user@example.com")
    assert path not in {p.path for p in navigation.pages_for("user")}
    with pytest.raises(Exception):  # noqa: B017 - AppTest raises for a page outside the navigation
        at.switch_page(path).run()


@pytest.mark.parametrize("path", ADMIN_ONLY or ["(no admin pages yet)"])
def test_admin_page_refuses_a_user_even_when_run_directly(engine, monkeypatch, path: str) -> None:
    if not ADMIN_ONLY:
        pytest.skip("no admin-only pages are registered")
    add_user(engine, "user@example.com")
    at = app_for(engine, monkeypatch, page=path)
    at.session_state["mindroute_tab_session"] = _token_for(engine, "user@example.com")
    at.run()
    assert "This page is for administrators." in texts(at)


@pytest.mark.parametrize("path", EVERY_PAGE)
def test_every_page_stops_a_signed_out_visitor(engine, monkeypatch, path: str) -> None:
    at = app_for(engine, monkeypatch, page=path).run()
    assert not at.exception
    assert "Please sign in to continue." in texts(at)


def test_sign_out_everywhere_revokes_every_token(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com")
    _token_for(engine, "admin@example.com")  # a second browser's session
    at.switch_page("pages/workspace/account.py").run()
    at.button(key="sign_out_everywhere").click().run()
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).where(~RefreshToken.is_revoked)) == 0
    assert "Sign in to MindRoute" in texts(at)


def test_account_password_change_checks_the_current_password(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com")
    other = _token_for(engine, "admin@example.com")
    at.switch_page("pages/workspace/account.py").run()
    form = [t for t in at.text_input if t.label in ("Current password", "New password", "Repeat new password")]
    form[0].input("wrong current")
    form[1].input("brand new password")
    form[2].input("brand new password")
    next(b for b in at.button if b.label == "Change password").click().run()
    assert "Current password is incorrect" in texts(at)
    form = [t for t in at.text_input if t.label in ("Current password", "New password", "Repeat new password")]
    form[0].input("correct horse battery")
    form[1].input("brand new password")
    form[2].input("brand new password")
    next(b for b in at.button if b.label == "Change password").click().run()
    assert "Password changed. 1 other session signed out." in texts(at)
    with transaction(engine) as session:
        revoked = session.scalar(select(RefreshToken.is_revoked).where(RefreshToken.token == _digest(other)))
    assert revoked is True
    at.switch_page("pages/workspace/overview.py").run()
    assert "Overview" in texts(at)


def _digest(token: str) -> str:
    from mindroute.security import digest

    return digest(token)


def _token_for(engine, email: str) -> str:
    from mindroute.services.auth import issue_session

    with transaction(engine) as session:
        user = session.scalar(select(User).where(User.email == email))
        return issue_session(session, user).token


def test_pages_folder_layout_is_sections_only() -> None:
    sections = {p.parent.name for p in Path(ROOT / "pages").rglob("*.py")}
    assert sections <= {"workspace", "admin"}
