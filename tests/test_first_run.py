"""The first-run checklist: each step ticks as the data it stands for appears, and the view draws it for admins only."""

from __future__ import annotations

from sqlalchemy import select

from mindroute.db import transaction
from mindroute.models import Log, Provider, User
from mindroute.services import api_keys, first_run, permissions, providers
from tests.pages.helpers import ROOT, add_user, app_for

APP = "tests/pages/first_run_app.py"


def done_steps(engine) -> list[str]:
    return [step.key for step in first_run.steps(engine) if step.done]


def admin_of(engine) -> User:
    with transaction(engine) as session:
        admin = session.scalar(select(User).where(User.role == "admin"))
        session.expunge(admin)
    return admin


def test_steps_tick_one_by_one_as_the_data_appears(engine) -> None:
    add_user(engine, "admin@example.com", role="admin")
    member = add_user(engine, "member@example.com")
    admin = admin_of(engine)
    assert done_steps(engine) == []
    assert [s.title for s in first_run.steps(engine)] == [
        "Add a provider",
        "Refresh its models",
        "Set prices or use the built-in table",
        "Grant users access",
        "Create an API key",
        "Make the first call",
    ]

    # A local server: no built-in prices, so "prices" waits for a typed one.
    local = providers.create_provider(
        engine, admin, name="Local", protocol="openai-compatible", endpoint_url="http://127.0.0.1:11434/v1"
    )
    assert done_steps(engine) == ["provider"]

    providers.update_provider_settings(
        engine, admin, local.id, {"models": ["llama3"]}, expected_updated_at=local.updated_at
    )
    assert done_steps(engine) == ["provider", "models"]

    fresh = providers.get_provider(engine, admin, local.id)
    providers.update_provider_settings(
        engine,
        admin,
        local.id,
        {"models": ["llama3"], "prices": {"llama3": {"input": 0.1, "output": 0.2}}},
        expected_updated_at=fresh.updated_at,
    )
    assert done_steps(engine) == ["provider", "models", "prices"]

    # The admin's own grant does not count: admins use every provider anyway.
    permissions.set_grant(engine, admin, admin.id, local.id, allowed=True)
    assert "grant" not in done_steps(engine)
    permissions.set_grant(engine, admin, member.id, local.id, allowed=False)
    assert "grant" not in done_steps(engine)
    permissions.set_grant(engine, admin, member.id, local.id, allowed=True)
    assert done_steps(engine) == ["provider", "models", "prices", "grant"]

    api_keys.create_key(engine, admin, admin.id, "script", None)
    assert "key" in done_steps(engine)

    with transaction(engine) as session:  # a refused call is not the first call
        session.add(Log(provider_id=local.id, request_type="chat", status_code=403))
    assert "call" not in done_steps(engine)
    with transaction(engine) as session:
        session.add(Log(provider_id=local.id, request_type="chat", status_code=200))
    assert first_run.all_done(first_run.steps(engine))


def test_built_in_prices_tick_the_prices_step(engine) -> None:
    add_user(engine, "admin@example.com", role="admin")
    admin = admin_of(engine)
    view = providers.create_provider(engine, admin, name="OpenAI", protocol="openai", api_key="sk-x-0123456789")
    providers.update_provider_settings(
        engine, admin, view.id, {"models": ["gpt-4o-2024-08-06"]}, expected_updated_at=view.updated_at
    )
    assert done_steps(engine) == ["provider", "models", "prices"]


def test_checklist_is_drawn_for_admins_with_links_and_ticks(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = app_for(engine, monkeypatch, APP)
    at.session_state["first_run_email"] = "admin@example.com"
    at.run()
    assert not at.exception, at.exception
    assert [s.value for s in at.subheader] == ["Getting started"]
    links = at.get("page_link")
    assert [link.proto.label for link in links] == [
        "1. Add a provider",
        "2. Refresh its models",
        "3. Set prices or use the built-in table",
        "4. Grant users access",
        "5. Create an API key",
        "6. Make the first call",
    ]
    assert links[0].proto.page == "providers" and links[3].proto.page == "users"
    assert "0 of 6 steps done." in [c.value for c in at.caption]

    with transaction(engine) as session:
        session.add(Provider(name="Local", protocol="openai-compatible", settings={"models": ["m"]}))
    at.run()
    labels = [link.proto.label for link in at.get("page_link")]
    assert labels[:3] == [
        "1. Add a provider (done)",
        "2. Refresh its models (done)",
        "3. Set prices or use the built-in table",
    ]
    assert "2 of 6 steps done." in [c.value for c in at.caption]


def test_checklist_is_not_drawn_for_users_or_once_everything_is_done(engine, monkeypatch) -> None:
    add_user(engine, "member@example.com")
    at = app_for(engine, monkeypatch, APP)
    at.session_state["first_run_email"] = "member@example.com"
    at.run()
    assert not at.exception, at.exception
    assert "checklist drawn" in [t.value for t in at.text]
    assert not at.subheader and not at.get("page_link")

    add_user(engine, "admin@example.com", role="admin")
    admin = admin_of(engine)
    view = providers.create_provider(engine, admin, name="OpenAI", protocol="openai", api_key="sk-x-0123456789")
    providers.update_provider_settings(
        engine, admin, view.id, {"models": ["gpt-4o"]}, expected_updated_at=view.updated_at
    )
    with transaction(engine) as session:
        member_id = session.scalar(select(User.id).where(User.email == "member@example.com"))
    permissions.set_grant(engine, admin, member_id, view.id, allowed=True)
    api_keys.create_key(engine, admin, admin.id, "script", None)
    with transaction(engine) as session:
        session.add(Log(provider_id=view.id, request_type="chat", status_code=200))
    at.session_state["first_run_email"] = "admin@example.com"
    at.run()
    assert "checklist drawn" in [t.value for t in at.text]
    assert not at.subheader and not at.get("page_link")


def test_every_step_links_to_a_page_that_exists(engine) -> None:
    for step in first_run.steps(engine):
        assert (ROOT / step.page).is_file(), step.page
