"""The services' errors in two languages (issue 19): each is a deferred Message whose str is the English the API,
the CLI and the logs have always read, and which a page reads in Korean through `i18n.text(exc)`. The Korean
text holds no English but names and data (the Korean-pages harness's check)."""

from __future__ import annotations

import ast
import json
import pickle
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from mindroute import i18n
from mindroute.db import transaction
from mindroute.errors import ConflictError, NotFound, PermissionDenied
from mindroute.http.answers import error_response
from mindroute.i18n import Message, _l
from mindroute.models import Log, Provider, User
from mindroute.provider_settings import SettingsError, parse_settings_json
from mindroute.providers import transport
from mindroute.providers.errors import ProviderError, body_too_large
from mindroute.providers.media import check_media
from mindroute.providers.shapes import Attachment, ChatMessage, ChatRequest
from mindroute.services import admin_users, api_keys, auth, limits, tickets, users
from mindroute.services.call_tracker import Caller
from mindroute.services.chat import complete_chat
from mindroute.services.limit_rules import period_window
from mindroute.validation import FormValidationError, ValidationError
from tests.limit_helpers import make_rule
from tests.pages.korean import english_leftovers

ROOT = Path(__file__).resolve().parent.parent
SQLITE = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


def korean(value: object) -> str:
    with i18n.using("ko"):
        return i18n.text(value)


def assert_korean(text: str, *data: str) -> None:
    """Hangul, and no English left once `data` (names, emails, values) is taken out."""
    assert any("\uac00" <= ch <= "\ud7a3" for ch in text), text
    assert english_leftovers([("message", text)], data) == []


def refusal(call, *args, **kwargs) -> Exception:
    with pytest.raises(Exception) as caught:
        call(*args, **kwargs)
    return caught.value


# --- forms: every problem at its field --------------------------------------------------------------


@SQLITE
def test_a_form_with_several_problems_reads_in_korean_at_each_field_and_stays_english_as_a_str(engine: Engine) -> None:
    exc = refusal(users.create_user, engine, None, email="not an email", name="", password="short", role="boss")
    assert isinstance(exc, FormValidationError)
    assert str(exc) == "Name is required (and 3 more problems)"
    assert set(exc.problems) == {"name", "email", "role", "password"}
    assert str(exc.problems["password"]) == "Password must be at least 8 characters"
    assert exc.problems["role"] == "Unknown role 'boss': choose one of admin, user"

    assert korean(exc) == "이름 항목은 필수입니다. (외 문제 3개)"
    assert korean(exc.problems["password"]) == "비밀번호는 8자 이상이어야 합니다."
    assert korean(exc.problems["role"]) == "알 수 없는 역할 'boss'입니다. admin, user 중에서 고르세요."
    for field in ("name", "role", "password"):
        assert_korean(korean(exc.problems[field]), "boss")
    # The email's reason comes from email-validator, in English: the sentence around it is Korean.
    assert korean(exc.problems["email"]).startswith("name@example.com 형식의 이메일 주소를 입력하세요: ")


@SQLITE
def test_a_single_problem_and_a_duplicate_email(engine: Engine) -> None:
    users.create_user(engine, None, email="ann@example.com", name="Ann", password="long enough")
    exc = refusal(users.create_user, engine, None, email="ann@example.com", name="Ann", password="long enough")
    assert type(exc) is ValidationError and exc.field == "email"
    assert (str(exc), korean(exc)) == ("Email is already registered", "이미 등록된 이메일입니다.")


def test_provider_settings_problems_are_each_translated() -> None:
    exc = refusal(parse_settings_json, '{"models": "gpt-4o", "prices": {"m": {"input": -1}}, "colour": 1}')
    assert isinstance(exc, SettingsError)
    assert str(exc.problems["settings"]) == "Unknown setting colour: the settings hold models, default_model, prices"
    assert korean(exc.problems["settings"]) == (
        "알 수 없는 설정 colour이(가) 있습니다. 설정에는 models, default_model, prices만 들어갑니다."
    )
    for field, message in exc.problems.items():
        assert_korean(
            korean(message),
            "colour",
            "models",
            "default_model",
            "prices",
            "gpt-4o-mini",
            "gpt-4o",
            "input",
            "output",
            "m",
        )
        assert str(message) == message and "{" not in field
    parsed = refusal(parse_settings_json, "{nope")
    assert str(parsed).startswith("Not valid JSON: Expecting property name enclosed in double quotes at line 1")
    assert korean(parsed).startswith("올바른 JSON이 아닙니다: 1행 2열")


