"""The Providers page in AppTest: add, edit, refuse bad input, models, test connection, delete."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

from sqlalchemy import func, select, text, update

from mindroute.db import transaction
from mindroute.models import Log, Provider, utcnow
from tests.pages.flow_helpers import open_tab
from tests.pages.helpers import add_user, app_for, error_under, sign_in, texts
from tests.test_models_list import GOOD_KEY, OPENAI_MODELS, WRONG_KEY, FakeProvider, _Handler, _Server
from tests.ui.inert import assert_inert

PAGE = "pages/admin/providers.py"
SECRET = "sk-test-0123456789abcdefSECRETa1b2"


def admin_on_page(engine, monkeypatch):
    add_user(engine, "admin@example.com", role="admin")
    at = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com")
    return at.switch_page(PAGE).run()


HELPER_KEY = "sk-page-helper-00000000000000000000"


def add_provider(
    at, name: str, protocol: str = "openai", endpoint: str = "", key: str | None = None, max_tokens: str = ""
):
    if key is None:  # an active OpenAI, Anthropic or Gemini provider needs a key (issue 13, item 14)
        key = HELPER_KEY if protocol != "openai-compatible" else ""
    at.text_input(key="new_provider_name").input(name)
    at.selectbox(key="new_provider_protocol").select(protocol)
    at.text_input(key="new_provider_endpoint").input(endpoint)
    at.text_input(key="new_provider_key").input(key)
    at.text_input(key="new_provider_max_tokens").input(max_tokens)
    next(b for b in at.button if b.label == "Add provider").click()
    return at.run()


def everything_rendered(at) -> str:
    """Every value any element carries, to prove a secret appears nowhere on the page."""
    parts = [texts(at)]
    for element in at.main:
        parts.append(repr(getattr(element, "proto", element)))
    for widget in at.text_input:
        if widget.proto.type != widget.proto.PASSWORD:  # what the admin typed into a password field is theirs
            parts.append(str(widget.value))
    return "\n".join(parts)


def provider_count(engine) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(Provider))


def test_add_provider_stores_the_key_encrypted_and_shows_it_masked(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    assert "No providers yet" in texts(at)
    at = add_provider(at, "Team OpenAI", key=SECRET, max_tokens="4096")
    assert not at.exception, at.exception
    with transaction(engine) as session:
        provider = session.scalar(select(Provider))
        assert (provider.name, provider.protocol, provider.max_tokens) == ("Team OpenAI", "openai", 4096)
        assert provider.endpoint_url == "https://api.openai.com/v1"  # the protocol's default
        raw = session.execute(text("SELECT apikey FROM providers")).scalar()
    assert SECRET not in raw and "a1b2" not in raw
    page = everything_rendered(at)
    assert "••••a1b2" in page
    assert SECRET not in page


def test_bad_input_is_refused_at_the_field_and_nothing_is_written(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "One")
    assert provider_count(engine) == 1
    at.expander[0]  # the add form stays available
    for name, endpoint, max_tokens, message in [
        ("One", "", "", "already exists"),
        ("Two", "ftp://models.example", "", "must start with http:// or https://"),
        ("Two", "", "-5", "greater than 0"),
        ("Two", "", "1.5", "whole number"),
        ("", "", "", "Provider name is required"),
    ]:
        at = add_provider(at, name, endpoint=endpoint, max_tokens=max_tokens)
        assert message in texts(at), message
        assert provider_count(engine) == 1


def test_edit_saves_and_a_concurrent_change_is_not_lost(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "Local", protocol="openai-compatible", endpoint="http://127.0.0.1:11434/v1")
    max_field = next(
        t for t in at.text_input if t.label == "Max tokens per call" and t.key != "new_provider_max_tokens"
    )
    max_field.input("2048")
    next(b for b in at.button if b.label == "Save changes").click()
    at.run()
    assert "Saved Local." in texts(at)
    with transaction(engine) as session:
        assert session.scalar(select(Provider.max_tokens)) == 2048
        # Someone else edits the provider while this admin's form is open.
        session.execute(update(Provider).values(max_tokens=1000, updated_at=utcnow() + timedelta(seconds=5)))
    name_field = next(t for t in at.text_input if t.label == "Name" and t.key != "new_provider_name")
    name_field.input("Local renamed")
    next(b for b in at.button if b.label == "Save changes").click()
    at.run()
    assert "Reload" in texts(at)
    with transaction(engine) as session:
        assert session.scalar(select(Provider.name)) == "Local"  # nothing overwritten
        assert session.scalar(select(Provider.max_tokens)) == 1000


def test_refresh_models_and_test_connection_against_a_local_openai(engine, monkeypatch, serve) -> None:
    fake = serve("openai")
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "Fake OpenAI", endpoint=fake.endpoint, key=GOOD_KEY)
    next(b for b in at.button if b.label == "Refresh models from the provider").click()
    at.run()
    assert f"Found {len(OPENAI_MODELS)} models" in texts(at)
    with transaction(engine) as session:
        assert sorted(session.scalar(select(Provider.settings))["models"]) == sorted(OPENAI_MODELS)

    try_key = next(t for t in at.text_input if t.label == "Try another key (optional)")
    try_key.input(WRONG_KEY)
    next(b for b in at.button if b.label == "Test connection").click()
    at.run()
    page = everything_rendered(at)
    assert "The provider refused or did not answer" in page
    assert WRONG_KEY not in page and GOOD_KEY not in page
    assert "401" in [str(m.value) for m in at.metric]


def test_raw_json_editor_validates_before_saving(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "P")
    editor = next(t for t in at.text_area if t.label == "Settings JSON")
    editor.input('{"models": ["a", "b"], "default_model": "c"')
    next(b for b in at.button if b.label == "Validate and save JSON").click()
    at.run()
    assert "Not valid JSON" in texts(at)
    editor = next(t for t in at.text_area if t.label == "Settings JSON")
    editor.input('{"models": ["a", "b"], "default_model": "c", "prices": {"a": {"input": -1}}}')
    next(b for b in at.button if b.label == "Validate and save JSON").click()
    at.run()
    assert "settings.prices.a.input" in texts(at)
    with transaction(engine) as session:
        assert session.scalar(select(Provider.settings))["models"] == []
    editor = next(t for t in at.text_area if t.label == "Settings JSON")
    editor.input('{"models": ["a", "b"], "default_model": "b", "prices": {"a": {"input": 1.25, "output": 5}}}')
    next(b for b in at.button if b.label == "Validate and save JSON").click()
    at.run()
    assert "Settings saved." in texts(at)
    with transaction(engine) as session:
        settings = session.scalar(select(Provider.settings))
    assert settings == {"models": ["a", "b"], "default_model": "b", "prices": {"a": {"input": 1.25, "output": 5.0}}}


def test_deactivate_then_delete_with_confirmation_keeps_logs(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "Doomed")
    with transaction(engine) as session:
        pid = session.scalar(select(Provider.id))
        session.add_all(Log(provider_id=pid, request_type="chat") for _ in range(3))
    at.run()
    next(b for b in at.button if b.label == "Deactivate").click()
    at.run()
    assert "Doomed is deactivated." in texts(at)
    assert "3 logged calls keep their numbers" in texts(at)
    delete = next(b for b in at.button if b.label == "Delete provider")
    assert delete.disabled
    next(t for t in at.text_input if t.label == "Type the provider's name to confirm").input("Doomed")
    at.run()
    next(b for b in at.button if b.label == "Delete provider").click()
    at.run()
    assert "3 logged calls no longer name a provider" in texts(at)
    with transaction(engine) as session:
        assert provider_count(engine) == 0
        assert session.scalar(select(func.count()).select_from(Log).where(Log.provider_id.is_(None))) == 3


EVIL_MARKDOWN = (
    "![tracker](http://evil.example/p.png) <img src=http://evil.example/q.png> ![r][r]\n\n[r]: http://e.example/x"
)


class _MarkdownErrorFake(FakeProvider):
    """A model list that fails with an error message written in Markdown and HTML."""

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, object]:
        return 502, {"error": {"message": EVIL_MARKDOWN, "type": "server_error"}}


def markdown_bodies(at) -> list[str]:
    """The text of every element that Streamlit renders as Markdown."""
    elements = [*at.success, *at.error, *at.warning, *at.info, *at.markdown, *at.caption, *at.subheader, *at.title]
    return [str(e.value) for e in elements]


def test_provider_names_and_upstream_text_never_render_as_markdown(engine, monkeypatch) -> None:
    """Issue 13 item 4: a provider name in "Saved …" and an upstream error text fetch nothing."""
    fake = _MarkdownErrorFake("openai")
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = fake
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        name = "Evil ![x](http://evil.example/n.png) <img src=http://evil.example/m.png>"
        at = admin_on_page(engine, monkeypatch)
        at = add_provider(at, name, endpoint=f"http://127.0.0.1:{server.server_address[1]}/v1", key=GOOD_KEY)
        assert not at.exception, at.exception
        next(b for b in at.button if b.label == "Save changes").click()
        at.run()
        assert f"Saved {name}." in texts(at)  # shown as typed, as text
        next(b for b in at.button if b.label == "Refresh models from the provider").click()
        at.run()
        assert "The provider answered 502" in texts(at)
        assert any("evil.example/p.png" in c.value for c in at.code)  # the provider's words, as code
        for body in markdown_bodies(at):
            assert_inert(body)
    finally:
        server.shutdown()
        server.server_close()


def edit_field(at, label: str):
    """A widget of the edit form (not the add form, whose widgets' keys start with new_provider_)."""
    return next(w for w in [*at.text_input, *at.checkbox] if w.label == label and not w.key.startswith("new_provider_"))


def save_edit(at):
    next(b for b in at.button if b.label == "Save changes").click()
    return at.run()


def test_a_typed_key_is_gone_from_the_add_and_edit_forms_after_saving(engine, monkeypatch) -> None:
    """Issue 13, item 10: the password field is emptied in the browser too (a value set by the app,
    `set_value`), not only on the server; a refused save keeps what was typed, to correct it."""
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "Bad max", key=SECRET, max_tokens="-1")
    assert at.text_input(key="new_provider_key").value == SECRET  # refused: kept for the correction
    at = add_provider(at, "Team OpenAI", key=SECRET)
    assert provider_count(engine) == 1
    for key in ("new_provider_key", "new_provider_name", "new_provider_endpoint", "new_provider_max_tokens"):
        widget = at.text_input(key=key)
        assert widget.value == "" and widget.proto.set_value, key

    typed = edit_field(at, "New API key")
    typed.input("sk-replaced-0000000000000000cdef")
    at = save_edit(at)
    assert "Saved Team OpenAI." in texts(at)
    fresh = edit_field(at, "New API key")
    assert fresh.key != typed.key and fresh.value == ""  # a new, empty field
    assert "••••cdef" in texts(at) + " ".join(str(e.value) for e in at.text)


