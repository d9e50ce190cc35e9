"""Account: the time zone and theme a user chooses, saved on their row and used for every time shown."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select, update

from mindroute.db import transaction
from mindroute.errors import PermissionDenied
from mindroute.models import User
from mindroute.services import users
from mindroute.validation import ValidationError
from tests.pages.helpers import add_user, app_for, error_under, sign_in, texts

ACCOUNT = "pages/workspace/account.py"


def _account(engine, monkeypatch, email: str = "ann@example.com"):
    add_user(engine, "admin@example.com", role="admin")
    with transaction(engine) as session:
        exists = session.scalar(select(User.id).where(User.email == email)) is not None
    if not exists:
        add_user(engine, email)
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    at.switch_page(ACCOUNT).run()
    assert not at.exception
    return at


def _saved(engine, email: str = "ann@example.com") -> tuple[str | None, str | None]:
    with transaction(engine) as session:
        row = session.execute(select(User.timezone, User.theme).where(User.email == email)).one()
    return row.timezone, row.theme


def _save(at):
    next(b for b in at.button if b.label == "Save time zone and theme").click()
    return at.run()


def test_a_new_account_follows_the_browser(engine, monkeypatch) -> None:
    at = _account(engine, monkeypatch)
    assert at.selectbox(key="account_timezone").value == ""
    assert at.selectbox(key="account_timezone").options[0] == "Follow the browser (UTC)"  # AppTest has no browser zone
    assert at.radio(key="account_theme").value == ""
    assert "Times are in UTC." in [c.value for c in at.caption]


def test_choosing_a_zone_and_dark_is_saved_and_every_time_follows(engine, monkeypatch) -> None:
    at = _account(engine, monkeypatch)
    with transaction(engine) as session:
        session.execute(
            update(User).where(User.email == "ann@example.com").values(last_login=datetime(2026, 12, 4, 1, 31))
        )
    at.selectbox(key="account_timezone").set_value("Asia/Seoul")
    at.radio(key="account_theme").set_value("dark")
    at = _save(at)
    assert not at.exception
    assert _saved(engine) == ("Asia/Seoul", "dark")
    assert "Time zone and theme saved." in texts(at)
    assert "Times are in Asia/Seoul." in [c.value for c in at.caption]
    assert "last sign-in Dec 4, 2026, 10:31 AM" in texts(at)
    assert at.selectbox(key="account_timezone").value == "Asia/Seoul"
    assert at.radio(key="account_theme").value == "dark"

    # Back to following the browser: the row holds NULL again.
    at.selectbox(key="account_timezone").set_value("")
    at.radio(key="account_theme").set_value("")
    at = _save(at)
    assert _saved(engine) == (None, None)
    assert "Times are in UTC." in [c.value for c in at.caption]


def test_a_zone_that_does_not_exist_is_refused_at_its_field(engine, monkeypatch) -> None:
    # A zone the tz database no longer has (or one typed into the searchable box, which AppTest cannot do).
    add_user(engine, "ann@example.com")
    with transaction(engine) as session:
        session.execute(update(User).where(User.email == "ann@example.com").values(timezone="Mars/Olympus_Mons"))
    at = _account(engine, monkeypatch)
    assert "Times are in UTC." in [c.value for c in at.caption]  # shown in UTC meanwhile, no error
    assert at.selectbox(key="account_timezone").value == "Mars/Olympus_Mons"
    at.radio(key="account_theme").set_value("light")
    at = _save(at)
    assert not at.exception
    assert error_under(at, "account_timezone") == "Choose a time zone from the list"
    assert _saved(engine) == ("Mars/Olympus_Mons", None)  # nothing half-written: the theme was not saved either
    assert "Time zone and theme saved." not in texts(at)


def test_another_users_zone_does_not_leak_into_this_session(engine, monkeypatch) -> None:
    add_user(engine, "bob@example.com")
    with transaction(engine) as session:
        session.execute(update(User).where(User.email == "bob@example.com").values(timezone="America/New_York"))
    at = _account(engine, monkeypatch)
    assert "Times are in UTC." in [c.value for c in at.caption]


def test_the_service_checks_who_is_asking(engine) -> None:
    with pytest.raises(PermissionDenied):
        users.set_preferences(engine, None, timezone="UTC", theme=None)
    ann = add_user(engine, "ann@example.com")
    with pytest.raises(ValidationError) as err:
        users.set_preferences(engine, ann, timezone="UTC", theme="sepia")
    assert err.value.field == "theme"
    with pytest.raises(ValidationError) as err:
        users.set_preferences(engine, ann, timezone="localtime", theme=None)
    assert err.value.field == "timezone"
    users.set_preferences(engine, ann, timezone=" Asia/Kolkata ", theme="Light")
    assert _saved(engine) == ("Asia/Kolkata", "light")
    with transaction(engine) as session:
        session.execute(update(User).where(User.email == "ann@example.com").values(is_active=False))
    with pytest.raises(PermissionDenied):
        users.set_preferences(engine, ann, timezone="UTC", theme=None)  # deactivated since the page loaded