# --- refusals: permission, not found, conflicts -------------------------------------------------------


@SQLITE
def test_permission_denied_not_found_and_conflict(engine: Engine) -> None:
    admin = users.create_user(engine, None, email="boss@example.com", name="Boss", password="long enough", role="admin")
    member = users.create_user(engine, None, email="ann@example.com", name="Ann", password="long enough")

    denied = refusal(admin_users.delete_user, engine, member, admin.id)
    assert isinstance(denied, PermissionDenied)
    assert (str(denied), korean(denied)) == ("Only administrators can do this", "관리자만 할 수 있습니다.")

    signed_out = refusal(api_keys.list_my_keys, engine, None)
    assert isinstance(signed_out, PermissionDenied)
    assert (str(signed_out), korean(signed_out)) == ("Sign in to manage API keys", "API 키를 관리하려면 로그인하세요.")

    missing = refusal(admin_users.update_user, engine, admin, uuid.uuid4(), name="X")
    assert isinstance(missing, NotFound)
    assert (str(missing), korean(missing)) == ("This user no longer exists", "이 사용자는 더 이상 없습니다.")

    stale = refusal(
        admin_users.update_user, engine, admin, member.id, name="Anna", expected_updated_at=datetime(2020, 1, 1)
    )
    assert isinstance(stale, ConflictError)
    assert str(stale) == "ann@example.com was changed by someone else since you opened it; reload and try again"
    assert korean(stale) == "연 뒤에 다른 사람이 ann@example.com 계정을 변경했습니다. 새로 고친 뒤 다시 시도하세요."

    last = refusal(admin_users.set_user_active, engine, None, admin.id, False)
    assert isinstance(last, ValidationError) and last.message == admin_users.LAST_ADMIN_MESSAGE
    assert_korean(korean(last), "MindRoute")


@SQLITE
def test_a_ticket_move_not_allowed_names_the_statuses_in_korean(engine: Engine) -> None:
    admin = users.create_user(engine, None, email="boss@example.com", name="Boss", password="long enough", role="admin")
    member = users.create_user(engine, None, email="ann@example.com", name="Ann", password="long enough")
    ticket = tickets.open_ticket(engine, member, "Help", "It broke")
    tickets.set_status(engine, admin, ticket.id, "closed")
    exc = refusal(tickets.set_status, engine, admin, ticket.id, "open")
    assert str(exc) == "Cannot move a ticket from Closed to Open: a Closed ticket is final"
    assert korean(exc) == "문의를 닫힘에서 열림(으)로 옮길 수 없습니다. 닫힌 문의는 되돌릴 수 없습니다."
    reopen = refusal(tickets.reopen, engine, member, ticket.id, "Still broken")
    assert korean(reopen).startswith("상태가 닫힘인 문의는 다시 열 수 없습니다")
    empty = refusal(tickets.open_ticket, engine, member, "Help", "  ")
    assert str(empty) == "Message is required"
    assert korean(empty).endswith(" 항목은 필수입니다.")  # the field's name is the Support page's word for it
    assert_korean(korean(empty))


def test_sign_in_throttling_counts_in_the_language() -> None:
    assert auth.throttled_message(1) == "Too many failed sign-ins. Try again in 1 second."
    assert auth.throttled_message(90) == "Too many failed sign-ins. Try again in 2 minutes."
    assert korean(auth.throttled_message(90)) == "로그인 실패가 너무 많습니다. 2분 후에 다시 시도하세요."


# --- the playground's refusals: limits, access, providers --------------------------------------------


def test_a_spent_budget_and_a_rate_limit_refuse_in_korean_and_stay_english_for_the_api() -> None:
    now = datetime(2026, 12, 15, 12, 0)
    rule = make_rule("user:1", label=_l("the limit on your account"), budget_usd=10.0)
    window = period_window("month", "UTC", now)
    budget = limits._budget_refusal([limits._Budget(rule, window)], {(rule.counter_key, window.key): (12.5, 0)}, now)
    assert budget is not None
    assert budget.message == (
        "Budget spent: $12.50 of $10.00 this month (UTC) (the limit on your account); it resets on 2027-01-01 00:00 UTC"
    )
    assert korean(budget.message) == (
        "예산 소진: 이번 달(UTC) $10.00 중 $12.50(내 계정의 한도). 2027. 1. 1. 오전 12:00 (UTC)에 초기화됩니다."
    )

    rate_rule = make_rule("user:2", label=_l("the limit on {name}", name="Ann"), rpm=1000)
    counter = limits._counter_limits([rate_rule])
    rate = limits._rate_refusal([rate_rule], counter, {"user:2": (1000, 0)}, 12.2)
    assert rate.message == "Rate limit reached: 1,000 requests per minute (the limit on Ann); try again in 13 s"
    assert korean(rate.message) == "속도 제한에 도달했습니다: 분당 요청 1,000회(Ann의 한도). 13초 후에 다시 시도하세요."
    assert_korean(korean(rate.message), "Ann")
    # The API answers with the English text, whatever the language of the thread.
    with i18n.using("ko"):
        body = json.loads(error_response(429, rate.message, "rate_limit_exceeded").body)
    assert body["error"]["message"] == str(rate.message)


