"""The API guide: the base URL, the user's model ids, copyable examples that never hold a stored key, errors."""

from __future__ import annotations

import ast
import json
import shlex

import pytest
from sqlalchemy import Engine, select

from mindroute.db import transaction
from mindroute.http.chat_request import chat_from_body
from mindroute.http.openapi import OPENAPI
from mindroute.models import Provider, User, UserProvider
from mindroute.services import api_keys
from mindroute.ui import api_guide
from mindroute.ui.api_guide import BaseUrl, api_base_url
from tests.pages.helpers import add_user, app_for, sign_in, texts

GUIDE = "pages/workspace/api_guide.py"


def grant(engine: Engine, email: str, name: str, models: list[str]) -> None:
    with transaction(engine) as session:
        user = session.scalar(select(User).where(User.email == email))
        provider = Provider(name=name, settings={"models": models, "default_model": models[0], "prices": {}})
        session.add(provider)
        session.flush()
        session.add(UserProvider(user_id=user.id, provider_id=provider.id, allowed=True))


def on_guide(engine: Engine, monkeypatch, email: str = "user@example.com", url: str | None = None):
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    if url is not None:
        at.context["url"] = url
    at.switch_page(GUIDE).run()
    assert not at.exception, at.exception
    return at


def code_blocks(at) -> str:
    return "\n".join(c.value for c in at.code)


@pytest.fixture
def people(engine: Engine) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")


def test_the_guide_shows_my_models_and_examples_for_them(engine: Engine, monkeypatch, people) -> None:
    grant(engine, "user@example.com", "Team OpenAI", ["gpt-4o-mini", "gpt-4o"])
    with transaction(engine) as session:  # a provider the user is not granted
        session.add(Provider(name="Hidden", settings={"models": ["secret-model"], "default_model": None, "prices": {}}))
    at = on_guide(engine, monkeypatch, url="https://mindroute.example.com/api_guide")

    shown = at.dataframe[0].value
    assert list(shown["model id"]) == ["Team OpenAI/gpt-4o-mini", "Team OpenAI/gpt-4o"]
    assert "secret-model" not in texts(at) + code_blocks(at)
    code = code_blocks(at)
    assert "https://mindroute.example.com/v1" in [c.value for c in at.code]
    assert "curl https://mindroute.example.com/v1/chat/completions" in code
    assert "curl -N https://mindroute.example.com/v1/chat/completions" in code
    assert '"stream": true' in code and "stream=True" in code and "stream: true" in code
    assert 'base_url="https://mindroute.example.com/v1"' in code  # the openai Python SDK
    assert 'baseURL: "https://mindroute.example.com/v1"' in code  # the openai Node SDK
    assert '"model": "Team OpenAI/gpt-4o-mini"' in code
    assert "https://mindroute.example.com/v1/openapi.json" in code
    assert [b.proto.url for b in at.get("link_button")] == ["https://mindroute.example.com/v1/openapi.json"]
    assert "could not read the address" not in texts(at)

    at.selectbox(key="api_guide_model").set_value("Team OpenAI/gpt-4o").run()
    assert 'model="Team OpenAI/gpt-4o",' in code_blocks(at)


def test_the_guide_shows_tools_structured_output_and_embeddings(engine: Engine, monkeypatch, people) -> None:
    grant(engine, "user@example.com", "Team OpenAI", ["gpt-4o-mini"])
    at = on_guide(engine, monkeypatch, url="https://mindroute.example.com/api_guide")
    blocks = [c.value for c in at.code]
    tools = next(b for b in blocks if "tools=tools" in b)
    assert '"type": "function"' in tools and "message.tool_calls" in tools
    assert '{"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}' in tools
    assert "json.loads(call.function.arguments)" in tools
    structured = next(b for b in blocks if "response_format=" in b)
    assert '"type": "json_schema"' in structured and "json.loads(response.choices[0].message.content)" in structured
    embeddings = next(b for b in blocks if "client.embeddings.create(" in b)
    assert "response.data" in embeddings and "item.embedding" in embeddings
    for block in (tools, structured, embeddings):
        assert 'base_url="https://mindroute.example.com/v1"' in block
        assert 'model="Team OpenAI/gpt-4o-mini"' in block
        assert 'os.environ["MINDROUTE_API_KEY"]' in block
        compile(block, "example", "exec")  # each is a whole Python program
    assert [t.label for t in at.tabs][-3:] == ["Tool calling", "Structured output", "Embeddings"]


def test_the_examples_never_show_a_stored_key(engine: Engine, monkeypatch, people) -> None:
    grant(engine, "user@example.com", "P1", ["m1"])
    with transaction(engine) as session:
        user = session.scalar(select(User).where(User.email == "user@example.com"))
        issued = api_keys.create_key(session, user, user.id, "laptop", None)
    at = on_guide(engine, monkeypatch)
    page = texts(at) + code_blocks(at)
    assert issued.plaintext not in page
    assert "Bearer $MINDROUTE_API_KEY" in page and 'os.environ["MINDROUTE_API_KEY"]' in page
    assert "process.env.MINDROUTE_API_KEY" in page
    assert any(link.proto.page == "api_keys" for link in at.page_link)


