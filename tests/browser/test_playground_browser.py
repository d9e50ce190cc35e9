"""The playground in a real browser: an answer streams in, and Stop ends it with the partial answer logged."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from mindroute import security
from mindroute.db import transaction
from mindroute.models import Log, Provider
from mindroute.services.users import create_user
from tests.browser.test_auth_browser import ADMIN_EMAIL, ADMIN_PASSWORD, settle, sign_in
from tests.conftest import TEST_SECRET_KEY
from tests.providers.fakes import OPENAI_KEY, FakeOpenAI, FakeServer

pytestmark = pytest.mark.browser


@pytest.fixture
def openai_fake():
    server = FakeOpenAI()
    running = FakeServer(server).start()
    yield running
    running.stop()


def test_answer_streams_in_and_stop_keeps_the_partial_answer(server, browser_context, openai_fake) -> None:
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
        session.add(
            Provider(
                name="Fake OpenAI",
                protocol="openai",
                endpoint_url=openai_fake.url + "/v1",
                api_key=security.SecretBox([TEST_SECRET_KEY]).encrypt(OPENAI_KEY),
                settings={"models": ["endless"], "default_model": "endless", "prices": {}},
            )
        )
    page = browser_context.new_page()
    sign_in(page, server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto(f"{server.base_url}/playground")
    settle(page)
    box = page.locator("[data-testid='stChatInputTextArea']")
    box.fill("count for me")
    box.press("Enter")
    answer = page.locator("[data-testid='stChatMessage']").nth(1)
    answer.get_by_text("tick", exact=False).first.wait_for()  # the stream is arriving
    first = answer.inner_text()
    time.sleep(0.5)
    assert len(answer.inner_text()) > len(first)  # and still growing
    page.locator(".st-key-pg_stop button").filter(visible=True).first.click()

    page.get_by_text("stopped", exact=False).first.wait_for()  # the partial answer stays on the page
    settle(page)
    with transaction(server.engine) as session:
        row = session.scalar(select(Log))
    assert row.status_code == 499 and row.response_body["stopped_by_user"] is True
    assert row.response_body["text"].startswith("tick") and len(row.response_body["text"]) >= len("tick") * 3
    assert openai_fake.fake.last.disconnected.wait(5)  # the upstream request was closed
