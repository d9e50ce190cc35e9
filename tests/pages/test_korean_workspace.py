"""The Playground and the API keys page in Korean beyond their first view (issue 19): a key created (its one-time
display), revoked and about to be deleted, a refused form, and a Playground exchange against a local fake provider
with its settings, side by side and a delete confirmation. No English is left outside names and data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, update
from streamlit.testing.v1 import AppTest

from mindroute import i18n
from mindroute.db import transaction
from mindroute.models import ApiKey, Conversation, Provider, User
from mindroute.services.permissions import LIMIT_FROM_USER, UsableProvider
from mindroute.ui import playground_view as view
from tests.pages.helpers import add_user, app_for, click, error_under, sign_in
from tests.pages.korean import data_terms, english_leftovers, readable_texts
from tests.pages.test_playground import grant_provider, send
from tests.providers.fakes import FakeOpenAI, FakeServer, expected_answer

KEYS_PAGE = "pages/workspace/api_keys.py"
PLAYGROUND = "pages/workspace/playground.py"
SQLITE = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeServer]:
    server = FakeServer(FakeOpenAI()).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _read_in_korean() -> Iterator[None]:
    """AppTest formats a select box's options (set_value, format_func) in the test's thread: in Korean too."""
    with i18n.using("ko"):
        yield


def _korean_user(engine: Engine, email: str, role: str = "user") -> None:
    if role != "admin":
        add_user(engine, "admin@example.com", role="admin", name="관리자")  # else the page is the first-run form
    add_user(engine, email, role=role, name="사용자")
    with transaction(engine) as session:
        session.execute(update(User).where(User.email == email).values(language="ko"))


def _data(engine: Engine, *more: str) -> set[str]:
    """The page's data: the harness's names, and what it does not collect (key prefixes, conversation titles,
    the providers' model names)."""
    with transaction(engine) as session:
        prefixes = set(session.scalars(select(ApiKey.prefix)))
        titles = set(session.scalars(select(Conversation.title)))
        models = {m for s in session.scalars(select(Provider.settings)) for m in (s or {}).get("models", [])}
    return data_terms(engine) | prefixes | titles | models | set(more)


def _english(at: AppTest, engine: Engine, *more: str) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return english_leftovers(readable_texts(at), _data(engine, *more))


def _read(text: str | None) -> str:
    return (text or "").replace("\\", "")


def _on(engine: Engine, monkeypatch: pytest.MonkeyPatch, page: str, email: str = "user@example.com") -> AppTest:
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    return at.switch_page(page).run()


@SQLITE
def test_a_key_created_rotated_revoked_and_deleted_in_korean(engine: Engine, monkeypatch) -> None:
    _korean_user(engine, "user@example.com")
    at = _on(engine, monkeypatch, KEYS_PAGE)
    assert at.title[0].value == "API 키"

    at = click(at, "api_key_create")  # no name: refused at the field, in Korean
    refusal = error_under(at, "api_key_name")
    assert refusal and english_leftovers([("error", refusal)]) == [], refusal

    at.selectbox(key="api_key_expiry").set_value("On a date…").run()  # a code, shown as "날짜 지정…"
    expiry = at.selectbox(key="api_key_expiry")
    assert expiry.options == ["30일", "90일", "365일", "만료 없음", "날짜 지정…"]
    assert at.date_input(key="api_key_date").label == "사용 가능한 마지막 날"
    at.text_input(key="api_key_name").input("배포 키")
    at.selectbox(key="api_key_expiry").set_value("90 days")
    at = click(at, "api_key_create")
    assert [s.value for s in at.success] == ["키를 만들었습니다."]
    assert "새 키" in [s.value for s in at.subheader]
    assert any("한 번만" in w.value for w in at.warning)
    assert len(at.code) == 1 and at.code[0].value.startswith("mr-")  # the key itself, once
    assert _english(at, engine) == []
    headers = next(d.value for d in at.dataframe).columns
    assert list(headers) == ["이름", "접두사", "만든 시각", "마지막 사용", "만료", "상태"]

    at.selectbox(key="my_key_grace").set_value("1 hour")
    at = click(at, "my_key_rotate")
    assert [s.value for s in at.success] == ["키를 교체했습니다."] and "교체한 새 키" in [s.value for s in at.subheader]
    shown = sorted(next(d.value for d in at.dataframe)["상태"], key=len)
    assert shown[0] == "활성" and shown[1].endswith("까지 교체 중"), shown
    assert _english(at, engine) == []

    at = click(at, "my_key_revoke")
    assert [s.value for s in at.success] == ["키를 폐기했습니다. 이제 이 키로는 호출할 수 없습니다."]
    assert "폐기됨" in list(next(d.value for d in at.dataframe)["상태"])
    assert not at.code  # never shown again

    at = click(at, "my_key_delete")
    assert [w.value for w in at.warning] == [
        "이 키를 영구히 삭제하시겠습니까? 키는 즉시 동작을 멈추며 되돌릴 수 없습니다."
    ]
    assert at.button(key="my_key_delete_confirm").label == "영구 삭제"
    assert _english(at, engine) == []
    at = click(at, "my_key_delete_confirm")
    assert [s.value for s in at.success] == ["키를 삭제했습니다."]
    assert _english(at, engine) == []


@SQLITE
def test_the_administrators_revoke_on_all_keys_in_korean(engine: Engine, monkeypatch) -> None:
    _korean_user(engine, "admin@example.com", role="admin")
    at = _on(engine, monkeypatch, KEYS_PAGE, "admin@example.com")
    at.text_input(key="api_key_name").input("서버 키")
    at = click(at, "api_key_create")
    assert [t.label for t in at.tabs] == ["내 키", "모든 키"]
    at = click(at, "all_keys_revoke")
    assert [s.value for s in at.success] == ["키를 폐기했습니다. 이제 이 키로는 호출할 수 없습니다."]
    state = at.selectbox(key="all_keys_state")
    assert state.options == ["모든 상태", "활성", "만료됨", "폐기됨"]
    assert _english(at, engine) == []


@SQLITE
def test_a_playground_exchange_in_korean(engine: Engine, monkeypatch, openai_fake: FakeServer) -> None:
    _korean_user(engine, "user@example.com")
    grant_provider(engine, "user@example.com", openai_fake)
    at = _on(engine, monkeypatch, PLAYGROUND)
    assert at.title[0].value == "플레이그라운드"
    assert _english(at, engine) == []

    at = send(at, "안녕하세요")
    answer = expected_answer("안녕하세요")
    assert answer in [m.value for m in at.markdown]
    under = " ".join(_read(c.value) for c in at.caption)
    assert "입력 " in under and "출력 " in under and "첫 토큰" in under and "US$" in under, under
    assert at.button(key="pg_regenerate").label == "다시 생성"
    assert _english(at, engine, answer) == []

    at.button(key="pg_delete").click().run()
    assert [_read(w.value) for w in at.warning] == [
        "“안녕하세요” 대화와 그 메시지를 모두 삭제하시겠습니까? 되돌릴 수 없습니다."
    ]
    assert _english(at, engine, answer) == []
    at.button(key="pg_delete_confirm").click().run()
    assert [_read(i.value) for i in at.info] == ["대화를 삭제했습니다."]

    at.toggle(key="pg_compare").set_value(True).run()
    at.multiselect(key="pg_compare_models").set_value(at.multiselect(key="pg_compare_models").value[:1])
    at = send(at.run(), "비교")
    assert [e.value for e in at.error] == ["비교할 모델을 두세 개 고르세요."]
    assert _english(at, engine) == []


@SQLITE
def test_a_refused_call_in_korean(engine: Engine, monkeypatch, openai_fake: FakeServer) -> None:
    """The provider's rate limit (the fake's "error-429" model): the refusal under the answer, in Korean."""
    _korean_user(engine, "user@example.com")
    provider = grant_provider(engine, "user@example.com", openai_fake, models=["error-429", "test-model"])
    at = _on(engine, monkeypatch, PLAYGROUND)
    assert at.selectbox(key=f"pg_model_{provider.id}").value == "error-429"
    at = send(at, "한도")
    [refusal] = at.warning
    said = "Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): Limit 3, Used 3, "
    assert _read(refusal.value).startswith("호출이 거부되었습니다: " + said), refusal.value
    assert _english(at, engine, said + "Requested 1. Please try again in 20s.") == []  # the provider's words: data


@SQLITE
def test_a_conversation_that_is_not_there_in_korean(engine: Engine, monkeypatch, openai_fake: FakeServer) -> None:
    _korean_user(engine, "user@example.com")
    grant_provider(engine, "user@example.com", openai_fake)
    at = sign_in(app_for(engine, monkeypatch).run(), "user@example.com").switch_page(PLAYGROUND)
    at.query_params["conversation"] = "not-a-uuid"
    at = at.run()
    assert [_read(i.value) for i in at.info] == ["이 대화는 없거나 삭제되었습니다."]
    assert _english(at, engine) == []


def test_the_lines_around_an_answer_in_korean() -> None:
    """What the first views do not reach: attachments in the placeholder, a per-user ceiling, an answer's line."""
    provider = UsableProvider(uuid.uuid4(), "사내 모델", "openai", (), None, 500, LIMIT_FROM_USER, True, False, True)
    kinds, _extensions = view.accepted_files(provider)
    assert (
        view.input_placeholder(provider, kinds, 200)
        == "사내 모델에 메시지 보내기 (이미지, 파일 첨부 가능, 파일당 최대 200 MB)"
    )
    assert view._limit_note(12000, provider.limit_source) == "호출당 최대 12,000토큰까지 쓸 수 있습니다(사용자별 한도)."
    meta = {"prompt_tokens": 1234, "completion_tokens": 56, "duration_ms": 1500, "ttft_ms": 320, "cost_usd": 0.00012}
    assert view.outcome_caption(meta) == "입력 1,234 · 출력 56 · 1,500 ms · 첫 토큰 320 ms · ≈ US$0.00012"
    assert view.outcome_caption({"stopped": True}) == "토큰 수 보고 없음 · 0 ms · 중지됨"
    assert view.error_text({"error": "upstream said no", "status": 500}) == "호출이 실패했습니다: upstream said no"
    history = [{"role": "user", "text": "안녕"}, {"role": "assistant", "text": "hello"}]
    assert view.markdown_transcript(history) == "**사용자**: 안녕\n\n**어시스턴트**: hello"


@SQLITE
def test_side_by_side_in_korean(engine: Engine, monkeypatch, openai_fake: FakeServer) -> None:
    _korean_user(engine, "user@example.com")
    grant_provider(engine, "user@example.com", openai_fake)
    at = _on(engine, monkeypatch, PLAYGROUND)
    at.toggle(key="pg_compare").set_value(True).run()
    picker = at.multiselect(key="pg_compare_models")
    assert picker.label == "나란히 비교할 모델" and len(picker.value) == 2
    at = send(at, "둘 다")
    answer = expected_answer("둘 다")
    assert [m.value for m in at.markdown].count(answer) == 2
    assert sum("입력 " in _read(c.value) and "출력 " in _read(c.value) for c in at.caption) == 2
    assert _english(at, engine, answer) == []
