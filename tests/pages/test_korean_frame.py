"""The frame in Korean beyond the first view (issue 19): the sign-in page by the browser's language and its
refusals, the Account page's Language choice (the next run is in the language saved), a ticket opened, answered
and resolved in Korean with Korean status labels, and the navigation's titles and the sign-in/out forms."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select, update
from streamlit.testing.v1 import AppTest

from mindroute import i18n
from mindroute.db import transaction
from mindroute.models import Ticket, User
from mindroute.services import users
from mindroute.ui import navigation, shell, signin, sso
from tests.pages.helpers import add_user, app_for, click, error_under, sign_in, texts
from tests.pages.korean import data_terms, english_leftovers, readable_texts

SQLITE = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)  # the pages are the same on PostgreSQL

ZONES = set(users.zone_choices())
ACCOUNT = "pages/workspace/account.py"
SUPPORT = "pages/workspace/support.py"
QUEUE = "pages/admin/tickets.py"


def _korean(engine: Engine, email: str) -> None:
    with transaction(engine) as session:
        session.execute(update(User).where(User.email == email).values(language="ko"))


def _language(engine: Engine, email: str) -> str | None:
    with transaction(engine) as session:
        return session.scalar(select(User.language).where(User.email == email))


def _no_english(at: AppTest, engine: Engine) -> None:
    """Nothing English but names and data; the Time zone picker's IANA zone ids ("Asia/Seoul") are data."""
    assert not at.exception, [e.value for e in at.exception]
    assert english_leftovers(readable_texts(at), data_terms(engine) | ZONES) == []


def _on(engine: Engine, monkeypatch: pytest.MonkeyPatch, email: str, page: str) -> AppTest:
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def people(engine: Engine) -> Engine:
    add_user(engine, "admin@example.com", role="admin", name="관리자")
    add_user(engine, "user@example.com", name="사용자")
    _korean(engine, "admin@example.com")
    _korean(engine, "user@example.com")
    return engine


# --- signed out: the browser's language ---------------------------------------------------------


