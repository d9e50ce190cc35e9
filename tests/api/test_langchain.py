"""LangChain's ChatOpenAI against the API on every protocol: tool calls, an agent loop, structured output."""

from __future__ import annotations

import os

import pytest
from pydantic import BaseModel, Field

from tests.api.conftest import PROTOCOLS, add_account, add_provider, logged
from tests.providers.conftest import make_target
from tests.providers.fake_base import example_from_schema, tool_results_answer

try:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
except ImportError as missing:  # pragma: no cover - requirements-dev.txt installs it
    if os.environ.get("MINDROUTE_REQUIRE_LANGCHAIN"):
        raise
    pytest.skip(
        f"langchain-openai is not installed ({missing}): pip install -r requirements-dev.txt", allow_module_level=True
    )


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Current weather for a city."""
    return f"sunny in {city} ({unit})"


@tool
def get_time(zone: str) -> str:
    """The time in a zone."""
    return f"14:00 in {zone}"


TOOLS = {t.name: t for t in (get_weather, get_time)}


class Forecast(BaseModel):
    """A weather forecast."""

    city: str = Field(description="The city")
    temperature: float
    rainy: bool
    tags: list[str]


@pytest.fixture(params=PROTOCOLS)
def model(request, engine, server):
    target = make_target(request, request.param)
    account = add_account(engine)
    add_provider(engine, "Fake", target.protocol, target.server, target.key, grant_to=account.user_id)
    chat = ChatOpenAI(
        base_url=server.url + "/v1", api_key=account.key, model="Fake/test-model", max_retries=0, timeout=20
    )
    return target, chat


def _tool_schema(name: str) -> dict:
    return TOOLS[name].tool_call_schema.model_json_schema()


def test_bind_tools_gives_tool_calls(model):
    _, chat = model
    answer = chat.bind_tools(list(TOOLS.values())).invoke("What is the weather in Paris?")
    assert isinstance(answer, AIMessage)
    [call] = answer.tool_calls
    assert call["name"] == "get_weather"
    assert call["args"] == example_from_schema(_tool_schema("get_weather"))
    assert call["id"]
    assert answer.response_metadata["finish_reason"] == "tool_calls"


def test_an_agent_loop_of_two_tool_rounds(model, engine):
    _, chat = model
    bound = chat.bind_tools(list(TOOLS.values()))
    messages: list = []
    rounds = 0
    for question in ("What is the weather in Paris?", "And in Rome?"):
        messages.append(HumanMessage(question))
        while True:
            answer = bound.invoke(messages)
            messages.append(answer)
            if not answer.tool_calls:
                break
            rounds += 1
            results = []
            for call in answer.tool_calls:
                result = TOOLS[call["name"]].invoke(call["args"])
                results.append(result)
                messages.append(ToolMessage(result, tool_call_id=call["id"]))
            assert rounds <= 4, "the loop does not end"
        assert answer.content == tool_results_answer(results)
    assert rounds == 2
    assert len(logged(engine, 4)) == 4


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_with_structured_output(model, method):
    target, chat = model
    structured = (
        chat.with_structured_output(Forecast)
        if method == "json_schema"
        else (chat.with_structured_output(Forecast, method=method))
    )
    forecast = structured.invoke("The forecast for Paris")
    assert isinstance(forecast, Forecast)
    assert forecast == Forecast.model_validate(example_from_schema(Forecast.model_json_schema()))
    sent = target.fake.last.body
    if method == "function_calling":  # the schema went as the one tool, the call forced
        assert "tools" in sent
    elif target.protocol.startswith("openai"):
        assert sent["response_format"]["type"] == "json_schema"