def test_the_edit_form_asks_for_the_key_again_when_the_endpoint_moves_host(engine, monkeypatch) -> None:
    """Issue 13, item 8, on the page: the message is at the key field and nothing is saved."""
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "Team OpenAI", endpoint="https://api.openai.com/v1", key=SECRET)
    edit_field(at, "Endpoint URL").input("https://collector.example/v1")
    at = save_edit(at)
    message = error_under(at, edit_field(at, "Remove the stored key").key)
    assert message is not None and "enter the API key again" in message
    with transaction(engine) as session:
        assert session.scalar(select(Provider.endpoint_url)) == "https://api.openai.com/v1"
    edit_field(at, "New API key").input("sk-for-the-collector-000000009999")
    at = save_edit(at)
    assert "Saved Team OpenAI." in texts(at)
    with transaction(engine) as session:
        assert session.scalar(select(Provider.endpoint_url)) == "https://collector.example/v1"


def test_a_link_local_endpoint_is_refused_at_the_endpoint_field(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "Metadata", protocol="openai-compatible", endpoint="http://169.254.169.254/latest")
    message = error_under(at, "new_provider_endpoint")
    assert message is not None and "link-local" in message
    assert provider_count(engine) == 0


def test_a_keyless_openai_provider_is_neither_added_active_nor_activated(engine, monkeypatch) -> None:
    """Issue 13, item 14: it would be offered in the playground and fail there."""
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "No key", key="")
    message = error_under(at, "new_provider_key")
    assert message is not None and "need an API key to be active" in message
    assert provider_count(engine) == 0
    at.checkbox(key="new_provider_active").uncheck()
    at = add_provider(at, "No key", key="")
    assert provider_count(engine) == 1
    next(b for b in at.button if b.label == "Activate").click()
    at.run()
    assert "need an API key to be active" in texts(at)
    with transaction(engine) as session:
        assert session.scalar(select(Provider.is_active)) is False


