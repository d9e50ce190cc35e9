"""A provider that can only fail (OpenAI, Anthropic or Gemini without a key) is never active, so never offered."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from mindroute.cli.seed import seed_demo
from mindroute.db import transaction
from mindroute.models import Provider, User
from mindroute.services import providers
from mindroute.services.permissions import usable_providers
from mindroute.validation import ValidationError
from tests.test_admin_services import PASSWORD_HASH

KEY = "sk-proj-SECRETsecret0123456789abcdWXYZ"
NEEDS_KEY = ["openai", "anthropic", "google"]


@pytest.fixture
def admin(engine) -> User:
    with transaction(engine) as session:
        user = User(email="admin@example.com", name="Admin", role="admin", password=PASSWORD_HASH)
        session.add(user)
    return user


def create(engine, admin, **fields) -> providers.ProviderView:
    with transaction(engine) as session:
        return providers.create_provider(session, admin, **{"name": "P", **fields})


def save(engine, admin, view, **changes) -> providers.ProviderView:
    with transaction(engine) as session:
        return providers.update_provider(
            session, admin, view.id, expected_updated_at=view.updated_at, **{**view.form_values(), **changes}
        )


@pytest.mark.parametrize("protocol", NEEDS_KEY)
def test_adding_an_active_provider_without_a_key_is_refused_at_the_key_field(engine, admin, protocol) -> None:
    with pytest.raises(ValidationError) as err:
        create(engine, admin, protocol=protocol, is_active=True)
    assert err.value.field == "api_key" and "need an API key to be active" in err.value.message
    with transaction(engine) as session:
        assert session.scalar(select(Provider)) is None
    # Inactive until the key is there, or active with the key: both fine.
    assert not create(engine, admin, name="Later", protocol=protocol, is_active=False).is_active
    assert create(engine, admin, name="Now", protocol=protocol, api_key=KEY, is_active=True).is_active


def test_an_openai_compatible_server_may_be_active_without_a_key(engine, admin) -> None:
    view = create(engine, admin, protocol="openai-compatible", endpoint_url="http://127.0.0.1:11434/v1")
    assert view.is_active and not view.has_key


@pytest.mark.parametrize("protocol", NEEDS_KEY)
def test_a_keyless_provider_cannot_be_activated_until_it_has_a_key(engine, admin, protocol) -> None:
    view = create(engine, admin, protocol=protocol, is_active=False)
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        providers.set_provider_active(session, admin, view.id, True)
    assert err.value.field == "api_key"
    with pytest.raises(ValidationError) as err:
        save(engine, admin, view, is_active=True)  # the edit form's Active box
    assert err.value.field == "api_key"
    with transaction(engine) as session:
        assert session.scalar(select(Provider.is_active)) is False
    view = save(engine, admin, view, is_active=True, api_key=KEY)
    assert view.is_active and view.has_key


@pytest.mark.parametrize(
    "changes",
    [{"clear_api_key": True}, {"protocol": "anthropic", "endpoint_url": ""}],
    ids=["remove-the-key", "switch-protocol"],
)
def test_an_edit_cannot_leave_an_active_provider_without_the_key_it_needs(engine, admin, changes) -> None:
    view = create(engine, admin, protocol="openai-compatible", endpoint_url="https://api.example.com/v1")
    if "clear_api_key" in changes:
        view = save(engine, admin, view, protocol="openai", api_key=KEY)
    with pytest.raises(ValidationError) as err:
        save(engine, admin, view, **changes)
    assert err.value.field == "api_key"
    assert save(engine, admin, view, **changes, is_active=False).is_active is False


def test_a_row_left_active_without_a_key_can_still_be_edited_or_deactivated(engine, admin) -> None:
    """Rows from before this rule (or written by hand) are not locked: edits that keep the state pass."""
    view = create(engine, admin, protocol="openai", is_active=False)
    with transaction(engine) as session:
        session.execute(update(Provider).values(is_active=True))
        view = providers.get_provider(session, admin, view.id)
    view = save(engine, admin, view, name="Renamed")
    assert view.name == "Renamed" and view.is_active
    with transaction(engine) as session:
        assert providers.set_provider_active(session, admin, view.id, False).is_active is False


def test_demo_providers_without_keys_are_inactive_and_not_offered(engine) -> None:
    """Issue 13, item 14: after seed-demo, nobody is offered a provider that can only fail."""
    seed_demo(engine, rows=50, days=2, seed=3, progress=False)
    with transaction(engine) as session:
        rows = session.scalars(select(Provider)).all()
        assert rows, "seed-demo adds providers"
        for provider in rows:
            if providers.needs_key(provider.protocol) and not provider.api_key:
                assert not provider.is_active, provider.name
        admin = User(email="root@example.com", name="Root", role="admin", password=PASSWORD_HASH)
        session.add(admin)
        session.flush()
        for user in session.scalars(select(User)).all():
            for usable in usable_providers(session, user):
                row = session.get(Provider, usable.id)
                assert row.api_key or not providers.needs_key(row.protocol), (user.email, row.name)
