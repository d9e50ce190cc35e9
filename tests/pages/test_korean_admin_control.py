"""The limits, budgets, retention and audit pages in Korean (issue 19), in the states their first view does not
show: a rule saved with bad input (the messages at the fields), a saved rule, a budget with spend, a reviewed and
confirmed deletion of old calls, and the audit trail with rows and one row opened. What a page shows of its own
(the main area; the sidebar is the shell's) holds no English outside names and data."""

from __future__ import annotations

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine, select, update
from streamlit.testing.v1 import AppTest

from mindroute import i18n
from mindroute.db import transaction
from mindroute.models import User, utcnow
from mindroute.services import limit_admin, limit_rules
from mindroute.ui import audit_view, budget_view
from tests.pages.helpers import add_user, app_for, click, error_under, sign_in
from tests.pages.korean import data_terms, english_leftovers, readable_texts

LIMITS = "pages/admin/limits.py"
RETENTION = "pages/admin/retention.py"
AUDIT = "pages/admin/audit.py"
HANGUL = re.compile(r"[가-힣]")
ZONES = ("Asia/Seoul", "UTC")  # time zone names are data: they are shown as they are


@pytest.fixture
def korean_admin(engine: Engine) -> Engine:
    add_user(engine, "admin@example.com", role="admin", name="관리자")
    add_user(engine, "user@example.com", name="사용자")
    with transaction(engine) as session:
        session.execute(update(User).values(language="ko"))
    return engine


def on_page(engine: Engine, monkeypatch: pytest.MonkeyPatch, page: str, email: str = "admin@example.com") -> AppTest:
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


DIRECTIVE = re.compile(r":[a-z]+(-badge)?\[")  # Streamlit's colour and badge Markdown (":orange-badge[…]")


def korean_leftovers(texts: list[tuple[str, str]], engine: Engine, *data: str) -> list[str]:
    """English left in `texts` once names, data, `data`, zone names and Streamlit's directives are taken out."""
    plain = [(kind, DIRECTIVE.sub("[", value)) for kind, value in texts]
    return english_leftovers(plain, data_terms(engine) | set(data) | set(ZONES))


def leftovers(at: AppTest, engine: Engine, *data: str) -> list[str]:
    """English left in what the page itself shows (its main area; the sidebar is the shell's)."""
    return korean_leftovers(readable_texts(SimpleNamespace(_tree=at.main)), engine, *data)


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def bars(at: AppTest) -> list[str]:
    return [el.proto.text for el in _walk(at.main) if getattr(el, "type", None) == "progress"]


# --- a rule ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_rule_with_bad_input_shows_korean_messages_at_its_fields(korean_admin, monkeypatch) -> None:
    at = on_page(korean_admin, monkeypatch, LIMITS)
    at.text_input(key="default_limits_rpm").input("ten")
    at = click(at, "default_limits_save")
    message = error_under(at, "default_limits_rpm") or ""
    assert HANGUL.search(message), message
    assert leftovers(at, korean_admin, "ten") == []

    at.text_input(key="default_limits_rpm").input("10")
    at.text_input(key="default_limits_timezone").input("Mars/Olympus_Mons")
    at = click(at, "default_limits_save")
    message = error_under(at, "default_limits_timezone") or ""
    assert HANGUL.search(message) and "Mars/Olympus_Mons" in message, message
    assert leftovers(at, korean_admin, "Mars/Olympus_Mons") == []
    with transaction(korean_admin) as session:
        assert limit_admin.settings_for(session, limit_rules.DEFAULT_TARGET) is None  # nothing saved


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_saved_rule_is_summed_up_in_korean(korean_admin, monkeypatch) -> None:
    at = on_page(korean_admin, monkeypatch, LIMITS)
    for name, value in {"rpm": "10", "budget_usd": "25", "timezone": "Asia/Seoul"}.items():
        at.text_input(key=f"default_limits_{name}").input(value)
    at = click(at, "default_limits_save")
    assert not at.exception, [e.value for e in at.exception]
    assert "한도를 저장했습니다." in [s.value for s in at.success]
    assert "현재: 분당 요청 10회, 월 US$25.00(Asia/Seoul), 80%에서 경고" in [t.value for t in at.text]
    table = next(d.value for d in at.dataframe)
    assert list(table.columns) == ["종류", "적용 대상", "설정한 사람", "설정 내용", "변경 시각"]
    assert list(table["적용 대상"]) == ["자기 규칙이 없는 모든 사용자"]
    assert leftovers(at, korean_admin) == []


# --- a budget with spend -------------------------------------------------------------------------------