def test_settings_problems_quoting_model_ids_render_as_text(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "P")
    editor = next(t for t in at.text_area if t.label == "Settings JSON")
    editor.input('{"prices": {"![m](http://evil.example/m.png)": {"input": -1, "output": 1}}}')
    next(b for b in at.button if b.label == "Validate and save JSON").click()
    at.run()
    assert "Input price of ![m](http://evil.example/m.png) must be a number" in texts(at)
    for body in markdown_bodies(at):
        assert_inert(body)


# --- prices in use and where they come from (issue 16: the built-in price table) ---------------


def prices_shown(at) -> dict[str, tuple]:
    """The models table: model -> (own input, own output, input in use, output in use, source)."""
    table = next(d.value for d in at.dataframe if "Price from" in d.value.columns)

    def number(value):
        return None if value is None or value != value else float(value)  # NaN is an empty cell

    return {
        row["Model"]: (
            number(row["Your input USD / 1M tokens"]),
            number(row["Your output USD / 1M tokens"]),
            number(row["Input in use"]),
            number(row["Output in use"]),
            row["Price from"],
        )
        for _, row in table.iterrows()
    }


def captions(at) -> str:
    """The captions as the reader sees them (Markdown escapes removed)."""
    return re.sub(r"\\(.)", r"\1", "\n".join(str(c.value) for c in at.caption))