@SQLITE
def test_the_sign_in_page_follows_a_korean_browser(people: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_for(people, monkeypatch)
    at.context = {"locale": "ko-KR"}
    at.run()
    assert "MindRoute 로그인" in texts(at)
    _no_english(at, people)

    at.button[0].click().run()  # both fields blank: said at each field, in Korean
    assert error_under(at, "signin_email") == "이메일을 입력하세요"
    assert error_under(at, "signin_password") == "비밀번호를 입력하세요"
    _no_english(at, people)

    at = sign_in(at, "admin@example.com", "not the password")
    assert len(at.error) == 1  # the one refusal that does not say which part was wrong, in Korean
    _no_english(at, people)


@SQLITE
@pytest.mark.parametrize("outcome", ["failed", "throttled"])
def test_the_cookie_routes_refusals_in_korean(people: Engine, monkeypatch: pytest.MonkeyPatch, outcome: str) -> None:
    """/auth/signin sends the browser back with ?signin=failed or ?signin=throttled&wait=N: said in Korean."""
    at = app_for(people, monkeypatch)
    at.context = {"locale": "ko-KR"}
    at.query_params["signin"] = outcome
    at.query_params["wait"] = "120"
    at.run()
    assert len(at.error) == 1
    _no_english(at, people)
    assert "signin" not in at.query_params


def test_the_browsers_language_is_resolved_for_a_signed_out_visitor() -> None:
    assert i18n.resolve(None, "ko-KR") == "ko"
    assert i18n.resolve(None, "en-US") == "en"
    assert i18n.resolve(None, "de-DE") == "en"  # a language we do not offer: English
    assert i18n.resolve(None, None) == "en"  # AppTest without a locale, or a browser that sends none
    assert i18n.resolve("en", "ko-KR") == "en"  # a signed-in user's choice wins over the browser


@SQLITE
def test_the_first_administrator_form_in_korean(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_for(engine, monkeypatch)
    at.context = {"locale": "ko"}
    at.run()
    assert "MindRoute에 오신 것을 환영합니다" in texts(at)
    _no_english(at, engine)
    at.text_input(key="first_admin_password").input("a long enough password")
    at.text_input(key="first_admin_repeat").input("a different password")
    at.button[0].click().run()
    assert error_under(at, "first_admin_name") is not None
    _no_english(at, engine)


# --- Account: the language choice -----------------------------------------------------------------


@SQLITE
def test_a_korean_user_switches_to_english_and_back(people: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _on(people, monkeypatch, "user@example.com", ACCOUNT)
    assert [t.value for t in at.title] == ["계정"]
    language = at.radio(key="account_language")
    assert language.value == "ko"
    assert language.options == ["브라우저 따르기 (English)", "English", "한국어"]  # AppTest's browser has none
    _no_english(at, people)

    language.set_value("en")
    at = click(at, "account_language_save")
    assert _language(people, "user@example.com") == "en"
    assert [t.value for t in at.title] == ["Account"]  # the next run is in English
    assert "Language saved." in texts(at)
    assert "Times are in UTC." in [c.value for c in at.caption]
    assert at.radio(key="account_theme").options == ["Follow the browser", "Light", "Dark"]
    zone = at.selectbox(key="account_timezone")  # carried over by value, not as the old language's label
    assert (zone.value, zone.options[0]) == ("", "Follow the browser (UTC)")
    assert at.radio(key="account_theme").value == ""

    at.radio(key="account_language").set_value("ko")
    at = click(at, "account_language_save")
    assert _language(people, "user@example.com") == "ko"
    assert [t.value for t in at.title] == ["계정"]
    assert "언어를 저장했습니다." in texts(at)
    assert at.radio(key="account_theme").options == ["브라우저 따르기", "밝게", "어둡게"]
    _no_english(at, people)

    at.radio(key="account_language").set_value("")  # follow the browser: NULL, and English in AppTest
    at = click(at, "account_language_save")
    assert _language(people, "user@example.com") is None
    assert [t.value for t in at.title] == ["Account"]


@SQLITE
def test_account_messages_in_korean(people: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _on(people, monkeypatch, "user@example.com", ACCOUNT)
    fields = [t for t in at.text_input if t.label in ("현재 비밀번호", "새 비밀번호", "새 비밀번호 확인")]
    fields[0].input("correct horse battery")
    fields[1].input("brand new password")
    fields[2].input("another new password")
    next(b for b in at.button if b.label == "비밀번호 변경").click().run()
    assert "두 새 비밀번호가 서로 다릅니다" in texts(at)
    _no_english(at, people)
    fields = [t for t in at.text_input if t.label in ("현재 비밀번호", "새 비밀번호", "새 비밀번호 확인")]
    fields[0].input("correct horse battery")
    fields[1].input("brand new password")
    fields[2].input("brand new password")
    next(b for b in at.button if b.label == "비밀번호 변경").click().run()
    assert "비밀번호를 변경했습니다. 다른 세션 0개에서 로그아웃했습니다." in texts(at)
    _no_english(at, people)


# --- a ticket's life in Korean ------------------------------------------------------------------


@SQLITE
def test_a_ticket_opened_answered_and_resolved_in_korean(people: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    user = _on(people, monkeypatch, "user@example.com", SUPPORT)
    assert "보낸 문의가 없습니다." in texts(user)
    user = click(user, "support_submit")  # nothing filled in: said at the fields
    assert error_under(user, "support_subject") is not None
    _no_english(user, people)
    user.text_input(key="support_subject").input("키가 동작하지 않습니다")
    user.text_area(key="support_message").set_value("어제부터 429 오류가 납니다.")
    user = click(user, "support_submit")
    assert "문의를 보냈습니다. 지원 담당자가 여기에 답변합니다." in texts(user)
    assert list(next(d.value for d in user.dataframe if "상태" in d.value.columns)["상태"]) == ["열림"]
    assert "아직 답변이 없습니다." in texts(user)
    _no_english(user, people)

    admin = _on(people, monkeypatch, "admin@example.com", QUEUE)
    queue = next(d for d in admin.dataframe if "사용자" in d.value.columns)
    assert list(queue.value["상태"]) == ["열림"]
    admin.session_state[queue.key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    admin.run()  # the row clicked: its ticket is open
    with transaction(people) as session:
        tid = session.scalar(select(Ticket.id))
    assert admin.query_params["ticket"] == str(tid)
    assert [b.label for b in admin.button if b.key.startswith("queue_to_")] == [
        "처리 중(으)로 변경",
        "해결됨(으)로 변경",
        "닫힘(으)로 변경",
    ]
    _no_english(admin, people)
    admin = click(admin, "queue_to_in_progress")
    assert "처리 중(으)로 변경했습니다." in texts(admin)
    admin = click(admin, "queue_response_resolve")  # no answer written: refused at the field
    assert error_under(admin, "queue_response_text") is not None
    _no_english(admin, people)
    admin.text_area(key="queue_response_text").input("키를 새로 만들어 보세요.")
    admin = click(admin, "queue_response_resolve")
    assert "답변을 보내고 문의를 해결했습니다." in texts(admin)
    assert list(next(d.value for d in admin.dataframe if "사용자" in d.value.columns)["상태"]) == ["해결됨"]
    _no_english(admin, people)

    user.run()
    assert "키를 새로 만들어 보세요." in [t.value for t in user.text]
    assert "답변한 사람: 관리자" in [t.value for t in user.text]
    user = click(user, "support_reopen_submit")  # no follow-up written
    assert error_under(user, "support_follow_up") is not None
    _no_english(user, people)


# --- the frame: navigation and the static forms --------------------------------------------------


def test_navigation_titles_and_the_static_forms_in_korean() -> None:
    queue = next(p for p in navigation.PAGES if p.path == QUEUE)
    with i18n.using("ko"):
        assert navigation.page_title(queue, open_tickets=1234) == "문의 대기열 (1,234)"
        assert navigation.page_title(queue) == "문의 대기열"
        assert navigation.page_title(navigation.PAGES[0]) == "개요"
        assert i18n.text(navigation.ADMIN) == "관리"
        signout, signin_form = shell.cookie_signout_form(), signin.cookie_signin_form()
    assert ">로그아웃</button>" in signout
    assert "30일 동안 로그인 유지" in signin_form and ">로그인</button>" in signin_form
    assert ">Sign out</button>" in shell.cookie_signout_form()  # English where no language is set
    assert {spec.url_path for spec in navigation.PAGES} >= {"tickets", "account", "support"}  # URLs stay English


@SQLITE
def test_the_sidebar_and_the_refusal_in_korean(people: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _on(people, monkeypatch, "user@example.com", ACCOUNT)
    assert "사용자" in [c.value for c in at.sidebar.caption]
    assert "로그아웃" in [b.label for b in at.sidebar.button]
    direct = app_for(people, monkeypatch, page=QUEUE)
    direct.session_state["mindroute_tab_session"] = at.session_state["mindroute_tab_session"]
    direct.run()  # a user running the queue's script: refused, in their language
    assert "관리자만 볼 수 있는 페이지입니다." in texts(direct)


def test_single_sign_on_buttons_in_korean(monkeypatch: pytest.MonkeyPatch) -> None:
    client = {"client_id": "console", "server_metadata_url": "https://id.example.com/.well-known/openid-configuration"}
    monkeypatch.setattr(sso, "_auth_section", lambda: {**client, "okta_staff": dict(client)})
    with i18n.using("ko"):
        assert sso.providers() == [(None, "SSO로 로그인"), ("okta_staff", "Okta Staff(으)로 로그인")]
    assert sso.providers()[0] == (None, "Sign in with single sign-on")
