"""The pages where limits and budgets are set, in AppTest: the default and every rule (Limits and budgets), a
user's and their keys' (Users and permissions), a provider's (Providers) and a key owner's own (API keys); the
rows and the audit row after each action, a bad field's message at the field, and who may reach which editor."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from mindroute.db import transaction
from mindroute.errors import PermissionDenied
from mindroute.models import AuditLog, BudgetSpend, Limit, User
from mindroute.services import api_keys, auth, limit_admin, limit_rules
from mindroute.services import providers as provider_svc
from mindroute.services.limit_rules import DEFAULT_TARGET, LimitSettings, key_target, provider_target, user_target
from mindroute.ui.format import tokens
from mindroute.ui.limits_view import looser_than, summary
from tests.pages.helpers import add_user, app_for, click, error_under, markdown_texts, sign_in, texts

LIMITS_PAGE = "pages/admin/limits.py"
USERS_PAGE = "pages/admin/users.py"
PROVIDERS_PAGE = "pages/admin/providers.py"
KEYS_PAGE = "pages/workspace/api_keys.py"
HOSTILE = "![x](http://evil.example/a.png) <b>ci</b>"


# --- helpers ----------------------------------------------------------------------------------


def on_page(engine, monkeypatch, email: str, page: str) -> AppTest:
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def load(engine, email: str) -> User:
    with transaction(engine) as session:
        return session.scalar(select(User).where(User.email == email))


def rule(engine, target: str) -> Limit | None:
    with transaction(engine) as session:
        return session.scalar(select(Limit).where(Limit.target == target))


def audit_rows(engine, target: str) -> list[AuditLog]:
    with transaction(engine) as session:
        stmt = select(AuditLog).where(AuditLog.target_type == "limit", AuditLog.target_id == target)
        return list(session.scalars(stmt.order_by(AuditLog.seq)))


def set_rule(engine, actor: User | None, target: str, **values) -> None:
    with transaction(engine) as session:
        limit_admin.set_limit(session, actor, target, LimitSettings(**values))


def add_key(engine, email: str, name: str) -> uuid.UUID:
    owner = load(engine, email)
    with transaction(engine) as session:
        return api_keys.create_key(session, owner, owner.id, name, None).key.id


def add_provider(engine, name: str) -> uuid.UUID:
    with transaction(engine) as session:
        return provider_svc.create_provider(
            session, None, name=name, protocol="openai-compatible", endpoint_url="http://127.0.0.1:9/v1"
        ).id


def spend(engine, counter_key: str, target: str, usd: float = 0.0, tokens: int = 0) -> None:
    """This period's spend on `counter_key`, as the Logs writer leaves it, for the rule on `target`."""
    with transaction(engine) as session:
        window = limit_admin.settings_for(session, target)
        period_key = limit_rules.period_window(window.period, window.timezone).key
        session.merge(BudgetSpend(target=counter_key, period_key=period_key, spent_usd=usd, tokens=tokens))


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def bars(at: AppTest) -> list[str]:
    """The sentences of the progress bars (what is used of each budget)."""
    found = [el.proto.text for el in _walk(at.main) if getattr(el, "type", None) == "progress"]
    return [re.sub(r"\\(.)", r"\1", text) for text in found]  # Markdown with every special escaped


def fill(at: AppTest, editor: str, **values: str) -> AppTest:
    for name, value in values.items():
        if name == "period":
            at.selectbox(key=f"{editor}_period").set_value(value)
        else:
            at.text_input(key=f"{editor}_{name}").input(value)
    return at


def save(at: AppTest, editor: str) -> AppTest:
    at = click(at, f"{editor}_save")
    assert not at.exception, at.exception
    return at


# --- the words ----------------------------------------------------------------------------------


def test_a_rule_is_summed_up_in_words() -> None:
    assert summary(None) == "No limits"
    assert summary(LimitSettings(rpm=10, budget_usd=25.0, timezone="Asia/Seoul")) == (
        "10 requests/min, $25.00 a month (Asia/Seoul), warn at 80 %"
    )
    assert summary(LimitSettings(tpm=50_000, budget_tokens=2_000_000, period="total", warn_percent=90)) == (
        f"{tokens(50_000)} tokens/min, {tokens(2_000_000)} tokens in total, warn at 90 %"
    )
    both = LimitSettings(budget_usd=5, budget_tokens=1000, period="day")
    assert summary(both) == "$5.00 and 1,000 tokens a day (UTC), warn at 80 %"