def test_provider_errors_read_in_korean_and_survive_redaction() -> None:
    timeout = transport.read_timeout("api.example.com", 30.0, started_answer=False)
    timeout.redact("sk-secret-key-that-is-not-there")
    assert isinstance(timeout.message, Message)
    assert str(timeout) == "No answer from api.example.com within 30 s"
    assert korean(timeout) == "30초 안에 api.example.com에서 응답이 없었습니다."

    large = body_too_large("api.example.com", 8 * 1024 * 1024)
    assert str(large) == (
        "Upstream answer too large: the answer from api.example.com is over 8 MiB (MINDROUTE_UPSTREAM_MAX_BODY_BYTES)"
    )
    assert_korean(korean(large), "api.example.com", "MiB", "MINDROUTE_UPSTREAM_MAX_BODY_BYTES")

    picture = Attachment(kind="image", mime_type="image/png", data=b"\x89PNG", filename="cat.png")
    request = ChatRequest(model="m", messages=[ChatMessage("user", "look", [picture])])
    media = refusal(check_media, request, False, True, True)
    assert isinstance(media, ProviderError)
    assert (str(media), korean(media)) == (
        "This provider does not accept images (cat.png)",
        "이 공급자는 이미지를 받지 않습니다(cat.png).",
    )

    # A provider's own words are data: a redaction that changes them leaves a plain str.
    upstream = ProviderError(_l("Could not reach {host}: {reason}", host="h", reason="sk-abcdefghijklmnopqrstuvwx"))
    upstream.redact("sk-abcdefghijklmnopqrstuvwx")
    assert "sk-abcdefghijklmnopqrstuvwx" not in upstream.message


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_a_refused_playground_call_shows_korean_and_logs_english(engine: Engine) -> None:
    with transaction(engine) as session:
        member = User(email="ann@example.com", name="Ann", password="x")
        provider = Provider(
            name="Fake", protocol="openai", endpoint_url="http://127.0.0.1:9/v1", api_key=None, settings={}
        )
        session.add_all([member, provider])
    with i18n.using("ko"):
        outcome = complete_chat(
            engine,
            member,
            provider.id,
            ChatRequest(model="m", messages=[ChatMessage("user", "hi")]),
            Caller("playground"),
        )
        shown = i18n.text(outcome.error)
    assert outcome.status_code == 403
    assert shown == "Fake에 대한 권한이 없습니다. 관리자에게 요청하세요."
    with transaction(engine) as session:
        stored = session.scalar(select(Log.error_message))
    assert stored == "You have no access to Fake; ask an administrator" and type(stored) is str


# --- what stays English -------------------------------------------------------------------------------


def test_messages_pickle_and_serialise_as_their_english() -> None:
    message = _l("{email} is deactivated: a key for this account would not work", email="ann@example.com")
    with i18n.using("ko"):
        assert json.dumps({"error": message}) == json.dumps({"error": str(message)})
        assert f"{message}" == str(message) == "ann@example.com is deactivated: a key for this account would not work"
        copy = pickle.loads(pickle.dumps(message))
        assert korean(copy) == "ann@example.com 계정은 비활성 상태입니다. 이 계정의 키는 작동하지 않습니다."


def test_the_api_and_the_cli_never_translate() -> None:
    """mindroute/http (the API's error bodies) and mindroute/cli read str() of the services' Messages."""
    for folder in ("mindroute/http", "mindroute/cli"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr == "text":
                    assert not (isinstance(node.value, ast.Name) and node.value.id == "i18n"), path
                if isinstance(node, ast.ImportFrom) and node.module == "mindroute.i18n":
                    assert not {a.name for a in node.names} & {"_", "_n", "text"}, path
