"""The admin console's services on SQLite and PostgreSQL: providers, users, permissions and the access policy."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mindroute import security
from mindroute.config import get_settings
from mindroute.db import transaction
from mindroute.errors import ConflictError, NotFound, PermissionDenied
from mindroute.models import ApiKey, Log, Provider, RefreshToken, Ticket, User, UserProvider, utcnow
from mindroute.provider_settings import SettingsError, settings_json
from mindroute.providers.registry import DEFAULT_ENDPOINTS
from mindroute.services import admin_users, permissions, providers
from mindroute.services.admin_users import LAST_ADMIN_MESSAGE, UserFilter
from mindroute.services.users import create_user
from mindroute.validation import (
    FieldChecks,
    FormValidationError,
    ValidationError,
    validate_name,
    validate_optional_positive_int,
)

PASSWORD = "correct horse battery"
# bcrypt costs ~0.25 s a hash: users are inserted with this one precomputed hash.
PASSWORD_HASH = security.hash_password(PASSWORD)
OPENAI_KEY = "sk-proj-SECRETsecret0123456789abcdWXYZ"


# --- helpers --------------------------------------------------------------------------------


def add_user(
    session: Session,
    email: str,
    *,
    role: str = "user",
    name: str | None = None,
    active: bool = True,
    last_login: datetime | None = None,
    created_at: datetime | None = None,
) -> User:
    user = User(
        email=email,
        name=name or email.split("@")[0].title(),
        role=role,
        is_active=active,
        password=PASSWORD_HASH,
        last_login=last_login,
    )
    if created_at is not None:
        user.created_at = created_at
    session.add(user)
    session.flush()
    return user


HELPER_KEY = "sk-helper-000000000000000000000000"


def add_provider(session: Session, admin: User, name: str = "OpenAI", **fields: Any) -> providers.ProviderView:
    fields.setdefault("protocol", "openai")
    if providers.needs_key(fields["protocol"]) and fields.get("is_active", True):
        fields.setdefault("api_key", HELPER_KEY)  # an active OpenAI, Anthropic or Gemini provider needs one
    return providers.create_provider(session, admin, name=name, **fields)


def count(engine, model: type) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def add_token(session: Session, user: User) -> RefreshToken:
    token = RefreshToken(
        user_id=user.id, token=security.digest(uuid.uuid4().hex), expires_at=utcnow() + timedelta(days=7)
    )
    session.add(token)
    session.flush()
    return token


def revoked_flags(engine, user_id: uuid.UUID) -> list[bool]:
    with transaction(engine) as session:
        return list(session.scalars(select(RefreshToken.is_revoked).where(RefreshToken.user_id == user_id)))


@pytest.fixture
def people(engine) -> SimpleNamespace:
    """One active admin and one ordinary user."""
    with transaction(engine) as session:
        return SimpleNamespace(
            admin=add_user(session, "admin@example.com", role="admin", name="Admin"),
            user=add_user(session, "user@example.com", name="Ordinary User"),
        )


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `call` in another thread (its own transaction); the outcome lands in the dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# --- providers: create, keys, validation ----------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "google", "openai-compatible"])
def test_blank_endpoint_gets_the_protocols_default(engine, people, protocol) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin, name=f"P {protocol}", protocol=protocol, endpoint_url="  ")
    assert view.endpoint_url == DEFAULT_ENDPOINTS[protocol]
    # Active with no key only where the protocol allows calls without one (issue 13, item 14).
    assert view.protocol == protocol and view.is_active and view.has_key == providers.needs_key(protocol)
    assert view.settings == {"models": [], "default_model": None, "prices": {}}


def test_provider_key_is_stored_encrypted_never_in_plaintext(engine, people) -> None:
    with transaction(engine) as session:
        add_provider(session, people.admin, api_key=OPENAI_KEY)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT apikey FROM providers")).scalar_one()
    assert OPENAI_KEY not in stored and OPENAI_KEY[-12:] not in stored
    assert security.SecretBox(get_settings().secret_keys).decrypt(stored) == OPENAI_KEY


def test_provider_view_shows_only_the_last_four_characters(engine, people) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin, api_key=OPENAI_KEY)
    with engine.connect() as conn:
        ciphertext = conn.execute(text("SELECT apikey FROM providers")).scalar_one()
    assert view.has_key and view.masked_key == "••••WXYZ"
    for shown in (repr(view), str(view), repr(view.form_values())):
        assert OPENAI_KEY not in shown and ciphertext not in shown and "SECRET" not in shown
    with transaction(engine) as session:
        listed = providers.list_providers(session, people.admin)
    assert [p.masked_key for p in listed] == ["••••WXYZ"]
    assert OPENAI_KEY not in repr(listed)


def test_blank_key_on_update_keeps_the_stored_key_and_clear_removes_it(engine, people) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin, api_key=OPENAI_KEY)
    with transaction(engine) as session:
        view = providers.update_provider(
            session, people.admin, view.id, expected_updated_at=view.updated_at, api_key="", **view.form_values()
        )
    assert view.masked_key == "••••WXYZ"
    with transaction(engine) as session:
        view = providers.update_provider(
            session,
            people.admin,
            view.id,
            expected_updated_at=view.updated_at,
            api_key="sk-new-key-000000000000009876",
            **view.form_values(),
        )
    assert view.masked_key == "••••9876"
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        providers.update_provider(
            session,
            people.admin,
            view.id,
            expected_updated_at=view.updated_at,
            api_key="sk-another-00000000000001111",
            clear_api_key=True,
            **view.form_values(),
        )
    assert err.value.field == "api_key"
    with transaction(engine) as session:
        view = providers.update_provider(
            session,
            people.admin,
            view.id,
            expected_updated_at=view.updated_at,
            clear_api_key=True,
            **{**view.form_values(), "is_active": False},  # an active OpenAI provider keeps a key (item 14)
        )
    assert not view.has_key and view.masked_key == ""
    with engine.connect() as conn:
        assert conn.execute(text("SELECT apikey FROM providers")).scalar_one() is None


def test_key_with_a_line_break_is_refused_without_repeating_it(engine, people) -> None:
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        add_provider(session, people.admin, api_key="sk-pasted\nkey-0000000000")
    assert err.value.field == "api_key" and "sk-pasted" not in err.value.message
    assert count(engine, Provider) == 0


def test_duplicate_provider_name_is_refused_in_any_case_and_nothing_is_written(engine, people) -> None:
    with transaction(engine) as session:
        add_provider(session, people.admin, name="OpenAI")
        other = add_provider(session, people.admin, name="Local")
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        add_provider(session, people.admin, name=" openai ", api_key=OPENAI_KEY)
    assert err.value.field == "name" and err.value.message == "A provider named 'openai' already exists"
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        providers.update_provider(
            session,
            people.admin,
            other.id,
            expected_updated_at=other.updated_at,
            **{**other.form_values(), "name": "OPENAI", "max_tokens": 5},
        )
    assert err.value.field == "name"
    with transaction(engine) as session:
        assert sorted(p.name for p in providers.list_providers(session, people.admin)) == ["Local", "OpenAI"]
        assert providers.get_provider(session, people.admin, other.id).max_tokens is None


@pytest.mark.parametrize(
    "url", ["ftp://files.example.com", "not a url", "https://user:pw@api.example.com", "http://", "//api.example.com"]
)
def test_malformed_endpoint_url_is_refused(engine, people, url) -> None:
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        add_provider(session, people.admin, endpoint_url=url)
    assert err.value.field == "endpoint_url"
    assert count(engine, Provider) == 0


def test_unknown_protocol_is_refused(engine, people) -> None:
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        add_provider(session, people.admin, protocol="smtp")
    assert err.value.field == "protocol" and "openai-compatible" in err.value.message
    assert count(engine, Provider) == 0


@pytest.mark.parametrize("bad", [-5, 0, "abc", 1.5, "12.5", True, 2**40])
def test_negative_or_non_integer_max_tokens_is_refused(engine, people, bad) -> None:
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        add_provider(session, people.admin, max_tokens=bad)
    assert err.value.field == "max_tokens"
    assert count(engine, Provider) == 0


def test_max_tokens_typed_as_text_is_stored_as_a_number(engine, people) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin, max_tokens=" 4096 ")
    assert view.max_tokens == 4096


def test_a_flag_must_be_a_real_boolean(engine, people) -> None:
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        add_provider(session, people.admin, allow_images="false")
    assert err.value.field == "allow_images"


def test_an_undecryptable_key_is_flagged_not_fatal(engine, people) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin, api_key=OPENAI_KEY)
    with engine.begin() as conn:
        conn.execute(text("UPDATE providers SET apikey = 'gAAAAABtampered'"))
    with transaction(engine) as session:
        shown = providers.get_provider(session, people.admin, view.id)
    assert shown.masked_key == providers.UNDECRYPTABLE_KEY_MASK and "MINDROUTE_SECRET_KEY" in shown.key_problem
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        providers.provider_connection(session, people.admin, view.id)
    assert err.value.field == "api_key"


# --- providers: settings --------------------------------------------------------------------


def test_settings_are_saved_in_the_documented_shape(engine, people) -> None:
    settings = {
        "models": ["gpt-4o", " gpt-4o-mini ", "gpt-4o"],
        "default_model": "gpt-4o-mini",
        "prices": {"gpt-4o": {"input": 2.5, "output": 10}, "gpt-3.5-turbo": {"input": 0, "output": 1.5}},
    }
    with transaction(engine) as session:
        view = add_provider(session, people.admin, settings=settings)
    assert view.settings == {
        "models": ["gpt-4o", "gpt-4o-mini"],
        "default_model": "gpt-4o-mini",
        "prices": {"gpt-4o": {"input": 2.5, "output": 10.0}, "gpt-3.5-turbo": {"input": 0.0, "output": 1.5}},
    }
    with engine.connect() as conn:
        raw = conn.execute(select(Provider.settings)).scalar_one()
    assert raw == view.settings


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ([], "settings"),
        ({"model": ["gpt-4o"]}, "settings"),
        ({"models": "gpt-4o"}, "settings.models"),
        ({"models": ["gpt-4o", ""]}, "settings.models"),
        ({"models": ["gpt-4o", 7]}, "settings.models"),
        ({"models": ["x" * 101]}, "settings.models"),
        ({"models": ["gpt-4o"], "default_model": "gpt-5"}, "settings.default_model"),
        ({"prices": ["gpt-4o", 1]}, "settings.prices"),
        ({"prices": {"gpt-4o": 2.5}}, "settings.prices.gpt-4o"),
        ({"prices": {"gpt-4o": {"input": -1, "output": 1}}}, "settings.prices.gpt-4o.input"),
        ({"prices": {"gpt-4o": {"input": "2.5", "output": 1}}}, "settings.prices.gpt-4o.input"),
        ({"prices": {"gpt-4o": {"input": True, "output": 1}}}, "settings.prices.gpt-4o.input"),
        ({"prices": {"gpt-4o": {"input": 1}}}, "settings.prices.gpt-4o.output"),
        ({"prices": {"gpt-4o": {"input": 1, "output": 2, "cached": 0.5}}}, "settings.prices.gpt-4o"),
    ],
)
def test_bad_settings_are_refused_at_their_field(engine, people, settings, field) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin)
    with pytest.raises(SettingsError) as err, transaction(engine) as session:
        providers.update_provider_settings(
            session, people.admin, view.id, settings, expected_updated_at=view.updated_at
        )
    assert err.value.field == field and field in err.value.problems
    with transaction(engine) as session:
        assert providers.get_provider(session, people.admin, view.id).updated_at == view.updated_at


def test_every_settings_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as err:
        providers.validate_settings(
            {"models": ["a"], "default_model": "b", "prices": {"a": {"input": -1, "output": "x"}}, "extra": 1}
        )
    assert set(err.value.problems) == {
        "settings",
        "settings.default_model",
        "settings.prices.a.input",
        "settings.prices.a.output",
    }
    assert "(and 3 more problems)" in err.value.message


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ('{"models": ["gpt-4o",]}', "line 1, column 22"),
        ('{\n  "models": ["gpt-4o"]\n  "prices": {}\n}', "line 3, column 3"),
        ('{"prices": {"gpt-4o": {"input": NaN, "output": 1}}}', "NaN"),
        ("[1, 2", "line 1"),
    ],
)
def test_invalid_raw_json_is_refused_with_where_it_goes_wrong(engine, people, raw, where) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin, settings={"models": ["keep-me"]})
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        providers.update_provider_settings_json(
            session, people.admin, view.id, raw, expected_updated_at=view.updated_at
        )
    assert err.value.field == "settings" and where in err.value.message
    with transaction(engine) as session:
        assert providers.get_provider(session, people.admin, view.id).models == ["keep-me"]


def test_raw_json_that_parses_is_validated_and_saved(engine, people) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin)
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        providers.update_provider_settings_json(
            session,
            people.admin,
            view.id,
            '{"models": ["a"], "default_model": "b"}',
            expected_updated_at=view.updated_at,
        )
    assert err.value.field == "settings.default_model"
    text_in = '{"models": ["a", "b"], "default_model": "b", "prices": {"a": {"input": 1, "output": 2}}}'
    with transaction(engine) as session:
        saved = providers.update_provider_settings_json(
            session, people.admin, view.id, text_in, expected_updated_at=view.updated_at
        )
    assert saved.models == ["a", "b"] and saved.default_model == "b"
    assert providers.parse_settings_json(settings_json(saved.settings)) == saved.settings


def test_settings_with_fetched_models_keep_prices_and_drop_a_vanished_default() -> None:
    current = {"models": ["old"], "default_model": "old", "prices": {"old": {"input": 1, "output": 2}}}
    fresh = providers.settings_with_models(current, ["new-a", "new-b"])
    assert fresh == {
        "models": ["new-a", "new-b"],
        "default_model": None,
        "prices": {"old": {"input": 1.0, "output": 2.0}},
    }
    assert providers.settings_with_models(current, ["old", "x"])["default_model"] == "old"


# --- providers: concurrency, deactivate, delete ---------------------------------------------


def test_saving_over_a_newer_version_is_refused_and_writes_nothing(engine, people) -> None:
    with transaction(engine) as session:
        loaded = add_provider(session, people.admin, max_tokens=100)
    with transaction(engine) as session:  # the other admin saves first
        providers.update_provider(
            session,
            people.admin,
            loaded.id,
            expected_updated_at=loaded.updated_at,
            **{**loaded.form_values(), "max_tokens": 200},
        )
    with pytest.raises(ConflictError), transaction(engine) as session:
        providers.update_provider(
            session,
            people.admin,
            loaded.id,
            expected_updated_at=loaded.updated_at,
            **{**loaded.form_values(), "allow_files": True},
        )
    with pytest.raises(ConflictError), transaction(engine) as session:
        providers.update_provider_settings(
            session, people.admin, loaded.id, {"models": ["x"]}, expected_updated_at=loaded.updated_at
        )
    with transaction(engine) as session:
        now = providers.get_provider(session, people.admin, loaded.id)
    assert now.max_tokens == 200 and not now.allow_files and now.models == []
    assert now.updated_at > loaded.updated_at


def test_two_saves_at_the_same_moment_cannot_both_win(engine, people) -> None:
    with transaction(engine) as session:
        loaded = add_provider(session, people.admin)
    first = Session(engine, expire_on_commit=False)
    first.begin()
    providers.update_provider(
        first,
        people.admin,
        loaded.id,
        expected_updated_at=loaded.updated_at,
        **{**loaded.form_values(), "max_tokens": 1},
    )

    def second_save() -> providers.ProviderView:
        with transaction(engine) as session:
            return providers.update_provider(
                session,
                people.admin,
                loaded.id,
                expected_updated_at=loaded.updated_at,
                **{**loaded.form_values(), "max_tokens": 2},
            )

    thread, outcome = in_thread(second_save)
    time.sleep(0.5)
    assert thread.is_alive(), "the second save must wait for the first one's transaction"
    first.commit()
    first.close()
    thread.join(15)
    assert isinstance(outcome.get("error"), ConflictError)
    with transaction(engine) as session:
        assert providers.get_provider(session, people.admin, loaded.id).max_tokens == 1


def test_an_aware_expected_timestamp_is_compared_as_utc(engine, people) -> None:
    from datetime import UTC

    with transaction(engine) as session:
        loaded = add_provider(session, people.admin)
    aware = loaded.updated_at.replace(tzinfo=UTC)
    with transaction(engine) as session:
        saved = providers.set_provider_active(session, people.admin, loaded.id, False)
        assert not saved.is_active
    with pytest.raises(ConflictError), transaction(engine) as session:
        providers.update_provider_settings(session, people.admin, loaded.id, {}, expected_updated_at=aware)


def test_deactivated_provider_keeps_its_history_and_refuses_calls(engine, people) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin)
        session.add(Log(provider_id=view.id, user_id=people.admin.id, request_type="chat"))
    with transaction(engine) as session:
        assert not providers.set_provider_active(session, people.admin, view.id, False).is_active
        decision = permissions.check_access(session, people.admin, view.id, None)
    assert not decision.allowed and "deactivated" in decision.reason
    assert count(engine, Log) == 1


def test_delete_provider_says_how_many_logs_lose_their_link_then_unlinks_them(engine, people) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin)
        kept = add_provider(session, people.admin, name="Kept")
        for _ in range(3):
            session.add(Log(provider_id=view.id, user_id=people.user.id, request_type="chat", model_id="gpt-4o"))
        session.add(Log(provider_id=kept.id, user_id=people.user.id, request_type="chat"))
        session.add(UserProvider(user_id=people.user.id, provider_id=view.id))
    with transaction(engine) as session:
        assert providers.provider_log_count(session, people.admin, view.id) == 3
    with transaction(engine) as session:
        assert providers.delete_provider(session, people.admin, view.id) == 3
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Log).where(Log.provider_id.is_(None))) == 3
        assert session.scalar(select(func.count()).select_from(Log)) == 4
        assert session.scalar(select(func.count()).select_from(UserProvider)) == 0
        with pytest.raises(NotFound):
            providers.get_provider(session, people.admin, view.id)


# --- who may change things ------------------------------------------------------------------


def _admin_only_calls(ids: SimpleNamespace) -> list[tuple[str, Callable[[Session, User], Any]]]:
    form = {
        "name": "X",
        "protocol": "openai",
        "endpoint_url": "",
        "allow_images": False,
        "allow_videos": False,
        "allow_files": False,
        "max_tokens": None,
        "is_active": True,
    }
    return [
        ("create_provider", lambda s, a: providers.create_provider(s, a, name="X", protocol="openai")),
        (
            "update_provider",
            lambda s, a: providers.update_provider(s, a, ids.provider, expected_updated_at=ids.stamp, **form),
        ),
        (
            "update_provider_settings",
            lambda s, a: providers.update_provider_settings(s, a, ids.provider, {}, expected_updated_at=ids.stamp),
        ),
        (
            "update_provider_settings_json",
            lambda s, a: providers.update_provider_settings_json(
                s, a, ids.provider, "{}", expected_updated_at=ids.stamp
            ),
        ),
        ("set_provider_active", lambda s, a: providers.set_provider_active(s, a, ids.provider, False)),
        ("delete_provider", lambda s, a: providers.delete_provider(s, a, ids.provider)),
        ("provider_connection", lambda s, a: providers.provider_connection(s, a, ids.provider)),
        ("provider_log_count", lambda s, a: providers.provider_log_count(s, a, ids.provider)),
        ("list_providers", lambda s, a: providers.list_providers(s, a)),
        ("get_provider", lambda s, a: providers.get_provider(s, a, ids.provider)),
        ("create_user", lambda s, a: create_user(s, a, email="n@example.com", name="N", password=PASSWORD)),
        ("list_users", lambda s, a: admin_users.list_users(s, a)),
        ("get_user", lambda s, a: admin_users.get_user(s, a, ids.target)),
        ("update_user", lambda s, a: admin_users.update_user(s, a, ids.target, name="New")),
        ("set_user_active", lambda s, a: admin_users.set_user_active(s, a, ids.target, False)),
        ("set_user_password", lambda s, a: admin_users.set_user_password(s, a, ids.target, "another password")),
        ("user_deletion_impact", lambda s, a: admin_users.user_deletion_impact(s, a, ids.target)),
        ("delete_user", lambda s, a: admin_users.delete_user(s, a, ids.target)),
        ("user_grants", lambda s, a: permissions.user_grants(s, a, ids.target)),
        ("set_grant", lambda s, a: permissions.set_grant(s, a, ids.target, ids.provider, allowed=True)),
        (
            "set_provider_access",
            lambda s, a: permissions.set_provider_access(s, a, ids.provider, allowed=True, matching=UserFilter()),
        ),
        ("permission_matrix", lambda s, a: permissions.permission_matrix(s, a)),
    ]


@pytest.mark.parametrize("call_name", [name for name, _ in _admin_only_calls(SimpleNamespace())])
def test_non_admin_is_refused_every_admin_service(engine, people, call_name) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin)
        target = add_user(session, "target@example.com")
        retired = add_user(session, "retired@example.com", role="admin", active=False)
    ids = SimpleNamespace(provider=view.id, stamp=view.updated_at, target=target.id)
    call = dict(_admin_only_calls(ids))[call_name]
    for actor in (people.user, retired):
        with pytest.raises(PermissionDenied), transaction(engine) as session:
            call(session, actor)
    with transaction(engine) as session:
        assert providers.get_provider(session, people.admin, view.id) == view
        assert admin_users.get_user(session, people.admin, target.id).name == "Target"
        assert session.scalar(select(func.count()).select_from(User)) == 4
        assert session.scalar(select(func.count()).select_from(UserProvider)) == 0


# --- users: list, search, sort, paginate ----------------------------------------------------


def _seed_directory(session: Session) -> list[User]:
    base = datetime(2026, 1, 1)
    users = []
    for n in range(1, 24):
        users.append(
            add_user(
                session,
                f"member{n:02d}@example.com",
                name=f"Member {n:02d}",
                role="admin" if n % 5 == 0 else "user",
                active=n % 4 != 0,
                last_login=None if n % 3 == 0 else base + timedelta(hours=n * 7 % 23),
                created_at=base - timedelta(days=n),
            )
        )
    users.append(add_user(session, "ada@lovelace.org", name="Ada LOVELACE", created_at=base))
    users.append(add_user(session, "percent@example.com", name="100% Sure", created_at=base))
    users.append(add_user(session, "under@example.com", name="snake_case", created_at=base))
    return users


def test_search_is_case_insensitive_on_email_and_name(engine) -> None:
    with transaction(engine) as session:
        _seed_directory(session)
        found = admin_users.list_users(session, None, UserFilter(search="LoveLace"))
        assert [r.email for r in found.rows] == ["ada@lovelace.org"] and found.total == 1
        assert admin_users.list_users(session, None, UserFilter(search="ADA@")).total == 1
        assert admin_users.list_users(session, None, UserFilter(search="member 1")).total == 10
        # LIKE's wildcards typed in the search box are matched literally.
        assert [r.name for r in admin_users.list_users(session, None, UserFilter(search="%")).rows] == ["100% Sure"]
        assert [r.name for r in admin_users.list_users(session, None, UserFilter(search="_")).rows] == ["snake_case"]
        assert admin_users.list_users(session, None, UserFilter(search="nobody")).rows == []


def test_filters_by_role_and_active_combine_with_search(engine) -> None:
    with transaction(engine) as session:
        _seed_directory(session)
        admins = admin_users.list_users(session, None, UserFilter(role="admin"))
        assert {r.email for r in admins.rows} == {f"member{n:02d}@example.com" for n in (5, 10, 15, 20)}
        inactive_admins = admin_users.list_users(
            session, None, UserFilter(search="member", role="admin", is_active=False)
        )
        assert [r.email for r in inactive_admins.rows] == ["member20@example.com"]
        with pytest.raises(ValidationError) as err:
            admin_users.list_users(session, None, UserFilter(role="root"))
        assert err.value.field == "role"


def _expected_order(users: list[User], sort: str, descending: bool) -> list[str]:
    present = [u for u in users if getattr(u, sort) is not None]
    missing = [u for u in users if getattr(u, sort) is None]
    present.sort(key=lambda u: (getattr(u, sort), u.id), reverse=descending)
    missing.sort(key=lambda u: u.id, reverse=descending)
    return [u.email for u in present + missing]  # never-signed-in users last, both ways


@pytest.mark.parametrize("sort", admin_users.SORT_COLUMNS)
@pytest.mark.parametrize("descending", [False, True])
def test_every_column_sorts_both_ways_across_pages(engine, sort, descending) -> None:
    with transaction(engine) as session:
        users = _seed_directory(session)
        expected = _expected_order(users, sort, descending)
        seen: list[str] = []
        for page in (1, 2, 3):
            result = admin_users.list_users(session, None, sort=sort, descending=descending, page=page, page_size=10)
            assert result.total == 26 and result.pages == 3
            seen.extend(r.email for r in result.rows)
    assert seen == expected


def test_pages_are_clamped_and_an_unknown_sort_is_refused(engine) -> None:
    with transaction(engine) as session:
        _seed_directory(session)
        last = admin_users.list_users(session, None, page=99, page_size=10)
        assert last.page == 3 and len(last.rows) == 6
        assert admin_users.list_users(session, None, page=0, page_size=10).page == 1
        with pytest.raises(ValidationError) as err:
            admin_users.list_users(session, None, sort="password")
        assert err.value.field == "sort"


def test_user_rows_never_carry_the_password_hash(engine, people) -> None:
    with transaction(engine) as session:
        page = admin_users.list_users(session, people.admin)
    assert PASSWORD_HASH not in repr(page)
    assert not hasattr(page.rows[0], "password")


# --- users: create and edit -----------------------------------------------------------------


def test_admin_creates_a_user_through_create_user(engine, people) -> None:
    with transaction(engine) as session:
        created = create_user(session, people.admin, email="New@Example.com", name="New Person", password=PASSWORD)
    with transaction(engine) as session:
        row = admin_users.get_user(session, people.admin, created.id)
    assert row.email == "new@example.com" and row.role == "user" and row.is_active
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        create_user(session, people.admin, email="NEW@example.com", name="Again", password=PASSWORD)
    assert err.value.field == "email"


def test_edit_name_and_role(engine, people) -> None:
    with transaction(engine) as session:
        row = admin_users.update_user(session, people.admin, people.user.id, name="  Grace Hopper ", role="admin")
    assert row.name == "Grace Hopper" and row.role == "admin" and row.updated_at > people.user.updated_at
    for bad, field in (({"role": "root"}, "role"), ({"name": "  "}, "name"), ({"name": "x" * 101}, "name")):
        with pytest.raises(ValidationError) as err, transaction(engine) as session:
            admin_users.update_user(session, people.admin, people.user.id, **bad)
        assert err.value.field == field
    with transaction(engine) as session:
        assert admin_users.get_user(session, people.admin, people.user.id).name == "Grace Hopper"


def test_edits_of_different_fields_both_survive_and_a_stale_form_is_refused(engine, people) -> None:
    loaded = people.user.updated_at
    with transaction(engine) as session:
        admin_users.update_user(session, people.admin, people.user.id, name="Renamed")
    with transaction(engine) as session:
        admin_users.update_user(session, people.admin, people.user.id, role="admin")
    with transaction(engine) as session:
        row = admin_users.get_user(session, people.admin, people.user.id)
    assert (row.name, row.role) == ("Renamed", "admin")
    with pytest.raises(ConflictError), transaction(engine) as session:
        admin_users.update_user(session, people.admin, people.user.id, name="Stale", expected_updated_at=loaded)
    with transaction(engine) as session:
        fresh = admin_users.update_user(
            session, people.admin, people.user.id, name="Fresh", expected_updated_at=row.updated_at
        )
    assert fresh.name == "Fresh"


def test_unknown_user_is_not_found(engine, people) -> None:
    with pytest.raises(NotFound), transaction(engine) as session:
        admin_users.update_user(session, people.admin, uuid.uuid4(), name="Ghost")


# --- users: the guards ----------------------------------------------------------------------


def test_admin_cannot_demote_deactivate_or_delete_themselves(engine, people) -> None:
    with transaction(engine) as session:
        add_user(session, "second@example.com", role="admin")
    me = people.admin
    refusals = [
        ("role", lambda s: admin_users.update_user(s, me, me.id, role="user")),
        ("is_active", lambda s: admin_users.set_user_active(s, me, me.id, False)),
        ("user", lambda s: admin_users.delete_user(s, me, me.id)),
    ]
    for field, call in refusals:
        with pytest.raises(ValidationError) as err, transaction(engine) as session:
            call(session)
        assert err.value.field == field and "your own" in err.value.message
    with transaction(engine) as session:
        row = admin_users.get_user(session, me, me.id)
        assert row.role == "admin" and row.is_active
        # Renaming oneself is fine.
        assert admin_users.update_user(session, me, me.id, name="Still Admin", role="admin").name == "Still Admin"


@pytest.mark.parametrize(
    ("field", "remove"),
    [
        ("role", lambda s, uid: admin_users.update_user(s, None, uid, role="user")),
        ("is_active", lambda s, uid: admin_users.set_user_active(s, None, uid, False)),
        ("user", lambda s, uid: admin_users.delete_user(s, None, uid)),
    ],
)
def test_the_last_active_admin_cannot_be_removed_by_any_path(engine, field, remove) -> None:
    with transaction(engine) as session:
        last = add_user(session, "last@example.com", role="admin")
        add_user(session, "retired@example.com", role="admin", active=False)  # does not count
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        remove(session, last.id)
    assert err.value.field == field and err.value.message == LAST_ADMIN_MESSAGE
    with transaction(engine) as session:
        row = admin_users.get_user(session, None, last.id)
        assert row.role == "admin" and row.is_active
    with transaction(engine) as session:  # with a second active admin, the same change is fine
        add_user(session, "another@example.com", role="admin")
    with transaction(engine) as session:
        remove(session, last.id)


def test_two_admins_demoting_each_other_at_once_leave_one_admin(engine) -> None:
    with transaction(engine) as session:
        alice = add_user(session, "alice@example.com", role="admin")
        bob = add_user(session, "bob@example.com", role="admin")
    first = Session(engine, expire_on_commit=False)
    first.begin()
    admin_users.update_user(first, alice, bob.id, role="user")

    def bob_demotes_alice() -> None:
        with transaction(engine) as session:
            admin_users.update_user(session, bob, alice.id, role="user")

    thread, outcome = in_thread(bob_demotes_alice)
    time.sleep(0.5)
    assert thread.is_alive(), "the second demotion must wait for the first one's transaction"
    first.commit()
    first.close()
    thread.join(15)
    error = outcome.get("error")
    assert isinstance(error, ValidationError) and error.message == LAST_ADMIN_MESSAGE
    with transaction(engine) as session:
        roles = dict(session.execute(select(User.email, User.role)).all())
    assert roles == {"alice@example.com": "admin", "bob@example.com": "user"}


def test_deactivating_a_user_revokes_their_sessions_only(engine, people) -> None:
    with transaction(engine) as session:
        add_token(session, people.user)
        add_token(session, people.user)
        add_token(session, people.admin)
    with transaction(engine) as session:
        row = admin_users.set_user_active(session, people.admin, people.user.id, False)
    assert not row.is_active
    assert revoked_flags(engine, people.user.id) == [True, True]
    assert revoked_flags(engine, people.admin.id) == [False]
    with transaction(engine) as session:
        assert admin_users.set_user_active(session, people.admin, people.user.id, True).is_active


def test_setting_a_password_follows_the_policy_and_signs_the_user_out(engine, people) -> None:
    with transaction(engine) as session:
        add_token(session, people.user)
    for bad in ("short", "user@example.com", "x" * 73):
        with pytest.raises(ValidationError) as err, transaction(engine) as session:
            admin_users.set_user_password(session, people.admin, people.user.id, bad)
        assert err.value.field == "password"
    assert revoked_flags(engine, people.user.id) == [False]
    with transaction(engine) as session:
        admin_users.set_user_password(session, people.admin, people.user.id, "a brand new password")
    assert revoked_flags(engine, people.user.id) == [True]
    with transaction(engine) as session:
        stored = session.scalar(select(User.password).where(User.id == people.user.id))
    assert security.verify_password("a brand new password", stored)


def test_deleting_a_user_cascades_and_keeps_their_logs_unlinked(engine, people) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin)
        session.add(ApiKey(user_id=people.user.id, name="k", key=security.digest("k"), prefix="mr-k"))
        session.add(Ticket(user_id=people.user.id, subject="Help", message="Please"))
        session.add(UserProvider(user_id=people.user.id, provider_id=view.id))
        session.add(Log(user_id=people.user.id, provider_id=view.id, request_type="chat"))
        add_token(session, people.user)
    with transaction(engine) as session:
        impact = admin_users.user_deletion_impact(session, people.admin, people.user.id)
    assert impact == admin_users.UserDeletionImpact(api_keys=1, tickets=1, provider_grants=1, log_rows_unlinked=1)
    with transaction(engine) as session:
        admin_users.delete_user(session, people.admin, people.user.id)
    assert (count(engine, ApiKey), count(engine, Ticket), count(engine, UserProvider), count(engine, RefreshToken)) == (
        0,
        0,
        0,
        0,
    )
    with transaction(engine) as session:
        assert session.scalar(select(Log.user_id)) is None
        with pytest.raises(NotFound):
            admin_users.get_user(session, people.admin, people.user.id)


# --- permissions: grants --------------------------------------------------------------------


def test_a_users_grants_list_every_provider(engine, people) -> None:
    with transaction(engine) as session:
        openai = add_provider(session, people.admin, settings={"models": ["gpt-4o", "gpt-4o-mini"]})
        add_provider(session, people.admin, name="Anthropic", protocol="anthropic")
    with transaction(engine) as session:
        before = permissions.user_grants(session, people.admin, people.user.id)
    assert [(g.provider_name, g.exists, g.allowed) for g in before] == [
        ("Anthropic", False, False),
        ("OpenAI", False, False),
    ]
    with transaction(engine) as session:
        grant = permissions.set_grant(
            session, people.admin, people.user.id, openai.id, allowed=True, max_tokens_override="500", models=["gpt-4o"]
        )
    assert grant.exists and grant.allowed and grant.max_tokens_override == 500 and grant.models == ("gpt-4o",)
    assert grant.provider_models == ("gpt-4o", "gpt-4o-mini")
    with transaction(engine) as session:
        after = {g.provider_name: g for g in permissions.user_grants(session, people.admin, people.user.id)}
        assert after["OpenAI"] == grant
        changed = permissions.set_grant(
            session, people.admin, people.user.id, openai.id, allowed=False, expected_updated_at=grant.updated_at
        )
    assert not changed.allowed and changed.models == () and changed.max_tokens_override is None
    assert count(engine, UserProvider) == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_tokens_override": -1}, "max_tokens_override"),
        ({"max_tokens_override": "lots"}, "max_tokens_override"),
        ({"max_tokens_override": 2.5}, "max_tokens_override"),
        ({"models": ["gpt-5"]}, "models"),
        ({"models": "gpt-4o"}, "models"),
        ({"models": [""]}, "models"),
        ({"allowed": "yes"}, "allowed"),
    ],
)
def test_bad_grants_are_refused_and_nothing_is_written(engine, people, changes, field) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin, settings={"models": ["gpt-4o"]})
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        permissions.set_grant(session, people.admin, people.user.id, view.id, **{"allowed": True, **changes})
    assert err.value.field == field
    assert count(engine, UserProvider) == 0


def test_a_stale_grant_form_is_refused(engine, people) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin)
        first = permissions.set_grant(session, people.admin, people.user.id, view.id, allowed=True)
    with transaction(engine) as session:
        permissions.set_grant(session, people.admin, people.user.id, view.id, allowed=True, max_tokens_override=10)
    with pytest.raises(ConflictError), transaction(engine) as session:
        permissions.set_grant(
            session, people.admin, people.user.id, view.id, allowed=False, expected_updated_at=first.updated_at
        )
    with transaction(engine) as session:
        assert permissions.check_access(session, people.user, view.id, None).effective_max_tokens == 10


def _team(session: Session) -> list[User]:
    return [add_user(session, f"team{n}@example.com", name=f"Team {n}") for n in range(1, 5)] + [
        add_user(session, "outsider@example.com", name="Outsider")
    ]


def test_bulk_grant_to_listed_users_upserts_and_keeps_existing_limits(engine, people) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin)
        team = _team(session)
        session.add(UserProvider(user_id=team[0].id, provider_id=view.id, allowed=False, max_tokens_override=77))
    ids = [team[0].id, team[1].id, team[1].id, uuid.uuid4()]  # a duplicate and a deleted user are harmless
    with transaction(engine) as session:
        assert permissions.set_provider_access(session, people.admin, view.id, allowed=True, user_ids=ids) == 2
    with transaction(engine) as session:
        rows = {r.user_id: r for r in session.scalars(select(UserProvider))}
    assert set(rows) == {team[0].id, team[1].id}
    assert all(r.allowed for r in rows.values())
    assert rows[team[0].id].max_tokens_override == 77
    assert rows[team[1].id].id is not None and rows[team[0].id].id != rows[team[1].id].id


def test_bulk_grant_and_revoke_for_everyone_matching_a_search(engine, people) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin)
        team = _team(session)
    with transaction(engine) as session:
        granted = permissions.set_provider_access(
            session, people.admin, view.id, allowed=True, matching=UserFilter(search="TEAM")
        )
    assert granted == 4
    with transaction(engine) as session:
        allowed = {u.email for u in team if permissions.check_access(session, u, view.id, None).allowed}
    assert allowed == {f"team{n}@example.com" for n in range(1, 5)}
    with transaction(engine) as session:
        assert permissions.set_provider_access(session, people.admin, view.id, allowed=True, matching=UserFilter()) == 7
        assert count_rows(session) == 7
    with transaction(engine) as session:
        revoked = permissions.set_provider_access(
            session, people.admin, view.id, allowed=False, matching=UserFilter(search="team", role="user")
        )
    assert revoked == 4
    with transaction(engine) as session:
        flags = dict(session.execute(select(User.email, UserProvider.allowed).join(User)).all())
    assert flags["outsider@example.com"] is True and flags["team3@example.com"] is False


def count_rows(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(UserProvider)) or 0


def test_bulk_change_needs_exactly_one_way_of_choosing_users(engine, people) -> None:
    with transaction(engine) as session:
        view = add_provider(session, people.admin)
    for choice in ({}, {"user_ids": []}, {"user_ids": [people.user.id], "matching": UserFilter()}):
        with pytest.raises(ValidationError) as err, transaction(engine) as session:
            permissions.set_provider_access(session, people.admin, view.id, allowed=True, **choice)
        assert err.value.field == "users"
    with pytest.raises(NotFound), transaction(engine) as session:
        permissions.set_provider_access(session, people.admin, uuid.uuid4(), allowed=True, matching=UserFilter())
    assert count(engine, UserProvider) == 0


def test_matrix_shows_a_page_of_users_against_every_provider(engine, people) -> None:
    with transaction(engine) as session:
        a = add_provider(session, people.admin, name="A")
        b = add_provider(session, people.admin, name="B", is_active=False)
        team = _team(session)
        permissions.set_grant(session, people.admin, team[0].id, a.id, allowed=True, max_tokens_override=9)
        permissions.set_grant(session, people.admin, team[1].id, b.id, allowed=False)
    with transaction(engine) as session:
        matrix = permissions.permission_matrix(session, people.admin, UserFilter(search="team"), page_size=3)
    assert matrix.users.total == 4 and [r.email for r in matrix.users.rows] == [
        "team1@example.com",
        "team2@example.com",
        "team3@example.com",
    ]
    assert [(p.name, p.is_active) for p in matrix.providers] == [("A", True), ("B", False)]
    assert matrix.cell(team[0].id, a.id) == permissions.MatrixCell(allowed=True, max_tokens_override=9, models=())
    assert matrix.cell(team[1].id, b.id).allowed is False
    assert matrix.cell(team[2].id, a.id) is None


# --- the access policy ----------------------------------------------------------------------


@pytest.fixture
def policy(engine, people) -> SimpleNamespace:
    """Providers and grants covering every branch of check_access."""
    with transaction(engine) as session:
        listed = add_provider(
            session,
            people.admin,
            name="Listed",
            max_tokens=1000,
            settings={"models": ["m1", "m2", "m3"], "default_model": "m1"},
        )
        open_ = add_provider(session, people.admin, name="Open", protocol="openai-compatible")
        off = add_provider(session, people.admin, name="Off", is_active=False)
        denied = add_provider(session, people.admin, name="Denied")
        ungranted = add_provider(session, people.admin, name="Ungranted", max_tokens=50)
        elsewhere = add_provider(session, people.admin, name="Elsewhere", settings={"models": ["x1"]})
        user = people.user
        permissions.set_grant(session, None, user.id, listed.id, allowed=True, models=["m2", "m3"])
        permissions.set_grant(session, None, user.id, open_.id, allowed=True, max_tokens_override=300, models=["any-1"])
        permissions.set_grant(session, None, user.id, off.id, allowed=True)
        permissions.set_grant(session, None, user.id, denied.id, allowed=False, max_tokens_override=5)
        permissions.set_grant(session, None, people.admin.id, denied.id, allowed=False, max_tokens_override=5)
        permissions.set_grant(session, None, user.id, elsewhere.id, allowed=True)
        inactive = add_user(session, "gone@example.com", active=False)
        permissions.set_grant(session, None, inactive.id, listed.id, allowed=True)
    return SimpleNamespace(
        admin=people.admin,
        user=user,
        inactive=inactive,
        listed=listed.id,
        open=open_.id,
        off=off.id,
        denied=denied.id,
        ungranted=ungranted.id,
        elsewhere=elsewhere.id,
    )


@pytest.mark.parametrize(
    ("who", "provider", "model", "allowed", "reason", "limit", "source"),
    [
        ("inactive", "listed", "m2", False, "Your account is deactivated", None, None),
        ("user", "missing", "m1", False, "This provider does not exist", None, None),
        ("user", "off", None, False, "Off is deactivated", None, None),
        ("admin", "off", None, False, "Off is deactivated", None, None),
        ("user", "ungranted", None, False, "You have no access to Ungranted; ask an administrator", None, None),
        ("user", "denied", None, False, "Your access to Denied is turned off; ask an administrator", None, None),
        ("admin", "ungranted", "anything", True, "Allowed", 50, permissions.LIMIT_FROM_PROVIDER),
        ("admin", "denied", None, True, "Allowed", 5, permissions.LIMIT_FROM_USER),
        ("user", "listed", "m9", False, "m9 is not one of Listed's models", None, None),
        ("user", "listed", "m1", False, "You may not use m1 on Listed; you may use m2, m3", None, None),
        ("user", "listed", " m2 ", True, "Allowed", 1000, permissions.LIMIT_FROM_PROVIDER),
        ("admin", "listed", "m1", True, "Allowed", 1000, permissions.LIMIT_FROM_PROVIDER),
        ("user", "listed", "", False, "Choose a model", None, None),
        ("user", "listed", None, True, "Allowed", 1000, permissions.LIMIT_FROM_PROVIDER),
        ("user", "open", "any-1", True, "Allowed", 300, permissions.LIMIT_FROM_USER),
        ("user", "open", "any-2", False, "You may not use any-2 on Open; you may use any-1", None, None),
        ("admin", "open", "whatever-model", True, "Allowed", None, None),
        ("user", "elsewhere", "x1", True, "Allowed", None, None),
    ],
)
def test_check_access_every_branch(engine, policy, who, provider, model, allowed, reason, limit, source) -> None:
    provider_id = uuid.uuid4() if provider == "missing" else getattr(policy, provider)
    with transaction(engine) as session:
        decision = permissions.check_access(session, getattr(policy, who), provider_id, model)
    assert decision == permissions.AccessDecision(
        allowed=allowed, reason=reason, effective_max_tokens=limit, limit_source=source
    )


def test_usable_providers_agree_with_check_access(engine, policy) -> None:
    with transaction(engine) as session:
        mine = {p.name: p for p in permissions.usable_providers(session, policy.user)}
        everything = {p.name: p for p in permissions.usable_providers(session, policy.admin)}
        nothing = permissions.usable_providers(session, policy.inactive)
        for person, usable in ((policy.user, mine), (policy.admin, everything)):
            for item in usable.values():
                for model in item.models:
                    assert permissions.check_access(session, person, item.id, model).allowed
    assert sorted(mine) == ["Elsewhere", "Listed", "Open"]
    assert mine["Listed"].models == ("m2", "m3") and mine["Listed"].default_model == "m2"
    assert mine["Open"].models == ("any-1",) and mine["Open"].effective_max_tokens == 300
    assert mine["Elsewhere"].models == ("x1",) and mine["Elsewhere"].limit_source is None
    assert sorted(everything) == ["Denied", "Elsewhere", "Listed", "Open", "Ungranted"]
    assert everything["Listed"].models == ("m1", "m2", "m3") and everything["Listed"].default_model == "m1"
    assert everything["Open"].models == ()  # any model
    assert nothing == []


def test_a_grant_whose_models_the_provider_no_longer_lists_leaves_nothing_usable(engine, policy) -> None:
    with transaction(engine) as session:
        view = providers.get_provider(session, policy.admin, policy.listed)
        providers.update_provider_settings(
            session, policy.admin, policy.listed, {"models": ["m1"]}, expected_updated_at=view.updated_at
        )
    with transaction(engine) as session:
        assert "Listed" not in {p.name for p in permissions.usable_providers(session, policy.user)}
        assert not permissions.check_access(session, policy.user, policy.listed, "m1").allowed
        assert not permissions.check_access(session, policy.user, policy.listed, "m2").allowed


# --- every problem at once (issue 17) -------------------------------------------------------


def test_field_checks_keep_every_refusal_and_raise_one_or_all() -> None:
    checks = FieldChecks()
    assert checks.check(validate_name, " Ada ") == "Ada"
    checks.raise_any()  # nothing refused: nothing raised
    assert checks.check(validate_name, "", field="name") is None
    assert checks.check(validate_optional_positive_int, "-1", "max_tokens", "Max tokens") is None
    assert checks.check(validate_name, "\x01", field="name") is None  # a second problem of one field: the first kept
    assert checks.refused("name") and not checks.refused("email")
    with pytest.raises(FormValidationError) as err:
        checks.raise_any()
    assert err.value.problems == {"name": "Name is required", "max_tokens": "Max tokens must be greater than 0"}
    assert (err.value.field, err.value.message) == ("name", "Name is required (and 1 more problem)")

    one = FieldChecks()
    one.check(validate_name, "")
    with pytest.raises(ValidationError) as single:
        one.raise_any()
    assert type(single.value) is ValidationError and single.value.field == "name"


def test_a_new_provider_is_refused_with_every_problem_of_its_form(engine, people) -> None:
    with transaction(engine) as session:
        add_provider(session, people.admin, name="Taken")
    with pytest.raises(FormValidationError) as err, transaction(engine) as session:
        providers.create_provider(
            session,
            people.admin,
            name="taken",
            protocol="openai",
            endpoint_url="ftp://models.example",
            api_key="two words",
            max_tokens="1.5",
            settings={"models": "gpt-4o"},
        )
    assert set(err.value.problems) == {"name", "endpoint_url", "max_tokens", "api_key", "settings.models"}
    assert err.value.problems["name"] == "A provider named 'taken' already exists"
    assert count(engine, Provider) == 1


def test_an_active_keyless_provider_is_refused_beside_the_other_problems(engine, people) -> None:
    with pytest.raises(FormValidationError) as err, transaction(engine) as session:
        providers.create_provider(session, people.admin, name="", protocol="anthropic", max_tokens="0")
    assert set(err.value.problems) == {"name", "max_tokens", "api_key"}
    assert "need an API key to be active" in err.value.problems["api_key"]


def test_a_provider_edit_is_refused_with_every_problem_at_once(engine, people) -> None:
    with transaction(engine) as session:
        add_provider(session, people.admin, name="Other")
        local = add_provider(session, people.admin, name="Local", protocol="openai-compatible")
    with pytest.raises(FormValidationError) as err, transaction(engine) as session:
        providers.update_provider(
            session,
            people.admin,
            local.id,
            expected_updated_at=local.updated_at,
            **{**local.form_values(), "name": "other", "max_tokens": "-3", "allow_files": "yes"},
            api_key="new-key",
            clear_api_key=True,
        )
    assert set(err.value.problems) == {"allow_files", "max_tokens", "api_key", "name"}
    with transaction(engine) as session:
        assert providers.get_provider(session, people.admin, local.id).name == "Local"


def test_a_user_edit_is_refused_with_both_problems(engine, people) -> None:
    with pytest.raises(FormValidationError) as err, transaction(engine) as session:
        admin_users.update_user(session, people.admin, people.admin.id, name="", role="user")
    assert err.value.problems == {
        "name": "Name is required",
        "role": "You cannot remove your own administrator role; ask another administrator",
    }


def test_a_user_asked_for_by_id_is_selected_even_off_the_page(engine, people) -> None:
    with transaction(engine) as session:
        team = _team(session)
    page = permissions.users_page(
        engine,
        people.admin,
        UserFilter(search="team"),
        sort="email",
        descending=False,
        page=1,
        page_size=2,
        selected_id=str(team[-1].id),
        delete_pending=None,
    )
    assert team[-1].id not in [r.id for r in page.matrix.users.rows]
    assert page.selected.id == team[-1].id
    for unknown in (str(uuid.uuid4()), "not-an-id", None):
        fallback = permissions.users_page(
            engine,
            people.admin,
            UserFilter(search="team"),
            sort="email",
            descending=False,
            page=1,
            page_size=2,
            selected_id=unknown,
            delete_pending=None,
        )
        assert fallback.selected.id == page.matrix.users.rows[0].id
