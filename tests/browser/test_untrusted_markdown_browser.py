"""In a real browser: model output with images fetches nothing remote, and the Providers page's add
form forgets the typed key after saving (issue 13, items 4 and 10)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from mindroute import security
from mindroute.db import transaction
from mindroute.models import Provider
from mindroute.services.users import create_user
from tests.browser.test_auth_browser import ADMIN_EMAIL, ADMIN_PASSWORD, settle, sign_in
from tests.conftest import TEST_SECRET_KEY
from tests.providers.fakes import OPENAI_KEY, FakeOpenAI, FakeServer

pytestmark = pytest.mark.browser

IMAGES = (
    "![a [b] c](http://evil.example/inline.png) ![x][r] ![bare]\n\n"
    "[r]: http://evil.example/reference.png\n[bare]: <http://evil.example/bare.png>\n\n"
    "<img src=http://evil.example/tag.png> [link](https://evil.example/page)"
)


@pytest.fixture
def openai_fake():
    running = FakeServer(FakeOpenAI()).start()
    yield running
    running.stop()


def test_model_output_with_images_makes_no_remote_request(server, browser_context, openai_fake) -> None:
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
        session.add(
            Provider(
                name="Fake OpenAI",
                protocol="openai",
                endpoint_url=openai_fake.url + "/v1",
                api_key=security.SecretBox([TEST_SECRET_KEY]).encrypt(OPENAI_KEY),
                settings={"models": ["gpt-4o-mini"], "default_model": "gpt-4o-mini", "prices": {}},
            )
        )
    page = browser_context.new_page()
    remote: list[str] = []
    page.on("request", lambda request: remote.append(request.url) if _is_remote(request.url) else None)
    sign_in(page, server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto(f"{server.base_url}/playground")
    settle(page)
    box = page.locator("[data-testid='stChatInputTextArea']")
    box.fill(IMAGES)  # the fake answers with the question in it: model output full of images
    box.press("Enter")
    answer = page.locator("[data-testid='stChatMessage']").nth(1)
    answer.get_by_text("You said", exact=False).first.wait_for()
    settle(page)
    page.wait_for_timeout(500)  # time for any image request to start
    assert [url for url in remote if "evil.example" in url] == [], remote
    # Streamlit itself fetches its material icons (the navigation's) from fonts.gstatic.com; nothing else.
    assert {urlsplit(url).hostname for url in remote} <= {"fonts.gstatic.com"}, remote
    assert answer.locator("img").count() == 0
    text = answer.inner_text()
    assert "[image: a [b] c]" in text and "[image: x]" in text and "[image: bare]" in text  # labels instead
    assert "<img src=http://evil.example/tag.png>" in text  # the tag as text


def _is_remote(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return url.startswith(("http:", "https:", "ws:", "wss:")) and host not in ("127.0.0.1", "localhost")


def test_the_add_form_forgets_the_typed_key_after_saving(server, browser_context) -> None:
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
    page = browser_context.new_page()
    sign_in(page, server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto(f"{server.base_url}/providers")
    settle(page)
    form = page.locator("[data-testid='stForm']").first
    form.get_by_role("textbox", name="Name", exact=True).fill("Team OpenAI")
    key_field = form.get_by_role("textbox", name="API key", exact=True)
    key_field.fill("sk-typed-in-the-browser-0000a1b2")
    form.get_by_role("button", name="Add provider").click()
    page.get_by_text("••••a1b2", exact=False).first.wait_for()
    settle(page)
    with transaction(server.engine) as session:
        assert session.scalar(select(func.count()).select_from(Provider)) == 1
    page.get_by_text("Add a provider").first.click()  # open the expander again
    form = page.locator("[data-testid='stForm']").first
    assert form.get_by_role("textbox", name="API key", exact=True).input_value() == ""
    assert form.get_by_role("textbox", name="Name", exact=True).input_value() == ""

    # The edit form: a new key typed and saved is not left in its field either.
    edit = page.locator("[data-testid='stForm']").filter(has_text="Save changes")
    edit.get_by_role("textbox", name="New API key", exact=True).fill("sk-edited-in-the-browser-0000c3d4")
    edit.get_by_role("button", name="Save changes").click()
    page.get_by_text("••••c3d4", exact=False).first.wait_for()
    settle(page)
    edit = page.locator("[data-testid='stForm']").filter(has_text="Save changes")
    assert edit.get_by_role("textbox", name="New API key", exact=True).input_value() == ""