def save_settings_json(at, settings: str):
    editor = next(t for t in at.text_area if t.label == "Settings JSON")
    editor.input(settings)
    next(b for b in at.button if b.label == "Validate and save JSON").click()
    return at.run()


def test_models_show_the_price_in_use_and_its_source(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "OpenAI")
    at = save_settings_json(
        at,
        '{"models": ["gpt-4o", "gpt-4o-mini-2024-07-18", "my-fine-tune"], '
        '"prices": {"gpt-4o": {"input": 2, "output": 8}}}',
    )
    assert "Settings saved." in texts(at)
    shown = prices_shown(at)
    assert shown["gpt-4o"] == (2.0, 8.0, 2.0, 8.0, "this provider")  # an override wins
    assert shown["gpt-4o-mini-2024-07-18"] == (None, None, 0.15, 0.6, "built-in")  # by the snapshot rule
    assert shown["my-fine-tune"] == (None, None, None, None, "unpriced")
    page = captions(at)
    assert "Built-in prices (openai list prices as of" in page
    assert "https://developers.openai.com/api/docs/pricing" in page
    built_in = next(d.value for d in at.dataframe if "Overridden here" in d.value.columns)
    assert bool(built_in.set_index("Model").loc["gpt-4o", "Overridden here"]) is True

    # Clearing the override falls back to the built-in price.
    at = save_settings_json(at, '{"models": ["gpt-4o", "my-fine-tune"], "prices": {}}')
    assert prices_shown(at)["gpt-4o"] == (None, None, 2.5, 10.0, "built-in")


def test_an_openai_compatible_server_gets_no_built_in_prices(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "Local", protocol="openai-compatible", endpoint="http://localhost:11434/v1")
    at = save_settings_json(at, '{"models": ["gpt-4o", "llama3"], "prices": {"llama3": {"input": 0, "output": 0}}}')
    shown = prices_shown(at)
    assert shown["gpt-4o"][2:] == (None, None, "unpriced")  # the same id on someone else's server
    assert shown["llama3"][2:] == (0.0, 0.0, "this provider")  # free by the admin's word, not by default
    assert "No built-in prices apply" in captions(at)
    assert not any("Overridden here" in d.value.columns for d in at.dataframe)


# --- everyday flow (issue 17): confirmation and an empty form after a save, all errors at once, the tab
# kept, the provider in the URL --------------------------------------------------------------------------


def provider_id(engine, name: str) -> str:
    with transaction(engine) as session:
        return str(session.scalar(select(Provider.id).where(Provider.name == name)))


def test_a_saved_provider_is_confirmed_and_the_add_form_emptied(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "Team OpenAI", key=SECRET, max_tokens="4096")
    assert "Added Team OpenAI." in texts(at)
    for key in ("new_provider_name", "new_provider_endpoint", "new_provider_key", "new_provider_max_tokens"):
        assert at.text_input(key=key).value == "", key
    assert at.selectbox(key="new_provider_protocol").value == "openai"