def test_an_owner_limit_above_the_administrators_is_named_as_changing_nothing() -> None:
    admin = LimitSettings(rpm=10, budget_usd=20.0)
    assert looser_than(LimitSettings(rpm=20, budget_usd=5.0), admin) == ["requests per minute"]
    assert looser_than(LimitSettings(budget_usd=50.0, period="week"), admin) == []  # other period: no comparison
    assert looser_than(LimitSettings(rpm=5), None) == []


# --- the default, and every rule ----------------------------------------------------------------


def test_admin_sets_the_default_limit_with_its_audit_row(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = on_page(engine, monkeypatch, "admin@example.com", LIMITS_PAGE)
    assert "Now: No limits" in texts(at)
    assert at.button(key="default_limits_remove").disabled  # nothing to remove yet

    fill(at, "default_limits", rpm="10", budget_usd="25", timezone="Asia/Seoul")
    at = save(at, "default_limits")

    shown = texts(at)
    assert "Limits saved." in shown
    assert "Now: 10 requests/min, $25.00 a month (Asia/Seoul), warn at 80 %" in shown
    row = rule(engine, DEFAULT_TARGET)
    assert (row.scope, row.set_by, row.rpm, row.tpm, row.budget_usd, row.budget_tokens) == (
        "default",
        "admin",
        10,
        None,
        25.0,
        None,
    )
    assert (row.period, row.timezone, row.warn_percent) == ("month", "Asia/Seoul", 80)
    [entry] = audit_rows(engine, DEFAULT_TARGET)
    assert entry.action == "limit.set"
    assert entry.actor_user_id == load(engine, "admin@example.com").id
    assert entry.changes["rpm"] == [None, 10] and entry.changes["budget_usd"] == [None, 25.0]
    table = at.dataframe[0].value
    assert list(table["Applies to"]) == ["every user without a rule of their own"]


def test_a_new_rule_starts_in_the_viewers_time_zone(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = app_for(engine, monkeypatch)
    at.context = {"timezone": "Australia/Adelaide"}
    at = sign_in(at.run(), "admin@example.com")
    at.switch_page(LIMITS_PAGE).run()
    assert at.text_input(key="default_limits_timezone").value == "Australia/Adelaide"
    at = save(fill(at, "default_limits", budget_usd="10", period="day"), "default_limits")
    assert rule(engine, DEFAULT_TARGET).timezone == "Australia/Adelaide"


def test_the_form_is_filled_from_the_stored_rule_and_a_change_is_audited_as_before_and_after(
    engine, monkeypatch
) -> None:
    add_user(engine, "admin@example.com", role="admin")
    set_rule(engine, None, DEFAULT_TARGET, rpm=10, budget_usd=25.0, period="week", timezone="Asia/Kolkata")
    at = on_page(engine, monkeypatch, "admin@example.com", LIMITS_PAGE)
    assert at.text_input(key="default_limits_rpm").value == "10"
    assert at.text_input(key="default_limits_budget_usd").value == "25"
    assert at.selectbox(key="default_limits_period").value == "week"
    assert at.text_input(key="default_limits_timezone").value == "Asia/Kolkata"

    at = save(fill(at, "default_limits", rpm="", warn_percent="90"), "default_limits")
    assert "Now: $25.00 a week (Asia/Kolkata), warn at 90 %" in texts(at)
    row = rule(engine, DEFAULT_TARGET)
    assert (row.rpm, row.warn_percent) == (None, 90)
    last = audit_rows(engine, DEFAULT_TARGET)[-1]
    assert last.changes == {"rpm": [10, None], "warn_percent": [80, 90]}


def test_a_save_after_someone_elses_change_is_refused_until_reloaded(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    set_rule(engine, None, DEFAULT_TARGET, rpm=10)
    at = on_page(engine, monkeypatch, "admin@example.com", LIMITS_PAGE)
    set_rule(engine, None, DEFAULT_TARGET, rpm=30)  # another administrator, meanwhile

    at = save(fill(at, "default_limits", tpm="5000"), "default_limits")
    assert "These limits were changed by someone else since you opened them." in texts(at)
    assert "Limits saved." not in texts(at)
    assert (rule(engine, DEFAULT_TARGET).rpm, rule(engine, DEFAULT_TARGET).tpm) == (30, None)  # theirs stays

    at = click(at, "default_limits_reload")
    assert at.text_input(key="default_limits_rpm").value == "30"
    at = save(fill(at, "default_limits", tpm="5000"), "default_limits")
    assert "Limits saved." in texts(at)
    assert (rule(engine, DEFAULT_TARGET).rpm, rule(engine, DEFAULT_TARGET).tpm) == (30, 5000)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rpm", "ten", "Requests per minute"),
        ("tpm", "-5", "Tokens per minute"),
        ("budget_usd", "0", "The budget must be more than $0"),
        ("budget_tokens", "1.5", "The token budget"),
        ("timezone", "Mars/Olympus_Mons", "is not a known time zone"),
        ("warn_percent", "150", "The warning threshold must be a percentage from 1 to 100"),
    ],
)
def test_a_bad_field_shows_its_message_at_the_field_and_nothing_is_saved(
    engine, monkeypatch, field, value, message
) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = on_page(engine, monkeypatch, "admin@example.com", LIMITS_PAGE)
    at = save(fill(at, "default_limits", **{"rpm": "10", field: value}), "default_limits")

    assert message in (error_under(at, f"default_limits_{field}") or "")
    assert "Limits saved." not in texts(at)
    assert rule(engine, DEFAULT_TARGET) is None
    assert audit_rows(engine, DEFAULT_TARGET) == []
    assert at.text_input(key=f"default_limits_{field}").value == value  # kept, so it can be corrected


def test_remove_limits_deletes_the_rule_with_its_audit_row(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    set_rule(engine, None, DEFAULT_TARGET, rpm=10, tpm=1000)
    at = on_page(engine, monkeypatch, "admin@example.com", LIMITS_PAGE)
    assert "Now: 10 requests/min, 1,000 tokens/min" in texts(at)

    at = click(at, "default_limits_remove")
    assert not at.exception, at.exception
    assert "Limits removed." in texts(at)
    assert "Now: No limits" in texts(at)
    assert at.text_input(key="default_limits_rpm").value == ""  # the form refilled from what is stored
    assert rule(engine, DEFAULT_TARGET) is None
    clear = audit_rows(engine, DEFAULT_TARGET)[-1]
    assert clear.action == "limit.clear"
    assert clear.changes["rpm"] == [10, None]


def test_saving_every_field_blank_removes_the_rule(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    set_rule(engine, None, DEFAULT_TARGET, budget_tokens=5000)
    at = on_page(engine, monkeypatch, "admin@example.com", LIMITS_PAGE)
    at = save(fill(at, "default_limits", budget_tokens=""), "default_limits")
    assert "Limits removed: every field was blank." in texts(at)
    assert rule(engine, DEFAULT_TARGET) is None


def test_the_table_of_rules_names_users_keys_and_providers(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "bob@example.com", name=HOSTILE)
    bob = load(engine, "bob@example.com")
    kid = add_key(engine, "bob@example.com", "ci")
    pid = add_provider(engine, "Acme AI")
    set_rule(engine, None, user_target(bob.id), rpm=5)
    set_rule(engine, None, key_target(kid), budget_usd=3.5, period="day")
    set_rule(engine, bob, key_target(kid, owner=True), rpm=2)
    set_rule(engine, None, provider_target(pid), budget_usd=1000.0)

    at = on_page(engine, monkeypatch, "admin@example.com", LIMITS_PAGE)
    table = at.dataframe[0].value
    prefix = api_keys.get_key(engine, bob, kid).prefix
    assert list(table["Kind"]) == ["User", "API key", "API key", "Provider"]
    assert list(table["Applies to"]) == [
        f"bob@example.com ({HOSTILE})",
        f"key ci ({prefix}…) of bob@example.com",
        f"key ci ({prefix}…) of bob@example.com",
        "Acme AI",
    ]
    assert list(table["Set by"]) == ["an administrator", "an administrator", "its owner", "an administrator"]
    assert list(table["Sets"]) == [
        "5 requests/min",
        "$3.50 a day (UTC), warn at 80 %",
        "2 requests/min",
        "$1,000.00 a month (UTC), warn at 80 %",
    ]
    assert not any(HOSTILE in m for m in markdown_texts(at))


@pytest.mark.parametrize("page", [LIMITS_PAGE, USERS_PAGE, PROVIDERS_PAGE])
def test_a_user_cannot_open_the_admin_pages_that_set_limits(engine, monkeypatch, page) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    at = sign_in(app_for(engine, monkeypatch).run(), "user@example.com")
    with pytest.raises(Exception):  # noqa: B017 - AppTest raises for a page outside the navigation
        at.switch_page(page).run()


def test_the_limits_page_refuses_a_user_who_opens_it_directly(engine, monkeypatch) -> None:
    add_user(engine, "user@example.com")
    at = app_for(engine, monkeypatch, LIMITS_PAGE)  # run directly, with the user's session
    with transaction(engine) as session:
        user = session.merge(load(engine, "user@example.com"))
        at.session_state["mindroute_tab_session"] = auth.issue_session(session, user).token
    at.run()
    assert "This page is for administrators." in texts(at)
    assert not [w for w in at.text_input if w.key and w.key.startswith("default_limits")]


# --- a user's page: their rule and their keys' ----------------------------------------------------


def test_admin_sets_a_users_limits_and_their_keys_on_the_users_page(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "bob@example.com")
    bob = load(engine, "bob@example.com")
    kid = add_key(engine, "bob@example.com", "ci")
    set_rule(engine, None, DEFAULT_TARGET, rpm=60)
    set_rule(engine, bob, key_target(kid, owner=True), rpm=3)
    at = on_page(engine, monkeypatch, "admin@example.com", USERS_PAGE)
    at.selectbox(key="users_selected").set_value(str(bob.id))
    at.run()
    assert any("now: 60 requests/min" in c.value for c in at.caption)  # what applies without a rule of their own
    assert "Set by the key's owner: 3 requests/min" in texts(at)

    user_editor = f"user_limits_{bob.id}"
    at = save(fill(at, user_editor, rpm="5", budget_usd="12.50", period="day", timezone="Asia/Kolkata"), user_editor)
    assert "Now: 5 requests/min, $12.50 a day (Asia/Kolkata), warn at 80 %" in texts(at)
    row = rule(engine, user_target(bob.id))
    assert (row.scope, row.user_id, row.rpm, row.budget_usd, row.period) == ("user", bob.id, 5, 12.5, "day")
    assert [a.action for a in audit_rows(engine, user_target(bob.id))] == ["limit.set"]

    key_editor = f"key_limits_{kid}"
    at = save(fill(at, key_editor, budget_tokens="100000", period="total"), key_editor)
    assert f"Now: {tokens(100_000)} tokens in total, warn at 80 %" in texts(at)
    row = rule(engine, key_target(kid))
    assert (row.scope, row.set_by, row.api_key_id, row.budget_tokens) == ("key", "admin", kid, 100_000)
    assert rule(engine, key_target(kid, owner=True)).rpm == 3  # the owner's rule is not the admin's
    [entry] = audit_rows(engine, key_target(kid))
    assert entry.actor_user_id == load(engine, "admin@example.com").id


def test_a_user_without_keys_has_only_their_own_editor(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "bob@example.com")
    bob = load(engine, "bob@example.com")
    at = on_page(engine, monkeypatch, "admin@example.com", USERS_PAGE)
    at.selectbox(key="users_selected").set_value(str(bob.id))
    at.run()
    assert "This user has no API keys." in texts(at)
    assert any("now: No limits" in c.value for c in at.caption)
    assert [w.key for w in at.text_input if w.key and w.key.endswith("_rpm")] == [f"user_limits_{bob.id}_rpm"]


# --- a provider's page --------------------------------------------------------------------------


def test_admin_sets_a_providers_limit_on_its_page(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    pid = add_provider(engine, "Acme AI")
    at = on_page(engine, monkeypatch, "admin@example.com", PROVIDERS_PAGE)
    editor = f"provider_limits_{pid}"
    at = save(fill(at, editor, tpm="200000", budget_usd="1,000"), editor)
    assert f"Now: {tokens(200_000)} tokens/min, $1,000.00 a month (UTC), warn at 80 %" in texts(at)
    row = rule(engine, provider_target(pid))
    assert (row.scope, row.provider_id, row.tpm, row.budget_usd) == ("provider", pid, 200_000, 1000.0)
    assert [a.action for a in audit_rows(engine, provider_target(pid))] == ["limit.set"]


# --- a user's own keys ----------------------------------------------------------------------------


def test_a_user_sets_a_tighter_limit_on_their_own_key_beside_the_admins(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "bob@example.com")
    bob = load(engine, "bob@example.com")
    kid = add_key(engine, "bob@example.com", "ci")
    set_rule(engine, None, key_target(kid), rpm=10, budget_usd=20.0)
    at = on_page(engine, monkeypatch, "bob@example.com", KEYS_PAGE)
    assert "Set by an administrator: 10 requests/min, $20.00 a month (UTC), warn at 80 %" in texts(at)

    editor = f"own_key_limits_{kid}"
    at = save(fill(at, editor, rpm="20", budget_usd="5"), editor)
    shown = texts(at)
    assert "Limits saved." in shown
    assert "Now: 20 requests/min, $5.00 a month (UTC), warn at 80 %" in shown
    assert "Above the administrator's limit, so theirs applies: requests per minute." in shown
    row = rule(engine, key_target(kid, owner=True))
    assert (row.scope, row.set_by, row.api_key_id, row.user_id, row.rpm) == ("key", "owner", kid, bob.id, 20)
    admin_rule = rule(engine, key_target(kid))
    assert (admin_rule.rpm, admin_rule.budget_usd) == (10, 20.0)  # read-only here
    [entry] = audit_rows(engine, key_target(kid, owner=True))
    assert (entry.action, entry.actor_user_id) == ("limit.set", bob.id)

    at = click(at, f"{editor}_remove")
    assert rule(engine, key_target(kid, owner=True)) is None
    assert rule(engine, key_target(kid)) is not None  # the admin's stays
    assert [a.action for a in audit_rows(engine, key_target(kid, owner=True))] == ["limit.set", "limit.clear"]


def test_a_user_can_set_owner_limits_on_their_own_keys_only(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "bob@example.com")
    add_user(engine, "eve@example.com")
    bobs = add_key(engine, "bob@example.com", "ci")
    eves = add_key(engine, "eve@example.com", "mine")
    at = on_page(engine, monkeypatch, "eve@example.com", KEYS_PAGE)
    assert at.selectbox(key="my_key_selected").options == [
        f"mine · {api_keys.get_key(engine, load(engine, 'eve@example.com'), eves).prefix}… · active"
    ]
    assert not [w for w in at.text_input if w.key and str(bobs) in w.key]  # no editor for another's key
    assert [w.key for w in at.text_input if w.key and w.key.endswith("_rpm")] == [f"own_key_limits_{eves}_rpm"]

    eve = load(engine, "eve@example.com")
    with pytest.raises(PermissionDenied):
        set_rule(engine, eve, key_target(bobs, owner=True), rpm=1)
    with pytest.raises(PermissionDenied):
        set_rule(engine, eve, key_target(bobs), rpm=1)  # nor the administrator's rule on it
    with pytest.raises(PermissionDenied):
        set_rule(engine, eve, key_target(eves), rpm=1)  # nor on her own key
    assert rule(engine, key_target(bobs, owner=True)) is None and rule(engine, key_target(bobs)) is None


# --- what has been spent, beside each rule --------------------------------------------------------


def test_each_page_shows_what_has_been_spent_of_its_budgets(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "bob@example.com")
    bob = load(engine, "bob@example.com")
    kid = add_key(engine, "bob@example.com", "ci")
    pid = add_provider(engine, "Acme AI")
    set_rule(engine, None, key_target(kid), budget_usd=10.0, period="total")
    set_rule(engine, None, provider_target(pid), budget_tokens=1_000_000, period="total")
    spend(engine, key_target(kid), key_target(kid), usd=3.2, tokens=900)
    spend(engine, provider_target(pid), provider_target(pid), tokens=250_000)

    at = on_page(engine, monkeypatch, "bob@example.com", KEYS_PAGE)
    assert bars(at) == ["$3.20 of $10.00 in total"]

    at = on_page(engine, monkeypatch, "admin@example.com", PROVIDERS_PAGE)
    assert bars(at) == [f"{tokens(250_000)} of {tokens(1_000_000)} tokens in total"]

    at.switch_page(USERS_PAGE).run()
    at.selectbox(key="users_selected").set_value(str(bob.id))
    at.run()
    assert not at.exception, at.exception
    assert bars(at) == ["$3.20 of $10.00 in total"]


def test_without_a_budget_the_pages_say_so(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "bob@example.com")
    add_key(engine, "bob@example.com", "ci")
    add_provider(engine, "Acme AI")
    at = on_page(engine, monkeypatch, "bob@example.com", KEYS_PAGE)
    assert bars(at) == []
    assert "No budget is set on this key." in [c.value for c in at.caption]
    at = on_page(engine, monkeypatch, "admin@example.com", PROVIDERS_PAGE)
    assert any(c.value.startswith("No budget is set on this provider") for c in at.caption)


def test_admin_sets_a_keys_limit_from_the_all_keys_tab(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "bob@example.com")
    bob = load(engine, "bob@example.com")
    kid = add_key(engine, "bob@example.com", "ci")
    set_rule(engine, bob, key_target(kid, owner=True), rpm=3)
    at = on_page(engine, monkeypatch, "admin@example.com", KEYS_PAGE)
    assert "Set by its owner: 3 requests/min" in texts(at)
    editor = f"key_limits_{kid}"
    at = save(fill(at, editor, rpm="100", budget_usd="50", period="week"), editor)
    assert "Now: 100 requests/min, $50.00 a week (UTC), warn at 80 %" in texts(at)
    row = rule(engine, key_target(kid))
    assert (row.set_by, row.rpm, row.budget_usd, row.period) == ("admin", 100, 50.0, "week")
    assert rule(engine, key_target(kid, owner=True)).rpm == 3
