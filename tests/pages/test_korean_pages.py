"""Every page rendered in Korean shows no English outside names and data (issue 19): empty, and with demo
data (users, providers, calls, a ticket, a key). What is left is listed with the element that holds it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, update

from mindroute.cli.seed import seed_demo
from mindroute.db import transaction
from mindroute.models import User
from mindroute.services import api_keys, tickets
from mindroute.ui.navigation import PAGES
from tests.pages.helpers import add_user, app_for, sign_in
from tests.pages.korean import data_terms, english_leftovers, readable_texts

ADMIN_PAGES = [spec.path for spec in PAGES if "admin" in spec.roles]
USER_ONLY = [spec.path for spec in PAGES if "admin" not in spec.roles]


def _korean(engine: Engine, email: str) -> None:
    with transaction(engine) as session:
        session.execute(update(User).where(User.email == email).values(language="ko"))


def _seeded(engine: Engine) -> None:
    seed_demo(engine, rows=300, days=14, seed=19, progress=False)
    with transaction(engine) as session:
        admin = session.query(User).filter_by(email="admin@example.com").one()
        user = session.query(User).filter_by(email="user@example.com").one()
    tickets.open_ticket(engine, user, "키가 동작하지 않습니다", "어제부터 429 오류가 납니다.")
    api_keys.create_key(engine, admin, admin.id, "배포 키", None)
    api_keys.create_key(engine, user, user.id, "노트북", None)


def _page_leftovers(engine: Engine, monkeypatch: pytest.MonkeyPatch, email: str, page: str) -> list[str]:
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return english_leftovers(readable_texts(at), data_terms(engine))


@pytest.fixture
def people(engine: Engine) -> Engine:
    add_user(engine, "admin@example.com", role="admin", name="관리자")
    add_user(engine, "user@example.com", name="사용자")
    _korean(engine, "admin@example.com")
    _korean(engine, "user@example.com")
    return engine


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_admin_pages_in_korean_empty(people: Engine, monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    assert _page_leftovers(people, monkeypatch, "admin@example.com", page) == []


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_admin_pages_in_korean_with_data(people: Engine, monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    _seeded(people)
    assert _page_leftovers(people, monkeypatch, "admin@example.com", page) == []


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
@pytest.mark.parametrize("page", USER_ONLY + [p for p in ADMIN_PAGES if p.startswith("pages/workspace/")])
def test_user_pages_in_korean_with_data(people: Engine, monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    _seeded(people)
    assert _page_leftovers(people, monkeypatch, "user@example.com", page) == []


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_sign_in_page_follows_the_browser_language(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Signed out there is no user's choice: English without a browser language (AppTest has none)."""
    add_user(engine, "admin@example.com", role="admin", name="관리자")
    at = app_for(engine, monkeypatch).run()
    labels = [t for _k, t in readable_texts(at)]
    assert any("Email" in t for t in labels), labels
