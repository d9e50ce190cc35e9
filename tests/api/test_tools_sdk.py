"""Tools, structured output and several choices through the API with the official openai client, on every protocol."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

from tests.api.conftest import PROTOCOLS, add_account, add_provider, logged
from tests.providers.conftest import make_target
from tests.providers.fake_base import example_from_schema, expected_answer, tool_results_answer

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city"],
}
TIME_PARAMETERS = {
    "type": "object",
    "properties": {"zone": {"type": "string"}, "hours_ahead": {"type": "integer"}},
    "required": ["zone"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city (tools-sdk test)",
            "parameters": WEATHER_PARAMETERS,
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "The time in a zone", "parameters": TIME_PARAMETERS},
    },
]
EXAMPLES = {"get_weather": example_from_schema(WEATHER_PARAMETERS), "get_time": example_from_schema(TIME_PARAMETERS)}
MODELS = ["test-model", "parallel-tools"]
# Gemini sends no call id: MindRoute makes one. The others' fakes number theirs.
ID_PREFIX = {"openai": "call_fake", "openai-compatible": "call_fake", "anthropic": "toolu_fake", "google": "call_"}


class Weather(BaseModel):
    city: str
    temperature: float
    rainy: bool
    tags: list[str]


def client_for(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=20)


@pytest.fixture(params=PROTOCOLS)
def world(request, engine, server):
    target = make_target(request, request.param)
    account = add_account(engine)
    add_provider(engine, "Fake", target.protocol, target.server, target.key, MODELS, grant_to=account.user_id)
    return target, client_for(server, account.key)


def ask(text: str = "What is the weather in Paris?") -> list[dict]:
    return [{"role": "user", "content": text}]


def assert_call(call, name: str, protocol: str) -> None:
    assert call.type == "function"
    assert call.function.name == name
    assert json.loads(call.function.arguments) == EXAMPLES[name]
    assert call.id and call.id.startswith(ID_PREFIX[protocol]), call.id


@pytest.mark.parametrize(
    ("choice", "called"),
    [
        ("auto", "get_weather"),
        ("required", "get_weather"),
        ({"type": "function", "function": {"name": "get_time"}}, "get_time"),
    ],
)
def test_a_tool_call_answer_whole(world, choice, called):
    target, client = world
    completion = client.chat.completions.create(
        model="Fake/test-model", messages=ask(), tools=TOOLS, tool_choice=choice
    )
    [answer] = completion.choices
    assert answer.finish_reason == "tool_calls"
    [call] = answer.message.tool_calls
    assert_call(call, called, target.protocol)


def test_tool_choice_none_answers_text(world):
    _, client = world
    completion = client.chat.completions.create(
        model="Fake/test-model", messages=ask("no tools please"), tools=TOOLS, tool_choice="none"
    )
    [answer] = completion.choices
    assert answer.finish_reason == "stop"
    assert answer.message.content == expected_answer("no tools please")
    assert not answer.message.tool_calls


def _streamed_calls(chunks) -> tuple[dict[int, dict], list[str]]:
    calls: dict[int, dict] = {}
    finishes = []
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
            for piece in choice.delta.tool_calls or []:
                if piece.index not in calls:
                    # The first piece of each call names it.
                    assert piece.id and piece.function.name, piece
                    calls[piece.index] = {"id": piece.id, "name": piece.function.name, "pieces": []}
                else:
                    assert piece.id in (None, calls[piece.index]["id"])
                if piece.function and piece.function.arguments:
                    calls[piece.index]["pieces"].append(piece.function.arguments)
    return calls, finishes


@pytest.mark.parametrize("model", ["test-model", "parallel-tools"])
def test_streamed_tool_calls_come_in_pieces_that_reassemble_to_the_whole_answer(world, model):
    target, client = world
    whole = client.chat.completions.create(model=f"Fake/{model}", messages=ask(), tools=TOOLS)
    stream = client.chat.completions.create(model=f"Fake/{model}", messages=ask(), tools=TOOLS, stream=True)
    calls, finishes = _streamed_calls(list(stream))
    assert finishes[-1] == "tool_calls"
    expected = whole.choices[0].message.tool_calls
    assert sorted(calls) == list(range(len(expected)))
    for position, call in enumerate(expected):
        streamed = calls[position]
        assert streamed["name"] == call.function.name
        assert json.loads("".join(streamed["pieces"])) == json.loads(call.function.arguments)
        assert streamed["id"].startswith(ID_PREFIX[target.protocol])
        if target.protocol != "google":  # Gemini sends each call whole; the others split the arguments
            assert len(streamed["pieces"]) >= 2, streamed


def _answer_calls(messages: list[dict], calls, results: dict[str, str]) -> None:
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in calls
            ],
        }
    )
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": results[call.function.name]})


def test_an_agent_loop_of_two_tool_rounds(world, engine):
    target, client = world
    messages = ask()
    results = {"get_weather": "sunny, 21 C", "get_time": "14:00"}
    for round_number, question in enumerate(["What is the weather in Paris?", "And the time there?"]):
        if round_number:
            messages.append({"role": "user", "content": question})
        first = client.chat.completions.create(model="Fake/test-model", messages=messages, tools=TOOLS)
        assert first.choices[0].finish_reason == "tool_calls"
        calls = first.choices[0].message.tool_calls
        assert_call(calls[0], "get_weather", target.protocol)
        _answer_calls(messages, calls, results)
        second = client.chat.completions.create(model="Fake/test-model", messages=messages, tools=TOOLS)
        assert second.choices[0].finish_reason == "stop"
        assert second.choices[0].message.content == tool_results_answer([results["get_weather"]])
        messages.append({"role": "assistant", "content": second.choices[0].message.content})
    # The last upstream request carried both rounds' calls and results, ids kept.
    sent = json.dumps(target.fake.last.body)
    assert "sunny, 21 C" in sent
    if target.protocol != "google":  # Gemini's wire has no ids of its own to carry them
        assert calls[0].id in sent
    rows = logged(engine, 4)
    assert all(row.status_code == 200 for row in rows)


def test_parallel_tool_calls_and_their_results(world):
    target, client = world
    messages = ask()
    first = client.chat.completions.create(model="Fake/parallel-tools", messages=messages, tools=TOOLS)
    calls = first.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    for call in calls:
        assert_call(call, call.function.name, target.protocol)
    assert len({c.id for c in calls}) == 2
    results = {"get_weather": "rain", "get_time": "09:30"}
    _answer_calls(messages, calls, results)
    second = client.chat.completions.create(model="Fake/parallel-tools", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == tool_results_answer(["rain", "09:30"])


def test_parallel_tool_calls_false(world):
    target, client = world
    call = lambda: client.chat.completions.create(  # noqa: E731
        model="Fake/parallel-tools", messages=ask(), tools=TOOLS, parallel_tool_calls=False
    )
    # The model would call two tools; each protocol gets one: OpenAI and Anthropic by asking (the field, or
    # disable_parallel_tool_use), Gemini, which has no way to ask, by MindRoute keeping only the first call.
    [only] = call().choices[0].message.tool_calls
    assert_call(only, "get_weather", target.protocol)
    if target.protocol == "google":
        assert "parallel" not in json.dumps(target.fake.last.body)


def test_parse_with_a_pydantic_model_gives_the_parsed_object(world):
    target, client = world
    completion = client.chat.completions.parse(
        model="Fake/test-model", messages=ask("Describe Paris' weather"), response_format=Weather
    )
    message = completion.choices[0].message
    schema = Weather.model_json_schema()
    assert message.parsed == Weather.model_validate(example_from_schema(schema))
    sent = target.fake.last
    if target.protocol == "anthropic":
        assert sent.body["output_format"]["type"] == "json_schema"
        assert "structured-outputs-2025-11-13" in sent.headers.get("anthropic-beta", "")
    elif target.protocol == "google":
        assert sent.body["generationConfig"]["responseMimeType"] == "application/json"
        assert set(sent.body["generationConfig"]["responseSchema"]["properties"]) == set(schema["properties"])
    else:
        assert sent.body["response_format"]["type"] == "json_schema"
        assert sent.body["response_format"]["json_schema"]["strict"] is True


def test_json_object(world):
    target, client = world
    call = lambda: client.chat.completions.create(  # noqa: E731
        model="Fake/test-model", messages=ask("json please"), response_format={"type": "json_object"}
    )
    if target.protocol == "anthropic":
        with pytest.raises(openai.BadRequestError) as refused:
            call()
        assert refused.value.body["param"] == "response_format"
        assert "json_schema" in refused.value.body["message"]
        assert target.fake.requests == []
        return
    answer = json.loads(call().choices[0].message.content)
    assert set(answer) == {"answer"}
    assert "json please" in answer["answer"]


def test_two_choices(world, engine):
    target, client = world
    call = lambda: client.chat.completions.create(model="Fake/test-model", messages=ask("twice"), n=2)  # noqa: E731
    if target.protocol == "anthropic":
        with pytest.raises(openai.BadRequestError) as refused:
            call()
        assert refused.value.body["param"] == "n"
        assert target.fake.requests == []
        [row] = logged(engine, 1)
        assert row.status_code == 400
        return
    completion = call()
    assert [c.index for c in completion.choices] == [0, 1]
    for choice in completion.choices:  # the fakes may mark which candidate is which: "(1) Hello..."
        assert choice.message.content.endswith(expected_answer("twice"))
        assert choice.finish_reason == "stop"
    assert completion.choices[0].message.content == expected_answer("twice")


@pytest.mark.parametrize("protocol", ["anthropic", "google"])
def test_a_refused_field_is_a_bad_request_naming_it(protocol, engine, server, request):
    target = make_target(request, protocol)
    account = add_account(engine)
    add_provider(engine, "Fake", protocol, target.server, target.key, MODELS, grant_to=account.user_id)
    with pytest.raises(openai.BadRequestError) as refused:
        client_for(server, account.key).chat.completions.create(
            model="Fake/test-model", messages=ask(), logit_bias={"50256": -100}
        )
    assert refused.value.status_code == 400
    assert refused.value.body["param"] == "logit_bias"
    assert "logit_bias" in refused.value.body["message"]
    assert target.fake.requests == []


def test_stream_options_without_stream_is_refused(world):
    target, client = world
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="Fake/test-model", messages=ask(), stream_options={"include_usage": True})
    assert refused.value.body["param"] == "stream_options"
    assert target.fake.requests == []


@pytest.mark.parametrize("stream", [False, True])
def test_the_logs_row_holds_the_tools_and_the_calls(world, engine, stream):
    _, client = world
    if stream:
        calls, _ = _streamed_calls(
            list(client.chat.completions.create(model="Fake/test-model", messages=ask(), tools=TOOLS, stream=True))
        )
        call_id = calls[0]["id"]
    else:
        completion = client.chat.completions.create(model="Fake/test-model", messages=ask(), tools=TOOLS)
        call_id = completion.choices[0].message.tool_calls[0].id
    [row] = logged(engine, 1)
    assert row.status_code == 200
    logged_tools = json.dumps(row.request_body["tools"])
    assert "get_weather" in logged_tools and "get_time" in logged_tools
    answer = json.dumps(row.response_body)
    assert call_id in answer and "get_weather" in answer
    assert json.dumps(EXAMPLES["get_weather"]) in answer or json.dumps(json.dumps(EXAMPLES["get_weather"])) in answer
