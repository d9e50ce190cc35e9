"""The Overview, Usage, Logs and Calls pages in Korean beyond their first view (issue 19): every chart tab
and top tab opened, the rollups-behind warning, a call's detail opened, a call not found, and the tables'
and CSVs' headers in Korean (their ISO times kept ISO)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import Engine, text, update

from mindroute import i18n
from mindroute.analytics.filter import UsageFilter
from mindroute.analytics.rollups import rebuild_rollups
from mindroute.db import transaction
from mindroute.models import Provider, User, utcnow
from mindroute.services.usage import usage_page
from mindroute.ui import calls_view, usage_view
from tests.pages.helpers import add_user, app_for, sign_in
from tests.pages.korean import data_terms, english_leftovers, readable_texts
from tests.test_analytics import insert_rows, log_row

pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)

USAGE = "pages/workspace/usage.py"
LOGS = "pages/admin/logs.py"
CALLS = "pages/workspace/calls.py"
OVERVIEW = "pages/workspace/overview.py"


@pytest.fixture
def world(engine: Engine) -> dict:
    """Two Korean readers; in the last two days alice's chat calls and embeddings on two providers, one
    failing in the last hour, one through the playground; the rollups rebuilt."""
    admin = add_user(engine, "admin@example.com", role="admin", name="관리자")
    alice = add_user(engine, "alice@example.com", name="앨리스")
    with transaction(engine) as session:
        p1 = Provider(name="공급자1", settings={"models": ["m-big"], "default_model": None, "prices": {}})
        p2 = Provider(name="공급자2", settings={"models": ["m-small"], "default_model": None, "prices": {}})
        session.add_all([p1, p2])
        session.execute(update(User).values(language="ko"))
    now = utcnow()
    rows = [log_row(now - timedelta(hours=i + 2), alice, p1, "m-big", prompt=40_000, completion=900) for i in range(6)]
    rows += [log_row(now - timedelta(hours=i + 3), admin, p2, "m-small", source="playground") for i in range(3)]
    rows.append(log_row(now - timedelta(minutes=20), alice, p2, "m-small", status=500, error="upstream exploded"))
    rows[1]["request_type"] = "embedding"
    insert_rows(engine, rows)
    rebuild_rollups(engine, progress=False)
    return {"admin": admin, "alice": alice, "p1": p1, "rows": rows}


def models(engine: Engine) -> set[str]:
    """The models the calls name (data): korean.data_terms reads logs.model, but the column is modelid."""
    with engine.connect() as connection:
        return {m for (m,) in connection.execute(text("SELECT DISTINCT modelid FROM logs")) if m}


def leftovers(at, engine: Engine, *data: str) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return english_leftovers(readable_texts(at), data_terms(engine) | models(engine) | set(data))


def open_page(engine: Engine, monkeypatch: pytest.MonkeyPatch, email: str, page: str, query: dict | None = None):
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def download_keys(at) -> set[str]:
    return {node.key for node in at.get("download_button")}


def test_usage_in_korean_across_every_tab(engine: Engine, monkeypatch: pytest.MonkeyPatch, world: dict) -> None:
    # A row written behind the rollups' back: the page says its numbers are behind the logs.
    insert_rows(engine, [log_row(utcnow() - timedelta(hours=1), world["alice"], world["p1"], "m-big")])
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE)
    assert leftovers(at, engine) == []
    assert any("로그보다 늦습니다" in w.value for w in at.warning)
    assert next(m for m in at.metric if m.label == "요청").value == "10"  # the rollups' count, not the 11th row
    chart_tabs = {"요청과 오류": "usage_csv_requests", "지연 시간": "usage_csv_latency"}
    chart_tabs |= {"모델별 지연 시간": "usage_csv_latency_histogram", "상태 코드": "usage_csv_status_codes"}
    for label, csv_key in chart_tabs.items():
        at.session_state["usage_chart_tab"] = label
        at.run()
        assert csv_key in download_keys(at), label
        assert leftovers(at, engine) == [], label
    for label, csv_key in {"사용자": "usage_csv_top_user_by_cost", "키": "usage_csv_top_api_key_by_cost"}.items():
        at.session_state["usage_top_tab"] = label
        at.segmented_control(key="usage_top_metric").set_value("cost").run()
        assert csv_key in download_keys(at), label
        assert leftovers(at, engine) == [], label
    at.segmented_control(key="usage_stack_by").set_value("model").run()
    at.radio(key="usage_breakdown_by").set_value("request_type").run()
    assert leftovers(at, engine) == []
    shown = at.dataframe[-1].value
    assert list(shown.columns)[:2] == ["요청 유형", "요청"]
    assert set(shown["요청 유형"]) == {"채팅", "임베딩"}
    with i18n.using("ko"):
        exported = pd.read_csv(io.BytesIO(usage_view.table_csv(shown)))
    assert list(exported.columns) == list(shown.columns)


def test_usage_csv_headers_in_korean_with_iso_times(engine: Engine, world: dict) -> None:
    now = utcnow()
    page = usage_page(engine, world["admin"], UsageFilter(now - timedelta(days=2), now, timezone="Asia/Seoul"))
    with i18n.using("ko"):
        series = usage_view.table(page.requests, "Asia/Seoul")
        exported = pd.read_csv(io.BytesIO(usage_view.table_csv(series)))
        tokens = usage_view.table(page.tokens_by_provider, "Asia/Seoul", {"group": "공급자"})
    assert list(exported.columns) == ["시작", "요청", "오류"]
    assert str(exported["시작"].iloc[0]).endswith("+09:00")  # ISO-8601 with the offset, whatever the language
    assert list(tokens.columns) == ["시작", "공급자", "전체 토큰"]
    with i18n.using("ko"):
        assert usage_view.usd(0.5) == "US$0.5000" and usage_view.milliseconds(29947.6) == "29,948 ms"
        assert usage_view.calls_text(1200) == "호출 1,200건"


def test_a_call_opened_in_korean(engine: Engine, monkeypatch: pytest.MonkeyPatch, world: dict) -> None:
    newest = world["rows"][-1]["id"]
    at = open_page(engine, monkeypatch, "alice@example.com", CALLS, {"call": str(newest)})
    assert leftovers(at, engine, str(newest)) == []  # the call's id is data (korean.py takes no UUIDs out)
    assert list(at.dataframe[0].value.columns)[:3] == ["시각", "공급자", "모델"]
    summary = next(t.value for t in at.text if t.value.startswith("호출 "))
    assert "공급자: 공급자2" in summary and "토큰:" in summary and "소요 시간: 500 ms" in summary
    assert [t.label for t in at.tabs] == ["요청 본문", "응답 본문"]
    assert "이 호출에 대한 지원 문의 열기" in [link.proto.label for link in at.get("page_link")]

    now = utcnow()
    flt = UsageFilter(now - timedelta(days=7), now)
    data = calls_view.calls_csv(
        engine, world["alice"], flt, "", with_user=False, zone=ZoneInfo("Asia/Seoul"), language="ko"
    )
    parsed = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert parsed[0][:4] == ["시각", "공급자", "모델", "유형"]
    assert parsed[1][0].endswith("+09:00") and "채팅" in {row[3] for row in parsed[1:]}


def test_logs_in_korean_an_unknown_call(engine: Engine, monkeypatch: pytest.MonkeyPatch, world: dict) -> None:
    at = open_page(engine, monkeypatch, "admin@example.com", LOGS, {"call": "not-a-uuid"})
    assert leftovers(at, engine) == []
    assert any("호출을 찾을 수 없습니다" in w.value for w in at.warning)
    at.text_input(key="logs_search").input("nothing like this").run()
    assert leftovers(at, engine) == []
    assert "이 필터와 일치하는 호출이 없습니다." in [i.value for i in at.info]


def test_overview_in_korean_with_a_failing_provider(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, world: dict
) -> None:
    at = open_page(engine, monkeypatch, "admin@example.com", OVERVIEW)
    assert leftovers(at, engine) == []
    failing = at.dataframe[0].value
    assert list(failing.columns) == ["공급자", "오류", "호출"] and list(failing["공급자"]) == ["공급자2"]