def test_every_problem_of_the_add_form_is_shown_at_once_at_its_field(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "", endpoint="ftp://models.example", key="two words", max_tokens="-5")
    assert error_under(at, "new_provider_name") == "Provider name is required"
    assert "must start with http:// or https://" in error_under(at, "new_provider_endpoint")
    assert "cannot contain spaces" in error_under(at, "new_provider_key")
    assert error_under(at, "new_provider_max_tokens") == "Max tokens must be greater than 0"
    assert provider_count(engine) == 0
    assert at.text_input(key="new_provider_endpoint").value == "ftp://models.example"  # kept to correct


def test_every_problem_of_the_edit_form_is_shown_at_once(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "Local", protocol="openai-compatible", endpoint="http://127.0.0.1:11434/v1")
    next(t for t in at.text_input if t.label == "Name" and t.key != "new_provider_name").input("")
    next(t for t in at.text_input if t.label == "Max tokens per call" and t.key != "new_provider_max_tokens").input(
        "1.5"
    )
    next(b for b in at.button if b.label == "Save changes").click()
    at.run()
    edit_name = next(t.key for t in at.text_input if t.label == "Name" and t.key != "new_provider_name")
    edit_max = next(
        t.key for t in at.text_input if t.label == "Max tokens per call" and t.key != "new_provider_max_tokens"
    )
    assert error_under(at, edit_name) == "Provider name is required"
    assert error_under(at, edit_max) == "Max tokens must be a whole number"


def test_settings_json_problems_are_listed_per_field(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "P")
    at = save_settings_json(
        at, '{"models": ["a", 5, 6], "default_model": "z", "prices": {"a": {"input": -1}}, "colour": 1}'
    )
    shown = [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]  # as read: Markdown escapes removed
    lines = next(body for body in shown if "settings.models" in body).split("\n")
    assert lines[0].startswith("- Unknown setting colour")  # the slot's own field needs no name
    assert any(line.startswith("- settings.models: Model #2:") and "Model #3:" in line for line in lines)
    assert any(line.startswith("- settings.default_model: Default model 'z'") for line in lines)
    assert any(line.startswith("- settings.prices.a.input:") for line in lines)
    assert any(line.startswith("- settings.prices.a.output:") for line in lines)


def test_refresh_models_keeps_the_admin_on_the_models_tab(engine, monkeypatch, serve) -> None:
    fake = serve("openai")
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "Fake OpenAI", endpoint=fake.endpoint, key=GOOD_KEY)
    assert open_tab(at, "Settings") == "Settings"
    at.session_state["provider_tab"] = "Models and prices"  # what clicking the tab sends
    at.run()
    next(b for b in at.button if b.label == "Refresh models from the provider").click()
    at.run()
    assert f"Found {len(OPENAI_MODELS)} models" in texts(at)
    assert open_tab(at, "Settings") == "Models and prices"
    next(b for b in at.button if b.label == "Save models and prices").click()
    at.run()
    assert "Models and prices saved." in texts(at)
    assert open_tab(at, "Settings") == "Models and prices"


def test_the_provider_being_managed_is_in_the_url_and_survives_a_reload(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = add_provider(at, "Alpha")
    at = add_provider(at, "Beta")
    alpha, beta = provider_id(engine, "Alpha"), provider_id(engine, "Beta")
    assert at.query_params["provider"] == beta  # the one just added
    at.selectbox(key="selected_provider").select(alpha)
    at.run()
    assert at.query_params["provider"] == alpha

    # A reload: a new session that starts from the URL.
    again = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com").switch_page(PAGE)
    again.query_params["provider"] = beta
    again.run()
    assert again.selectbox(key="selected_provider").value == beta
    assert next(t for t in again.text_input if t.label == "Name" and t.key != "new_provider_name").value == "Beta"

    # An unknown id: said so, the provider shown stays, and the URL is put right.
    again.query_params["provider"] = "00000000-0000-0000-0000-000000000000"
    again.run()
    assert not again.exception, again.exception
    assert "The provider in the link was not found." in texts(again)
    assert again.selectbox(key="selected_provider").value == beta
    assert again.query_params["provider"] == beta

    # Reloaded with an unknown id: the first provider.
    fresh = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com").switch_page(PAGE)
    fresh.query_params["provider"] = "not-an-id"
    fresh.run()
    assert "The provider in the link was not found." in texts(fresh)
    assert fresh.selectbox(key="selected_provider").value == alpha
    assert fresh.query_params["provider"] == alpha