def test_without_the_browsers_address_the_base_url_is_a_stated_guess(engine: Engine, monkeypatch, people) -> None:
    at = on_guide(engine, monkeypatch)
    assert "http://localhost:8501/v1" in [c.value for c in at.code]
    assert "This address is a guess (http://localhost:8501)" in texts(at)
    assert "without its API" in texts(at)  # AppTest runs Home.py, not app.py with its routes


def test_a_user_without_models_gets_a_placeholder(engine: Engine, monkeypatch, people) -> None:
    at = on_guide(engine, monkeypatch)
    assert "You may not use any model yet" in texts(at)
    assert '"model": "<provider name>/<model>"' in code_blocks(at)
    assert not [s for s in at.selectbox if s.key == "api_guide_model"]


def test_the_error_statuses_are_the_apis_own(engine: Engine, monkeypatch, people) -> None:
    at = on_guide(engine, monkeypatch)
    errors = next(d.value for d in at.dataframe if "meaning" in d.value.columns)
    documented = OPENAPI["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert list(errors["status"]) == sorted(int(s) for s in documented if int(s) >= 400)
    assert {401, 403, 404, 429, 502, 504} <= set(errors["status"])
    row = errors[errors["status"] == 401].iloc[0]
    assert row["meaning"] == documented["401"]["description"]


# --- the helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "headers", "expected", "guessed"),
    [
        ("http://127.0.0.1:8501/api_guide", None, "http://127.0.0.1:8501/v1", False),
        ("https://mr.example.com/", None, "https://mr.example.com/v1", False),
        (None, {"host": "intranet:9000"}, "http://intranet:9000/v1", False),
        (None, {"host": "mr.example.com", "x-forwarded-proto": "https"}, "https://mr.example.com/v1", False),
        (None, {"host": "evil.example/<script>"}, "http://localhost:8501/v1", True),
        ("javascript:alert(1)", None, "http://localhost:8501/v1", True),
        (None, None, "http://localhost:8501/v1", True),
    ],
)
def test_the_base_url_comes_from_the_browsers_address(url, headers, expected: str, guessed: bool) -> None:
    base = api_base_url(url, headers)
    assert (base.url, base.guessed) == (expected, guessed)


def test_odd_model_ids_cannot_break_the_snippets() -> None:
    base = BaseUrl("https://mr.example.com/v1", guessed=False)
    model = 'Bob\'s "LLM"/m$(rm -rf ~)`x`'
    for stream in (False, True):
        words = shlex.split(api_guide.curl_example(base, model, stream=stream).replace("\\\n", " "))
        body = json.loads(words[words.index("-d") + 1])
        assert body["model"] == model and body.get("stream", False) is stream
        tree = ast.parse(api_guide.python_example(base, model, stream=stream))
        literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
        assert model in literals and "https://mr.example.com/v1" in literals
        assert json.dumps(model) in api_guide.node_example(base, model, stream=stream)
    for example in (
        api_guide.python_tools_example,
        api_guide.python_structured_example,
        api_guide.python_embeddings_example,
    ):
        tree = ast.parse(example(base, model))
        literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
        assert model in literals and "https://mr.example.com/v1" in literals


def test_a_korean_provider_name_is_written_as_itself_in_the_snippets() -> None:
    base = BaseUrl("https://mr.example.com/v1", guessed=False)
    model = '사내 OpenAI/gpt-4o\u2028"x"'
    words = shlex.split(api_guide.curl_example(base, model).replace("\\\n", " "))
    assert json.loads(words[words.index("-d") + 1])["model"] == model
    for example in (api_guide.python_example, api_guide.python_tools_example, api_guide.python_embeddings_example):
        code = example(base, model)
        assert "사내 OpenAI" in code and "\\uc0ac" not in code
        assert model in [n.value for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Constant)]
    assert '"사내 OpenAI/gpt-4o' in api_guide.node_example(base, model)
    assert "…what went wrong…" in api_guide.error_body_example()


def test_the_tool_example_sends_what_the_api_accepts() -> None:
    """The tool example's request, as the SDK sends it, and its tool message round are accepted by the parser."""
    source = api_guide.python_tools_example(BaseUrl("https://mr.example.com/v1", guessed=False), "P/m")
    tree = ast.parse(source)
    tools = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "tools"
    )
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    messages = [
        {"role": "user", "content": "What is the weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"forecast": "sunny"}'},
    ]
    request = chat_from_body({"model": "P/m", "messages": messages, "tools": tools}).request
    assert [t.name for t in request.tools] == ["get_weather"] and request.messages[2].tool_call_id == "call_1"
