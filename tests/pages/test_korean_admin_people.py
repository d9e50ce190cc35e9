"""The Providers and Users pages in Korean beyond their first view (issue 19): a refused form's messages at its
fields, the delete-user and bulk-grant confirmations, and the success messages after them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, update
from streamlit.testing.v1 import AppTest

from mindroute import i18n
from mindroute.db import transaction
from mindroute.models import User
from mindroute.services import providers as provider_svc
from tests.pages.helpers import add_user, app_for, click, error_under, sign_in
from tests.pages.korean import data_terms, english_leftovers, readable_texts

HANGUL = re.compile(r"[가-힣]")
MODELS = ("m-large", "m-small")  # data: the provider's model ids


@pytest.fixture
def korean_admin(engine: Engine) -> Iterator[Engine]:
    add_user(engine, "admin@example.com", role="admin", name="관리자")
    add_user(engine, "bob@example.com", name="밥")
    with transaction(engine) as session:
        session.execute(update(User).values(language="ko"))
    # AppTest sends a select box's choice through the page's format_func in the test's own thread: in Korean too.
    with i18n.using("ko"):
        yield engine


def on_page(engine: Engine, monkeypatch: pytest.MonkeyPatch, page: str) -> AppTest:
    at = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com")
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def no_english(at: AppTest, engine: Engine) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert english_leftovers(readable_texts(at), data_terms(engine) | set(MODELS)) == []


def korean_error(at: AppTest, key: str) -> str:
    message = error_under(at, key)
    assert message is not None and HANGUL.search(message), (key, message)
    return message


def messages(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def submit_add_form(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "공급자 추가").click()
    return at.run()


def add_provider(engine: Engine, name: str) -> uuid.UUID:
    with transaction(engine) as session:
        view = provider_svc.create_provider(
            session,
            None,
            name=name,
            protocol="openai-compatible",
            endpoint_url="http://127.0.0.1:9/v1",
            settings={"models": list(MODELS)},
        )
    return view.id


def user_id(engine: Engine, email: str) -> uuid.UUID | None:
    with transaction(engine) as session:
        return session.scalar(select(User.id).where(User.email == email))


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_providers_refused_form_added_and_deleted_in_korean(
    korean_admin: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = on_page(korean_admin, monkeypatch, "pages/admin/providers.py")
    at.text_input(key="new_provider_name").input("")
    at.text_input(key="new_provider_endpoint").input("ftp://models.example")
    at.text_input(key="new_provider_key").input("two words")
    at.text_input(key="new_provider_max_tokens").input("-5")
    at = submit_add_form(at)
    for key in ("new_provider_name", "new_provider_endpoint", "new_provider_key", "new_provider_max_tokens"):
        korean_error(at, key)
    no_english(at, korean_admin)

    # Added: the flash, and every tab of the provider (settings, models, limits, connection, delete) in Korean.
    at.text_input(key="new_provider_name").input("로컬")
    at.selectbox(key="new_provider_protocol").select("openai-compatible")
    at.text_input(key="new_provider_endpoint").input("http://127.0.0.1:9/v1")
    at.text_input(key="new_provider_key").input("")
    at.text_input(key="new_provider_max_tokens").input("")
    at = submit_add_form(at)
    assert any(HANGUL.search(m) and "로컬" in m for m in messages(at, "success")), messages(at, "success")
    no_english(at, korean_admin)

    # Deleted after typing its name: the flash counts the calls unlinked, in Korean.
    confirm = next(t for t in at.text_input if t.key and t.key.endswith("_delete_confirm"))
    confirm.input("로컬").run()
    next(b for b in at.button if b.key and b.key.endswith("_delete")).click()
    at.run()
    assert any(HANGUL.search(m) for m in messages(at, "success")), messages(at, "success")
    no_english(at, korean_admin)


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_users_refused_form_delete_confirmation_and_bulk_grant_in_korean(
    korean_admin: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = add_provider(korean_admin, "로컬")
    at = on_page(korean_admin, monkeypatch, "pages/admin/users.py")

    at.text_input(key="create_user_email").input("admin@example.com")  # taken (a bad one adds the library's English)
    at.text_input(key="create_user_name").input("")
    at.text_input(key="create_user_password").input("short")
    at = click(at, "create_user_submit")
    for key in ("create_user_email", "create_user_name", "create_user_password"):
        korean_error(at, key)
    no_english(at, korean_admin)

    # The selected user's delete confirmation names what goes along, in Korean.
    at.selectbox(key="users_selected").set_value(str(user_id(korean_admin, "bob@example.com")))
    at = click(at.run(), "user_delete")
    warning = " ".join(messages(at, "warning"))
    assert "API 키 0개" in warning and "되돌릴 수 없습니다" in warning, warning
    no_english(at, korean_admin)
    at = click(at, "user_delete_confirm")
    assert "사용자를 삭제했습니다." in messages(at, "success")
    assert user_id(korean_admin, "bob@example.com") is None

    # A bulk grant: asked first, then confirmed, both in Korean.
    at.selectbox(key="bulk_provider").set_value(str(pid))
    at.selectbox(key="bulk_allowed").set_value(True)
    at.radio(key="bulk_scope").set_value("matching")
    at = click(at, "bulk_review")
    assert "사용자 1명에게 아래 공급자의 권한을 한 번에 부여합니다." in messages(at, "warning")
    assert at.button(key="bulk_confirm").label == "예, 권한을 부여합니다"
    no_english(at, korean_admin)
    at = click(at, "bulk_confirm")
    assert "사용자 1명에게 권한을 부여했습니다." in messages(at, "success")
    no_english(at, korean_admin)
