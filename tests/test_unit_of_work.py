"""A service called with an engine runs in a transaction of its own; called with a session, in the caller's."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mindroute.db import transaction
from mindroute.models import User
from mindroute.services import users
from mindroute.validation import ValidationError

PASSWORD = "correct horse battery"


def user_count(engine) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(User)) or 0


def test_a_service_given_the_engine_commits_what_it_did(engine) -> None:
    created = users.create_first_admin(engine, email="first@example.com", name="First", password=PASSWORD)
    assert created.email == "first@example.com"  # readable after the commit: nothing is expired
    assert user_count(engine) == 1
    assert users.admin_exists(engine)


def test_a_service_given_the_engine_that_raises_leaves_nothing_behind(engine) -> None:
    with pytest.raises(ValidationError):
        users.create_first_admin(engine, email="not an email", name="First", password=PASSWORD)
    assert user_count(engine) == 0


def test_services_given_one_session_share_its_transaction(engine) -> None:
    with pytest.raises(RuntimeError), transaction(engine) as session:
        users.create_first_admin(session, email="first@example.com", name="First", password=PASSWORD)
        assert users.admin_exists(session)
        raise RuntimeError("the caller's action fails after the service ran")
    assert user_count(engine) == 0  # rolled back with the caller's transaction


def test_the_wrapped_service_keeps_its_name_and_documentation() -> None:
    assert users.create_first_admin.__name__ == "create_first_admin"
    assert "first-run" in (users.create_first_admin.__doc__ or "")