def _budget_script(url: str) -> None:
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from mindroute import i18n
    from mindroute.models import User
    from mindroute.services import budget_spend
    from mindroute.ui.budget_view import render_statuses

    with Session(create_engine(url)) as session:
        viewer = session.scalar(select(User).where(User.email == "user@example.com"))
        statuses = budget_spend.budget_statuses(session, viewer, viewer.id)
    with i18n.using("ko"):
        render_statuses(statuses)


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_users_budget_with_spend_reads_in_korean(korean_admin) -> None:
    from mindroute.models import BudgetSpend

    with transaction(korean_admin) as session:
        admin = session.scalar(select(User).where(User.email == "admin@example.com"))
        user = session.scalar(select(User).where(User.email == "user@example.com"))
        target = limit_rules.user_target(user.id)
        settings = limit_rules.validate_settings(budget_usd=10, budget_tokens=100_000, timezone="Asia/Seoul")
        limit_admin.set_limit(session, admin, target, settings)
        key = limit_rules.period_window("month", "Asia/Seoul").key
        session.merge(BudgetSpend(target=target, period_key=key, spent_usd=9.5, tokens=12_345, unpriced_calls=3))

    url = korean_admin.url.render_as_string(hide_password=False)
    at = AppTest.from_function(_budget_script, args=(url,), default_timeout=30).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [re.sub(r"\\(.)", r"\1", text) for text in bars(at)]
    assert len(shown) == 2 and shown[0].startswith("이번 달(Asia/Seoul) US$10.00 중 US$9.50 사용, "), shown
    assert "후 초기화(" in shown[0] and "토큰" in shown[1]
    captions = [re.sub(r"\\(.)", r"\1", c.value) for c in at.caption]
    assert "가격이 없는 모델 호출 3건은 USD에 포함되지 않습니다." in captions
    assert any("이 추세라면 이번 달 말까지" in c for c in captions), captions
    texts = readable_texts(at) + [("progress", text) for text in bars(at)]
    assert korean_leftovers(texts, korean_admin) == []


def test_an_alerts_period_and_webhook_read_in_korean() -> None:
    alert = SimpleNamespace(
        created_at=utcnow(), level="spent", metric="tokens", spent=120_000, budget=100_000, label="x",
        period_key="month:Asia/Seoul:2026-12-01", period="the month of 2026-12 (Asia/Seoul)", webhook_status="failed",
    )  # fmt: skip
    with i18n.using("ko"):
        [row] = budget_view.alert_rows([alert])
    assert row["기간"] == "2026년 12월(Asia/Seoul)" and row["수준"] == "소진" and row["웹훅"] == "실패"
    assert row["도달"].startswith("토큰 ")


# --- retention -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_reviewing_and_deleting_old_calls_reads_in_korean(korean_admin, monkeypatch) -> None:
    from mindroute.analytics.rollups import rebuild_rollups
    from mindroute.models import Provider
    from tests.test_analytics import insert_rows, log_row

    with transaction(korean_admin) as session:
        provider = Provider(name="P1", settings={"models": ["m"], "default_model": None, "prices": {}})
        session.add(provider)
        user = session.scalar(select(User).where(User.email == "user@example.com"))
    now = utcnow()
    insert_rows(
        korean_admin,
        [log_row(now - timedelta(days=d, minutes=i), user, provider, "m") for i, d in enumerate((100, 100, 1))],
    )
    rebuild_rollups(korean_admin, progress=False)

    at = on_page(korean_admin, monkeypatch, RETENTION)
    at.number_input(key="retention_days").set_value(30)
    at = click(at, "retention_review_submit")
    [warning] = at.warning
    assert "호출 2건을" in warning.value and "(30일 전)" in warning.value and "되돌릴 수 없습니다." in warning.value
    assert at.button(key="retention_confirm").label == "호출 2건 삭제"
    assert leftovers(at, korean_admin) == []

    at = click(at, "retention_confirm")
    assert not at.exception, [e.value for e in at.exception]
    [done] = at.success
    assert "호출 2건을 삭제했습니다." in done.value
    assert leftovers(at, korean_admin) == []


# --- audit -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_audit_trail_with_rows_reads_in_korean(korean_admin, monkeypatch) -> None:
    with transaction(korean_admin) as session:
        admin = session.scalar(select(User).where(User.email == "admin@example.com"))
        limit_admin.set_limit(session, admin, limit_rules.DEFAULT_TARGET, limit_rules.validate_settings(rpm=5))
    at = on_page(korean_admin, monkeypatch, AUDIT)
    table = next(d.value for d in at.dataframe)
    assert list(table.columns) == ["#", "시각", "행위자", "IP", "작업", "대상", "변경 내용", "사용자 에이전트"]
    assert list(table["작업"]) == ["로그인 성공", "한도 설정"]
    assert set(at.selectbox(key="audit_action").options) == {"(모든 작업)", "한도 설정", "로그인 성공"}
    assert leftovers(at, korean_admin) == []

    at.selectbox(key="audit_action").select("limit.set").run()
    assert list(next(d.value for d in at.dataframe)["작업"]) == ["한도 설정"]
    assert any(c.value.startswith("1쪽: 일치하는 행 1개 중 1개") for c in at.caption)
    assert leftovers(at, korean_admin) == []


def test_every_action_label_is_translated() -> None:
    with i18n.using("ko"):
        unread = [a for a, label in audit_view.ACTION_LABELS.items() if not HANGUL.search(i18n.text(label))]
        assert unread == []
        assert audit_view.action_label("test.event") == "test.event"  # an id without a label, as it is
