"""OpenAI Chat Completions with every field: tools, structured output, n choices, logprobs and options, both ways."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from mindroute.providers.errors import BadRequestError
from mindroute.providers.openai import OpenAIAdapter
from mindroute.providers.shapes import (
    Attachment,
    ChatMessage,
    ChatRequest,
    ChatResult,
    ResponseFormat,
    StreamChunk,
    StreamEnd,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)
from mindroute.providers.sse import SSEEvent
from tests.providers.conftest import Caller, Target, ask
from tests.providers.fake_base import example_from_schema, tool_results_answer
from tests.providers.fakes import OPENAI_KEY, expected_answer
from tests.providers.media import IMAGE, PNG_BYTES, b64

WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city"],
    "additionalProperties": False,
}
TIME_PARAMS = {"type": "object", "properties": {"zone": {"type": "string"}, "hours": {"type": "integer"}}}
WEATHER = ToolSpec("get_weather", "The weather in a city", WEATHER_PARAMS, strict=True)
TIME = ToolSpec("get_time", None, TIME_PARAMS)
WEATHER_ARGS = json.dumps(example_from_schema(WEATHER_PARAMS))  # {"city": "x", "unit": "celsius"}
TIME_ARGS = json.dumps(example_from_schema(TIME_PARAMS))
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array"}},
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


def with_tools(text: str = "Weather in Paris?", model: str = "test-model", **fields: Any) -> ChatRequest:
    return ask(text, model=model, tools=(WEATHER, TIME), **fields)


def deltas(items: list[Any]) -> list[ToolCallDelta]:
    return [item for item in items if isinstance(item, ToolCallDelta)]


def chunks(items: list[Any], choice: int = 0) -> list[StreamChunk]:
    return [item for item in items if isinstance(item, StreamChunk) and item.choice == choice]


def end_of(items: list[Any]) -> StreamEnd:
    assert isinstance(items[-1], StreamEnd)
    return items[-1]


# -- tools and tool_choice on the wire --


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        (None, None),
        (ToolChoice("auto"), "auto"),
        (ToolChoice("none"), "none"),
        (ToolChoice("required"), "required"),
        (ToolChoice("function", "get_time"), {"type": "function", "function": {"name": "get_time"}}),
    ],
)
def test_tools_and_each_tool_choice_reach_the_server_as_openai_has_them(
    openai: Target, caller: Caller, choice: ToolChoice | None, sent: Any
) -> None:
    caller.complete(openai, with_tools(tool_choice=choice))

    body = openai.fake.last.body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER_PARAMS,
                "strict": True,
            },
        },
        # Unset keys are left out, not sent as null.
        {"type": "function", "function": {"name": "get_time", "parameters": TIME_PARAMS}},
    ]
    assert body.get("tool_choice") == sent
    assert ("tool_choice" in body) is (choice is not None)


def test_a_tool_without_parameters_is_sent_with_its_name_only(openai: Target, caller: Caller) -> None:
    result = caller.complete(openai, ask("Ping", tools=(ToolSpec("ping"),)))

    assert openai.fake.last.body["tools"] == [{"type": "function", "function": {"name": "ping"}}]
    assert result.tool_calls == (ToolCall("call_fake1", "ping", "{}"),)


def test_a_forced_function_is_the_one_called(openai: Target, caller: Caller) -> None:
    result = caller.complete(openai, with_tools(tool_choice=ToolChoice("function", "get_time")))
    assert result.tool_calls == (ToolCall("call_fake1", "get_time", TIME_ARGS),)


def test_tool_choice_none_gets_a_text_answer(openai: Target, caller: Caller) -> None:
    result = caller.complete(openai, with_tools(tool_choice=ToolChoice("none")))
    assert openai.fake.last.body["tool_choice"] == "none"
    assert (result.text, result.tool_calls, result.finish_reason) == (expected_answer("Weather in Paris?"), (), "stop")


def test_a_tool_choice_naming_no_tool_is_refused_by_the_server_as_sent(openai: Target, caller: Caller) -> None:
    with pytest.raises(BadRequestError, match="no such tool was found"):
        caller.complete(openai, with_tools(tool_choice=ToolChoice("function", "get_stock")))
    assert openai.fake.last.body["tool_choice"] == {"type": "function", "function": {"name": "get_stock"}}


# -- tool calls back --


def test_a_tool_call_comes_back_whole(openai: Target, caller: Caller) -> None:
    result = caller.complete(openai, with_tools())

    assert result.tool_calls == (ToolCall("call_fake1", "get_weather", WEATHER_ARGS),)
    assert json.loads(result.tool_calls[0].arguments) == {"city": "x", "unit": "celsius"}
    assert result.finish_reason == "tool_calls"
    assert result.text == ""  # content null with tool calls
    assert result.other_choices == () and result.refusal is None


def test_a_streamed_tool_call_comes_in_pieces_and_is_reassembled(openai: Target, caller: Caller) -> None:
    items = caller.stream(openai, with_tools())

    pieces = deltas(items)
    assert len(pieces) >= 3  # the head, then at least two fragments of the arguments
    assert (pieces[0].position, pieces[0].id, pieces[0].name, pieces[0].arguments) == (
        0,
        "call_fake1",
        "get_weather",
        "",
    )
    assert all(p.id is None and p.name is None and p.position == 0 and p.choice == 0 for p in pieces[1:])
    assert "".join(p.arguments for p in pieces) == WEATHER_ARGS
    end = end_of(items)
    assert end.tool_calls == (ToolCall("call_fake1", "get_weather", WEATHER_ARGS),)
    assert (end.finish_reason, end.text, end.usage_reported) == ("tool_calls", "", True)


def test_parallel_calls_come_back_whole_and_streamed_with_their_positions(openai: Target, caller: Caller) -> None:
    calls = (ToolCall("call_fake1", "get_weather", WEATHER_ARGS), ToolCall("call_fake2", "get_time", TIME_ARGS))

    assert caller.complete(openai, with_tools(model="parallel-tools")).tool_calls == calls
    items = caller.stream(openai, with_tools(model="parallel-tools"))

    heads = [p for p in deltas(items) if p.id is not None]
    assert [(p.position, p.id, p.name) for p in heads] == [
        (0, "call_fake1", "get_weather"),
        (1, "call_fake2", "get_time"),
    ]
    assert "".join(p.arguments for p in deltas(items) if p.position == 1) == TIME_ARGS
    assert end_of(items).tool_calls == calls


def test_parallel_tool_calls_false_reaches_the_server_and_one_call_comes_back(openai: Target, caller: Caller) -> None:
    result = caller.complete(openai, with_tools(model="parallel-tools", parallel_tool_calls=False))

    assert openai.fake.last.body["parallel_tool_calls"] is False
    assert [call.name for call in result.tool_calls] == ["get_weather"]


def test_a_two_round_agent_loop(openai: Target, caller: Caller) -> None:
    question = ChatMessage("user", "Weather in Paris?")
    first = caller.complete(openai, ChatRequest("test-model", [question], tools=(WEATHER, TIME)))
    (call,) = first.tool_calls

    history = [
        question,
        ChatMessage("assistant", "", tool_calls=first.tool_calls),
        ChatMessage("tool", '{"temp": 21}', tool_call_id=call.id),
    ]
    second = caller.complete(openai, ChatRequest("test-model", history, tools=(WEATHER, TIME)))

    assert second.text == tool_results_answer(['{"temp": 21}'])
    assert (second.tool_calls, second.finish_reason) == ((), "stop")
    sent = openai.fake.last.body["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_fake1", "type": "function", "function": {"name": "get_weather", "arguments": WEATHER_ARGS}}
        ],
    }
    assert sent[2] == {"role": "tool", "tool_call_id": "call_fake1", "content": '{"temp": 21}'}


def test_parallel_results_streamed_back_and_an_assistant_text_with_its_calls(openai: Target, caller: Caller) -> None:
    calls = (ToolCall("call_a", "get_weather", WEATHER_ARGS), ToolCall("call_b", "get_time", TIME_ARGS))
    history = [
        ChatMessage("user", "Weather and time?"),
        ChatMessage("assistant", "Let me look.", tool_calls=calls),
        ChatMessage("tool", "sunny", tool_call_id="call_a", name="get_weather"),
        ChatMessage("tool", "noon", tool_call_id="call_b"),
    ]
    items = caller.stream(openai, ChatRequest("test-model", history, tools=(WEATHER, TIME)))

    assert end_of(items).text == tool_results_answer(["sunny", "noon"])
    assert deltas(items) == []
    sent = openai.fake.last.body["messages"]
    assert sent[1]["content"] == "Let me look." and [c["id"] for c in sent[1]["tool_calls"]] == ["call_a", "call_b"]
    # The function's name is for Gemini: Chat Completions' tool message has none.
    assert sent[2] == {"role": "tool", "tool_call_id": "call_a", "content": "sunny"}


def test_a_tool_result_for_a_call_that_was_never_made_is_refused_by_the_server(openai: Target, caller: Caller) -> None:
    history = [
        ChatMessage("user", "Weather?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_a", "get_weather", "{}"),)),
        ChatMessage("tool", "sunny", tool_call_id="call_zzz"),
    ]
    with pytest.raises(BadRequestError, match="must be a response to a preceeding message"):
        caller.complete(openai, ChatRequest("test-model", history, tools=(WEATHER,)))


def test_arguments_sent_as_an_object_by_a_compatible_server_become_json_text() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}],
    }
    body = {"model": "llama", "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
    result = OpenAIAdapter("openai-compatible").parse_response(body, ask("hi"))
    assert result.tool_calls == (ToolCall("c1", "f", '{"a": 1}'),)


# -- structured output --


def test_a_json_schema_reaches_the_server_and_the_answer_parses(openai: Target, caller: Caller) -> None:
    fmt = ResponseFormat("json_schema", name="person", schema=ANSWER_SCHEMA, strict=True, description="A person")
    result = caller.complete(openai, ask("Who?", response_format=fmt))
    end = end_of(caller.stream(openai, ask("Who?", response_format=fmt)))

    assert openai.fake.last.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "person", "description": "A person", "schema": ANSWER_SCHEMA, "strict": True},
    }
    assert json.loads(result.text) == json.loads(end.text) == {"name": "x", "age": 1, "tags": ["x"]}


def test_json_object_and_text_formats_reach_the_server(openai: Target, caller: Caller) -> None:
    result = caller.complete(openai, ask("Answer in JSON", response_format=ResponseFormat("json_object")))
    assert openai.fake.last.body["response_format"] == {"type": "json_object"}
    assert json.loads(result.text) == {"answer": expected_answer("Answer in JSON")}

    result = caller.complete(openai, ask("hi", response_format=ResponseFormat("text")))
    assert openai.fake.last.body["response_format"] == {"type": "text"}
    assert result.text == expected_answer("hi")


# -- n choices --


def test_two_choices_whole(openai: Target, caller: Caller) -> None:
    result = caller.complete(openai, ask("hi", n=2))

    assert openai.fake.last.body["n"] == 2
    assert result.text == expected_answer("hi")
    assert [(c.index, c.text, c.finish_reason) for c in result.other_choices] == [(1, expected_answer("hi"), "stop")]


def test_two_choices_streamed(openai: Target, caller: Caller) -> None:
    items = caller.stream(openai, ask("hi", n=2))

    assert "".join(c.text for c in chunks(items, 1)) == expected_answer("hi")
    end = end_of(items)
    assert end.text == expected_answer("hi")
    assert [(c.index, c.text, c.finish_reason) for c in end.other_choices] == [(1, expected_answer("hi"), "stop")]


def test_two_choices_with_tool_calls_each(openai: Target, caller: Caller) -> None:
    result = caller.complete(openai, with_tools(n=2))
    items = caller.stream(openai, with_tools(n=2))

    expected = (ToolCall("call_fake2", "get_weather", WEATHER_ARGS),)
    assert result.tool_calls[0].id == "call_fake1" and result.other_choices[0].tool_calls == expected
    assert {p.choice for p in deltas(items)} == {0, 1}
    end = end_of(items)
    assert end.other_choices[0].tool_calls == expected and end.other_choices[0].finish_reason == "tool_calls"


# -- logprobs and the other options --


def test_logprobs_are_asked_for_and_come_back_whole_and_streamed(openai: Target, caller: Caller) -> None:
    request = ask("hi", options={"logprobs": True, "top_logprobs": 2})
    result = caller.complete(openai, request)
    items = caller.stream(openai, request)

    assert openai.fake.last.body["logprobs"] is True and openai.fake.last.body["top_logprobs"] == 2
    tokens = result.logprobs["content"]
    assert "".join(t["token"] for t in tokens) == expected_answer("hi")
    assert all(len(t["top_logprobs"]) == 2 and isinstance(t["logprob"], float) for t in tokens)
    streamed = [c.logprobs["content"][0] for c in chunks(items) if c.logprobs is not None]
    assert streamed == tokens


def test_without_logprobs_there_are_none(openai: Target, caller: Caller) -> None:
    assert caller.complete(openai, ask("hi")).logprobs is None
    assert all(c.logprobs is None for c in chunks(caller.stream(openai, ask("hi"))))


OPTIONS = {
    "seed": 7,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.25,
    "logit_bias": {"50256": -100},
    "reasoning_effort": "low",
    "metadata": {"team": "research"},
    "service_tier": "flex",
    "store": False,
    "user": "user-42",
    "verbosity": "low",
    "prompt_cache_key": "k1",
    "safety_identifier": "hash-1",
    "modalities": ["text"],
    "prediction": {"type": "content", "content": "Hello"},
    "web_search_options": {},
}


def test_every_option_reaches_the_server_unchanged(openai: Target, caller: Caller) -> None:
    caller.complete(openai, ask("hi", temperature=0.3, options=OPTIONS))
    body = openai.fake.last.body
    assert {name: body[name] for name in OPTIONS} == OPTIONS
    assert body["temperature"] == 0.3

    caller.stream(openai, ask("hi", options=OPTIONS))
    assert {name: openai.fake.last.body[name] for name in OPTIONS} == OPTIONS


def test_options_never_override_what_mindroute_sets(openai: Target, caller: Caller) -> None:
    sneaky = {"model": "other", "messages": [], "stream": False, "stream_options": {"include_usage": False}}
    items = caller.stream(openai, ask("hi", options=sneaky))

    body = openai.fake.last.body
    assert body["model"] == "test-model" and body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert end_of(items).usage_reported


def test_top_k_reaches_a_compatible_server_and_openai_refuses_it(
    openai: Target, compatible: Target, caller: Caller
) -> None:
    extensions = {"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1}
    result = caller.complete(compatible, ask("hi", options=extensions), key=None)
    assert result.text == expected_answer("hi")
    assert {name: compatible.fake.last.body[name] for name in extensions} == extensions

    with pytest.raises(BadRequestError, match="Unrecognized request argument supplied: top_k"):
        caller.complete(openai, ask("hi", options={"top_k": 40}))


def test_an_option_openai_has_not_is_passed_and_refused_by_the_server(openai: Target, caller: Caller) -> None:
    with pytest.raises(BadRequestError, match="Unrecognized request argument supplied: frobnicate"):
        caller.complete(openai, ask("hi", options={"frobnicate": 1}))


def test_a_refusal_is_its_own_field_and_the_text(openai: Target, caller: Caller) -> None:
    result: ChatResult = caller.complete(openai, ask("hi", model="refuse"))
    end = end_of(caller.stream(openai, ask("hi", model="refuse")))

    assert result.refusal == result.text == "I'm sorry, I can't help with that."
    assert end.text == result.text


# -- content parts --


JPEG = Attachment("image", "image/jpeg", b"\xff\xd8\xff\xe0fakejpeg", "b.jpg", detail="low")


def test_mixed_content_keeps_its_order_and_an_images_detail(openai: Target, caller: Caller) -> None:
    high = Attachment("image", "image/png", PNG_BYTES, "a.png", detail="high")
    parts = ("First", high, "then", JPEG, "last")
    message = ChatMessage("user", "First\nthen\nlast", [high, JPEG], parts=parts)
    result = caller.complete(openai, ChatRequest("test-model", [message]))

    assert result.text == expected_answer("Firstthenlast")  # the fake echoes every text part
    assert openai.fake.last.body["messages"][0]["content"] == [
        {"type": "text", "text": "First"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG_BYTES)}", "detail": "high"}},
        {"type": "text", "text": "then"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64(JPEG.data)}", "detail": "low"}},
        {"type": "text", "text": "last"},
    ]


def test_an_image_without_detail_sends_none_and_text_only_parts_stay_a_string(openai: Target, caller: Caller) -> None:
    caller.complete(openai, ChatRequest("test-model", [ChatMessage("user", "a\nb", parts=("a", "b"))]))
    assert openai.fake.last.body["messages"][0] == {"role": "user", "content": "a\nb"}

    caller.complete(openai, ChatRequest("test-model", [ChatMessage("user", "see", [IMAGE])]))
    assert openai.fake.last.body["messages"][0]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{b64(PNG_BYTES)}"},
    }


def test_a_participant_name_is_sent(openai: Target, caller: Caller) -> None:
    caller.complete(openai, ChatRequest("test-model", [ChatMessage("user", "hi", name="alice")]))
    assert openai.fake.last.body["messages"][0] == {"role": "user", "content": "hi", "name": "alice"}


# -- the fake checks shapes as OpenAI does (so the tests above could fail) --

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
FUNCTION = {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"messages": [{"role": "assistant", "content": None}]}, "expected a string, got null"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}]},
            "tool_call_id",
        ),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": [CALL]}]},
            "did not have response messages: call_1",
        ),
        ({"tools": [], "tool_choice": "auto"}, "too short - 'tools'"),
        ({"tool_choice": "required"}, "only allowed when 'tools' are specified"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "does not match pattern"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}, "json_schema.name"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "a"}}}, "json_schema.schema"),
        ({"response_format": {"type": "json_object"}}, "must contain the word 'json'"),
        ({"top_logprobs": 2}, "'logprobs' must be set to true"),
        ({"top_k": 5}, "Unrecognized request argument supplied: top_k"),
        ({"n": 0}, "Expected a value <= 128"),
    ],
)
def test_the_fake_refuses_what_openai_refuses(openai: Target, fields: dict[str, Any], problem: str) -> None:
    body = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}], **fields}
    answer = httpx.post(
        openai.endpoint + "/chat/completions", json=body, headers={"authorization": f"Bearer {OPENAI_KEY}"}
    )
    assert answer.status_code == 400
    assert problem in answer.json()["error"]["message"]


def test_the_fake_takes_a_well_formed_tool_round(openai: Target) -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    body = {"model": "test-model", "messages": messages, "tools": [FUNCTION], "n": 3}
    answer = httpx.post(
        openai.endpoint + "/chat/completions", json=body, headers={"authorization": f"Bearer {OPENAI_KEY}"}
    )
    assert answer.status_code == 200
    assert [c["message"]["content"] for c in answer.json()["choices"]] == [tool_results_answer(["sunny"])] * 3


def test_a_compatible_servers_whole_call_in_one_piece_without_index_is_read() -> None:
    # Ollama sends each call whole in one delta, with no index; positions are then the list's order.
    translator = OpenAIAdapter("openai-compatible").stream_translator(ask("hi"))
    call = {"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}}
    other = {"id": "c2", "function": {"name": "g", "arguments": {"b": 2}}}
    delta = {"role": "assistant", "content": "", "tool_calls": [call, other]}
    items = translator.feed(SSEEvent("message", json.dumps({"choices": [{"index": 0, "delta": delta}]})))
    translator.feed(SSEEvent("message", json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})))

    assert items == [ToolCallDelta(0, "c1", "f", '{"a": 1}'), ToolCallDelta(1, "c2", "g", '{"b": 2}')]
    end = translator.finish()
    assert end.tool_calls == (ToolCall("c1", "f", '{"a": 1}'), ToolCall("c2", "g", '{"b": 2}'))
