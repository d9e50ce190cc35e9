"""The playground in a real browser: an answer streams in, and Stop ends it with the partial answer logged,
also before the first token (issue 13, item 12); a conversation survives a reload and side by side shows two
answers (issue 17)."""

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
from tests.providers.fakes import OPENAI_KEY, FakeServer, expected_answer
from tests.providers.holding import HoldingOpenAI

pytestmark = pytest.mark.browser


@pytest.fixture
def openai_fake():
    server = HoldingOpenAI()  # FakeOpenAI, plus the "hold" models of a provider that answers late
    running = FakeServer(server).start()
    yield running
    running.stop()


def open_playground(server, browser_context, fake: FakeServer, model: str, *more_models: str):
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
        session.add(
            Provider(
                name="Fake OpenAI",
                protocol="openai",
                endpoint_url=fake.url + "/v1",
                api_key=security.SecretBox([TEST_SECRET_KEY]).encrypt(OPENAI_KEY),
                settings={"models": [model, *more_models], "default_model": model, "prices": {}},
            )
        )
    page = browser_context.new_page()
    sign_in(page, server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto(f"{server.base_url}/playground")
    settle(page)
    return page


def test_answer_streams_in_and_stop_keeps_the_partial_answer(server, browser_context, openai_fake) -> None:
    page = open_playground(server, browser_context, openai_fake, "endless")
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


def test_stop_before_the_first_token_keeps_the_question_and_ends_the_call_at_once(
    server, browser_context, openai_fake
) -> None:
    """A provider that would answer after 30 s (here: only once the request is closed); Stop at 2 s."""
    page = open_playground(server, browser_context, openai_fake, "hold")
    box = page.locator("[data-testid='stChatInputTextArea']")
    box.fill("are you still there?")
    sent = time.monotonic()
    box.press("Enter")
    page.get_by_text("Waiting for the answer", exact=False).first.wait_for()
    deadline = time.monotonic() + 10
    while not openai_fake.fake.requests:  # the request is with the provider, which says nothing
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(max(0.0, 2.0 - (time.monotonic() - sent)))
    page.locator(".st-key-pg_stop button").filter(visible=True).first.click()
    stopped_at = time.monotonic()

    messages = page.locator("[data-testid='stChatMessage']")
    messages.nth(1).get_by_text("stopped", exact=False).first.wait_for(timeout=3_000)
    assert time.monotonic() - stopped_at < 3.0
    assert messages.nth(0).inner_text().strip().endswith("are you still there?")  # the question stays
    assert openai_fake.fake.last.disconnected.wait(1)  # the upstream request was closed
    with transaction(server.engine) as session:
        [row] = session.scalars(select(Log)).all()  # written by the time the page says "stopped"
    assert (row.status_code, row.error_message) == (499, "Stopped by the user")
    assert row.response_body["stopped_by_user"] is True and row.response_body["text"] == ""
    settle(page)
    assert page.get_by_text("are you still there?").count() == 1  # drawn once, in the conversation


def test_closing_the_tab_while_waiting_ends_the_call_and_logs_it(server, browser_context, openai_fake) -> None:
    """The browser going away stops the run like Stop does: the request is closed, one 499 row."""
    page = open_playground(server, browser_context, openai_fake, "hold")
    box = page.locator("[data-testid='stChatInputTextArea']")
    box.fill("anyone?")
    box.press("Enter")
    page.get_by_text("Waiting for the answer", exact=False).first.wait_for()
    page.close()
    assert openai_fake.fake.last.disconnected.wait(3)  # not the provider's 60 s
    deadline = time.monotonic() + 3
    while True:
        with transaction(server.engine) as session:
            found = session.scalars(select(Log)).all()
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(r.status_code, r.error_message) for r in found] == [(499, "Stopped by the user")]


def ask(page, text: str) -> None:
    box = page.locator("[data-testid='stChatInputTextArea']")
    box.fill(text)
    box.press("Enter")


def test_a_conversation_survives_a_reload(server, browser_context, openai_fake) -> None:
    page = open_playground(server, browser_context, openai_fake, "test-model")
    ask(page, "remember me")
    page.get_by_text(expected_answer("remember me")).first.wait_for()
    settle(page)
    assert "conversation=" in page.url
    ask(page, "and this too")
    page.get_by_text(expected_answer("and this too")).first.wait_for()
    settle(page)
    url = page.url

    page.reload()
    settle(page)
    page.get_by_text(expected_answer("and this too")).first.wait_for()
    assert page.url == url
    messages = page.locator("[data-testid='stChatMessage']")
    assert messages.count() == 4
    assert messages.nth(0).inner_text().strip().endswith("remember me")
    assert expected_answer("remember me") in messages.nth(1).inner_text()
    with transaction(server.engine) as session:
        assert len(session.scalars(select(Log)).all()) == 2  # a reload sends nothing again
    page.get_by_text("Settings").first.click()  # its widgets are drawn now, with the conversation's values
    page.locator(".st-key-pg_temperature").get_by_text("0.70").wait_for()
    assert page.locator(".st-key-pg_stream input").is_checked()
    page.keyboard.press("Escape")

    page.goto(f"{server.base_url}/playground")  # without the URL's id: a new conversation; the list offers the old
    settle(page)
    assert page.locator("[data-testid='stChatMessage']").count() == 0
    page.locator(".st-key-pg_conversation").click()
    page.get_by_role("option", name="remember me", exact=False).first.click()
    page.get_by_text(expected_answer("and this too")).first.wait_for()


def test_side_by_side_shows_two_answers(server, browser_context, openai_fake) -> None:
    page = open_playground(server, browser_context, openai_fake, "test-model", "other-model")
    page.locator(".st-key-pg_compare label").click()
    settle(page)
    page.locator(".st-key-pg_compare_models").wait_for()
    ask(page, "which of you")
    page.get_by_text("Fake OpenAI · other-model · ", exact=False).first.wait_for()
    settle(page)
    answers = page.get_by_text(expected_answer("which of you"))
    assert answers.count() == 2
    first, second = answers.nth(0).bounding_box(), answers.nth(1).bounding_box()
    # Side by side, in columns: the second to the right of the first, at the same height (their lines overlap;
    # the captions above them may differ by a few pixels, e.g. a latency's digits).
    assert second["x"] > first["x"] + 100
    assert first["y"] < second["y"] + second["height"] and second["y"] < first["y"] + first["height"]
    with transaction(server.engine) as session:
        rows = session.scalars(select(Log)).all()
    assert sorted(r.model_id for r in rows) == ["other-model", "test-model"]
