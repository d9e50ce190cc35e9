"""What users see of their budgets, in AppTest on both databases: Overview (their budgets with the forecast;
admins also the alerts and the providers' budgets), the Usage page's spend against budget, and the
playground's refusal shown as a warning naming the limit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from mindroute.db import transaction
from mindroute.models import Log
from tests.pages.helpers import texts
from tests.pages.test_playground import grant_provider, send, user_on_playground
from tests.providers.fakes import FakeOpenAI, FakeServer

PLAYGROUND = "pages/workspace/playground.py"


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeServer]:
    server = FakeServer(FakeOpenAI()).start()
    yield server
    server.stop()


# --- the playground ---------------------------------------------------------------------------------


def test_a_providers_rate_limit_is_a_warning_not_an_error(engine, monkeypatch, openai_fake) -> None:
    at = user_on_playground(engine, monkeypatch)
    grant_provider(engine, "user@example.com", openai_fake, models=["error-429"])
    at = send(at.run(), "hello")
    assert not at.exception and not at.error
    [warning] = at.warning
    assert warning.value and warning.icon == ":material/hourglass_top:"
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Log).where(Log.status_code == 429)) == 1
    assert "hello" in texts(at)
