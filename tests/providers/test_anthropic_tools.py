"""Anthropic Messages for issue 15: tools and their results, structured output, every other Chat Completions field."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from mindroute.providers.anthropic import STRUCTURED_OUTPUTS_BETA, AnthropicAdapter
from mindroute.providers.errors import UnsupportedParameter
from mindroute.providers.shapes import (
    ChatMessage,
    ChatRequest,
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
from tests.providers.fake_anthropic import FakeAnthropic
from tests.providers.fake_base import example_from_schema, expected_answer, tool_results_answer
from tests.providers.media import IMAGE, PNG_BYTES, b64

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city"],
}
LOOKUP_SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}, "tags": {"type": "array"}}}
WEATHER = ToolSpec("get_weather", "The weather in a city", WEATHER_SCHEMA)
LOOKUP = ToolSpec("lookup", None, LOOKUP_SCHEMA)
NO_ARGS = ToolSpec("now")
TOOLS = (WEATHER, LOOKUP)
WEATHER_ARGS = json.dumps(example_from_schema(WEATHER_SCHEMA))
LOOKUP_ARGS = json.dumps(example_from_schema(LOOKUP_SCHEMA))


def with_tools(model: str = "test-model", tools: tuple[ToolSpec, ...] = TOOLS, **fields: Any) -> ChatRequest:
    return ask("What is the weather in Paris?", model=model, tools=tools, **fields)


def deltas(items: list[Any]) -> list[ToolCallDelta]:
    return [item for item in items if isinstance(item, ToolCallDelta)]


# -- what reaches the server --


def test_tools_go_as_input_schemas(anthropic: Target, caller: Caller) -> None:
    caller.complete(anthropic, with_tools(tools=(*TOOLS, NO_ARGS)))
    body = anthropic.fake.last.body
    assert body["tools"] == [
        {"name": "get_weather", "description": "The weather in a city", "input_schema": WEATHER_SCHEMA},
        {"name": "lookup", "input_schema": LOOKUP_SCHEMA},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body
    assert "anthropic-beta" not in anthropic.fake.last.headers


def test_a_strict_tool_is_sent_strict_with_the_beta_header(anthropic: Target, caller: Caller) -> None:
    strict = ToolSpec("get_weather", None, WEATHER_SCHEMA, strict=True)
    result = caller.complete(anthropic, with_tools(tools=(strict, LOOKUP)))
    assert anthropic.fake.last.body["tools"][0] == {
        "name": "get_weather",
        "input_schema": WEATHER_SCHEMA,
        "strict": True,
    }
    assert "strict" not in anthropic.fake.last.body["tools"][1]
    assert anthropic.fake.last.headers["anthropic-beta"] == STRUCTURED_OUTPUTS_BETA
    assert result.tool_calls[0].arguments == WEATHER_ARGS


def test_a_strict_tool_without_the_beta_header_is_refused_by_the_server() -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}, "strict": True}
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    assert FakeAnthropic.check_body(body) == "tools.0.custom.strict: Extra inputs are not permitted"
    assert FakeAnthropic.check_body(body, STRUCTURED_OUTPUTS_BETA) is None


@pytest.mark.parametrize(
    ("choice", "sent", "called"),
    [
        (ToolChoice("auto"), {"type": "auto"}, "get_weather"),
        (ToolChoice("required"), {"type": "any"}, "get_weather"),
        (ToolChoice("function", "lookup"), {"type": "tool", "name": "lookup"}, "lookup"),
        (ToolChoice("none"), {"type": "none"}, None),
    ],
)
def test_each_tool_choice_form(
    anthropic: Target, caller: Caller, choice: ToolChoice, sent: dict[str, Any], called: str | None
) -> None:
    result = caller.complete(anthropic, with_tools(tool_choice=choice))
    assert anthropic.fake.last.body["tool_choice"] == sent
    if called is None:
        assert result.tool_calls == ()
        assert result.text == expected_answer("What is the weather in Paris?")
        assert result.finish_reason == "end_turn"
    else:
        assert [call.name for call in result.tool_calls] == [called]
        assert result.finish_reason == "tool_use"


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice("required"), {"type": "any", "disable_parallel_tool_use": True}),
        (ToolChoice("function", "lookup"), {"type": "tool", "name": "lookup", "disable_parallel_tool_use": True}),
        (ToolChoice("none"), {"type": "none"}),  # nothing to run in parallel, and "none" takes no such field
    ],
)
def test_parallel_tool_calls_false_disables_parallel_use(
    anthropic: Target, caller: Caller, choice: ToolChoice | None, sent: dict[str, Any]
) -> None:
    result = caller.complete(anthropic, with_tools("parallel-tools", tool_choice=choice, parallel_tool_calls=False))
    assert anthropic.fake.last.body["tool_choice"] == sent
    assert len(result.tool_calls) == (0 if choice == ToolChoice("none") else 1)


def test_parallel_calls_when_allowed(anthropic: Target, caller: Caller) -> None:
    result = caller.complete(anthropic, with_tools("parallel-tools", parallel_tool_calls=True))
    assert "tool_choice" not in anthropic.fake.last.body
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("get_weather", WEATHER_ARGS),
        ("lookup", LOOKUP_ARGS),
    ]
    assert len({call.id for call in result.tool_calls}) == 2


def test_no_tools_sends_no_tool_choice(anthropic: Target, caller: Caller) -> None:
    caller.complete(anthropic, ask("hi", tool_choice=ToolChoice("auto"), parallel_tool_calls=False))
    assert "tools" not in anthropic.fake.last.body
    assert "tool_choice" not in anthropic.fake.last.body


# -- tool calls in the answer --


def test_a_whole_answers_tool_calls(anthropic: Target, caller: Caller) -> None:
    result = caller.complete(anthropic, with_tools())
    assert len(result.tool_calls) == 1
    call = result.tool_calls[0]
    assert call.id.startswith("toolu_fake") and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "x", "unit": "celsius"}
    assert call.arguments == WEATHER_ARGS
    assert (result.text, result.finish_reason) == ("", "tool_use")


def test_streamed_tool_calls_come_in_pieces_and_are_assembled(anthropic: Target, caller: Caller) -> None:
    items = caller.stream(anthropic, with_tools("parallel-tools"))
    end = items[-1]
    assert isinstance(end, StreamEnd)
    pieces = deltas(items)
    firsts = [d for d in pieces if d.id is not None]
    assert [(d.position, d.name) for d in firsts] == [(0, "get_weather"), (1, "lookup")]
    assert all(d.id.startswith("toolu_fake") and d.arguments == "" for d in firsts)  # type: ignore[union-attr]
    for position, expected in ((0, WEATHER_ARGS), (1, LOOKUP_ARGS)):
        fragments = [d.arguments for d in pieces if d.position == position and d.arguments]
        assert len(fragments) >= 2
        assert "".join(fragments) == expected
    assert [(c.id, c.name, c.arguments) for c in end.tool_calls] == [
        (firsts[0].id, "get_weather", WEATHER_ARGS),
        (firsts[1].id, "lookup", LOOKUP_ARGS),
    ]
    assert (end.text, end.finish_reason) == ("", "tool_use")
    assert not [item for item in items if isinstance(item, StreamChunk)]


def test_a_streamed_call_without_arguments_gets_an_empty_object(anthropic: Target, caller: Caller) -> None:
    end = caller.stream(anthropic, with_tools(tools=(NO_ARGS,)))[-1]
    assert isinstance(end, StreamEnd)
    assert [(c.name, c.arguments) for c in end.tool_calls] == [("now", "{}")]


def test_a_tool_use_block_with_no_input_delta_at_all_has_empty_arguments() -> None:
    translator = AnthropicAdapter().stream_translator(ask("hi"))
    events = [
        ("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_stop", {"index": 0}),
        ("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "Checking."}}),
        ("content_block_stop", {"index": 1}),
        ("content_block_start", {"index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "now"}}),
        ("content_block_stop", {"index": 2}),
        ("message_stop", {}),
    ]
    out = []
    for kind, data in events:
        out += translator.feed(SSEEvent(kind, json.dumps({"type": kind, **data})))
    assert out == [
        StreamChunk("Checking."),
        ToolCallDelta(0, "toolu_1", "now", ""),
        ToolCallDelta(0, None, None, "{}"),
    ]
    end = translator.finish()
    assert (end.text, end.tool_calls) == ("Checking.", (ToolCall("toolu_1", "now", "{}"),))


def test_a_whole_answers_text_and_tool_use_blocks() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "s"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {"id": 3}},
            {"type": "tool_use", "id": "toolu_10", "name": "now", "input": {}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    result = AnthropicAdapter().parse_response(body, ask("hi"))
    assert result.text == "Let me look."
    assert result.tool_calls == (ToolCall("toolu_9", "lookup", '{"id": 3}'), ToolCall("toolu_10", "now", "{}"))
    assert result.finish_reason == "tool_use"


# -- tool results back --


def test_tool_results_and_the_next_user_message_merge_into_one_user_turn(anthropic: Target, caller: Caller) -> None:
    calls = (ToolCall("toolu_a", "get_weather", '{"city": "Paris"}'), ToolCall("toolu_b", "lookup", ""))
    request = ChatRequest(
        model="test-model",
        messages=[
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Weather and record?"),
            ChatMessage("assistant", "Checking both.", tool_calls=calls),
            ChatMessage("tool", "18 C", tool_call_id="toolu_a", name="get_weather"),
            ChatMessage("tool", '{"id": 3}', tool_call_id="toolu_b"),
            ChatMessage("user", "Summarise."),
        ],
        tools=TOOLS,
    )
    result = caller.complete(anthropic, request)
    assert anthropic.fake.last.body["messages"] == [
        {"role": "user", "content": "Weather and record?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "lookup", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18 C"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": '{"id": 3}'},
                {"type": "text", "text": "Summarise."},
            ],
        },
    ]
    assert result.text == tool_results_answer(["18 C", '{"id": 3}'])


@pytest.mark.parametrize("streamed", [False, True])
def test_a_two_round_agent_loop(anthropic: Target, caller: Caller, streamed: bool) -> None:
    question = [ChatMessage("user", "What is the weather in Paris?")]
    first = with_tools("parallel-tools", tool_choice=ToolChoice("required"))
    if streamed:
        end = caller.stream(anthropic, first)[-1]
        assert isinstance(end, StreamEnd)
        calls = end.tool_calls
    else:
        calls = caller.complete(anthropic, first).tool_calls
    assert [call.name for call in calls] == ["get_weather", "lookup"]

    results = [ChatMessage("tool", f"result of {call.name}", tool_call_id=call.id) for call in calls]
    second = ChatRequest(
        model="parallel-tools",
        messages=[*question, ChatMessage("assistant", "", tool_calls=calls), *results],
        tools=TOOLS,
        tool_choice=ToolChoice("required"),
    )
    if streamed:
        items = caller.stream(anthropic, second)
        end = items[-1]
        assert isinstance(end, StreamEnd) and end.tool_calls == ()
        text = end.text
        assert "".join(item.text for item in items if isinstance(item, StreamChunk)) == text
    else:
        answer = caller.complete(anthropic, second)
        assert answer.tool_calls == ()
        text = answer.text
    assert text == tool_results_answer(["result of get_weather", "result of lookup"])
    sent = anthropic.fake.last.body["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": c.id, "name": c.name, "input": json.loads(c.arguments)} for c in calls],
    }
    assert [block["tool_use_id"] for block in sent[2]["content"]] == [call.id for call in calls]


def test_a_tool_result_for_an_unknown_call_is_refused_by_the_server(anthropic: Target, caller: Caller) -> None:
    request = ChatRequest(
        model="test-model",
        messages=[
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "", tool_calls=(ToolCall("toolu_a", "now", "{}"),)),
            ChatMessage("tool", "noon", tool_call_id="toolu_zzz"),
        ],
    )
    with pytest.raises(Exception, match="unexpected `tool_use_id`") as caught:
        caller.complete(anthropic, request)
    assert getattr(caught.value, "status_code", None) == 400


# -- structured output --


def test_a_json_schema_becomes_output_format_with_the_beta_header(anthropic: Target, caller: Caller) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    request = ask("Who?", response_format=ResponseFormat("json_schema", name="person", schema=schema, strict=True))
    result = caller.complete(anthropic, request)
    assert anthropic.fake.last.body["output_format"] == {"type": "json_schema", "schema": schema}
    assert anthropic.fake.last.headers["anthropic-beta"] == STRUCTURED_OUTPUTS_BETA
    assert json.loads(result.text) == {"name": "x", "age": 1}

    end = caller.stream(anthropic, request)[-1]
    assert isinstance(end, StreamEnd) and json.loads(end.text) == {"name": "x", "age": 1}
    assert anthropic.fake.last.headers["anthropic-beta"] == STRUCTURED_OUTPUTS_BETA


def test_output_format_without_the_beta_header_is_refused_by_the_server() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "output_format": {}}
    assert FakeAnthropic.check_body(body) == "output_format: Extra inputs are not permitted"


def test_a_text_response_format_sends_nothing(anthropic: Target, caller: Caller) -> None:
    caller.complete(anthropic, ask("hi", response_format=ResponseFormat("text")))
    assert "output_format" not in anthropic.fake.last.body
    assert "anthropic-beta" not in anthropic.fake.last.headers


# -- every other field --

_REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"n": 2}, "n"),
    ({"response_format": ResponseFormat("json_object")}, "response_format"),
    ({"response_format": ResponseFormat("json_schema", name="x")}, "response_format.json_schema.schema"),
    ({"options": {"seed": 7}}, "seed"),
    ({"options": {"presence_penalty": 0.5}}, "presence_penalty"),
    ({"options": {"frequency_penalty": -1}}, "frequency_penalty"),
    ({"options": {"logit_bias": {"50256": -100}}}, "logit_bias"),
    ({"options": {"logprobs": True}}, "logprobs"),
    ({"options": {"top_logprobs": 2}}, "top_logprobs"),
    ({"options": {"service_tier": "flex"}}, "service_tier"),
    ({"options": {"modalities": ["text", "audio"]}}, "modalities"),
    ({"options": {"audio": {"voice": "alloy", "format": "wav"}}}, "audio"),
    ({"options": {"prediction": {"type": "content", "content": "x"}}}, "prediction"),
    ({"options": {"verbosity": "low"}}, "verbosity"),
    ({"options": {"web_search_options": {}}}, "web_search_options"),
    ({"options": {"functions": [{"name": "f"}]}}, "functions"),
    ({"options": {"function_call": "auto"}}, "function_call"),
    ({"options": {"min_p": 0.1}}, "min_p"),
    ({"options": {"reasoning_effort": "extreme"}}, "reasoning_effort"),
    ({"options": {"reasoning_effort": "low"}, "max_tokens": 1000}, "max_tokens"),
]


@pytest.mark.parametrize(("fields", "param"), _REFUSED, ids=[param for _, param in _REFUSED])
def test_what_messages_cannot_carry_is_refused_before_any_call(
    anthropic: Target, caller: Caller, fields: dict[str, Any], param: str
) -> None:
    for call in (caller.complete, caller.stream):
        with pytest.raises(UnsupportedParameter) as caught:
            call(anthropic, ask("hi", **fields))
        assert (caught.value.param, caught.value.status_code) == (param, 400)
        assert "Anthropic" in caught.value.message or param.startswith("response_format.")
    assert anthropic.fake.requests == []


def test_an_unknown_field_says_the_protocol_has_no_such_field(anthropic: Target, caller: Caller) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        caller.complete(anthropic, ask("hi", options={"mirostat": 2}))
    assert caught.value.message == "mirostat is not a field the Anthropic protocol has"
    assert anthropic.fake.requests == []


@pytest.mark.parametrize(
    ("arguments", "why"), [("{not json", "is not valid JSON"), ("[1, 2]", "must be a JSON object")]
)
def test_tool_call_arguments_that_are_not_a_json_object_are_refused(
    anthropic: Target, caller: Caller, arguments: str, why: str
) -> None:
    request = ChatRequest(
        model="test-model",
        messages=[
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Hi"),
            ChatMessage(
                "assistant", "", tool_calls=(ToolCall("toolu_a", "now", "{}"), ToolCall("toolu_b", "now", arguments))
            ),
            ChatMessage("tool", "noon", tool_call_id="toolu_a"),
            ChatMessage("tool", "noon", tool_call_id="toolu_b"),
        ],
    )
    with pytest.raises(UnsupportedParameter, match=why) as caught:
        caller.complete(anthropic, request)
    assert caught.value.param == "messages[2].tool_calls[1].function.arguments"
    assert anthropic.fake.requests == []


def test_a_tool_message_without_a_call_id_is_refused(anthropic: Target, caller: Caller) -> None:
    request = ChatRequest(model="test-model", messages=[ChatMessage("user", "Hi"), ChatMessage("tool", "noon")])
    with pytest.raises(UnsupportedParameter) as caught:
        caller.complete(anthropic, request)
    assert caught.value.param == "messages[1].tool_call_id"
    assert anthropic.fake.requests == []


def test_fields_that_do_not_change_the_answer_are_not_sent(anthropic: Target, caller: Caller) -> None:
    options = {
        "metadata": {"team": "a"},
        "store": True,
        "prompt_cache_key": "k1",
        "safety_identifier": "s1",
        "service_tier": "auto",
        "modalities": ["text"],
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logit_bias": {},
        "logprobs": False,
        "top_logprobs": 0,
        "seed": None,
    }
    result = caller.complete(anthropic, ask("hi", options=options))
    assert result.text == expected_answer("hi")
    assert anthropic.fake.last.body == {
        "model": "test-model",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_user_becomes_metadata_user_id_and_top_k_passes(anthropic: Target, caller: Caller) -> None:
    caller.complete(anthropic, ask("hi", options={"user": "user-42", "top_k": 40}))
    body = anthropic.fake.last.body
    assert body["metadata"] == {"user_id": "user-42"}
    assert body["top_k"] == 40


@pytest.mark.parametrize(
    ("effort", "budget", "max_tokens"), [("low", 1024, 2048), ("medium", 2048, 3072), ("high", 4096, 5120)]
)
def test_reasoning_effort_becomes_thinking(
    anthropic: Target, caller: Caller, effort: str, budget: int, max_tokens: int
) -> None:
    request = ask("hi", options={"reasoning_effort": effort})
    result = caller.complete(anthropic, request)
    body = anthropic.fake.last.body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == max_tokens
    assert result.text == expected_answer("hi")  # the thinking block is not answer text

    end = caller.stream(anthropic, request)[-1]
    assert isinstance(end, StreamEnd) and end.text == expected_answer("hi")


@pytest.mark.parametrize("effort", ["minimal", "none"])
def test_minimal_reasoning_effort_thinks_not_at_all(anthropic: Target, caller: Caller, effort: str) -> None:
    caller.complete(anthropic, ask("hi", options={"reasoning_effort": effort}))
    assert "thinking" not in anthropic.fake.last.body
    assert anthropic.fake.last.body["max_tokens"] == 1024


def test_a_thinking_budget_fits_inside_the_callers_max_tokens(anthropic: Target, caller: Caller) -> None:
    caller.complete(anthropic, ask("hi", max_tokens=3000, options={"reasoning_effort": "high"}))
    body = anthropic.fake.last.body
    assert (body["max_tokens"], body["thinking"]["budget_tokens"]) == (3000, 2999)
    caller.complete(anthropic, ask("hi", max_tokens=8000, options={"reasoning_effort": "medium"}))
    body = anthropic.fake.last.body
    assert (body["max_tokens"], body["thinking"]["budget_tokens"]) == (8000, 2048)


# -- content order --


def test_mixed_content_keeps_the_callers_order(anthropic: Target, caller: Caller) -> None:
    parts = ("First.", IMAGE, "Second.", IMAGE, "Third.")
    message = ChatMessage("user", "First.\nSecond.\nThird.", [IMAGE, IMAGE], parts=parts)
    caller.complete(anthropic, ChatRequest(model="test-model", messages=[message]))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG_BYTES)}}
    assert anthropic.fake.last.body["messages"][0]["content"] == [
        {"type": "text", "text": "First."},
        image,
        {"type": "text", "text": "Second."},
        image,
        {"type": "text", "text": "Third."},
    ]


def test_consecutive_user_messages_merge_into_one_turn(anthropic: Target, caller: Caller) -> None:
    request = ChatRequest(model="test-model", messages=[ChatMessage("user", "One."), ChatMessage("user", "Two.")])
    result = caller.complete(anthropic, request)
    assert anthropic.fake.last.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]}
    ]
    assert result.text == expected_answer("One.Two.")


_THINKING_CONFLICTS: list[tuple[dict[str, Any], str]] = [
    ({"tools": TOOLS, "tool_choice": ToolChoice("required")}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": ToolChoice("function", "lookup")}, "tool_choice"),
    ({"temperature": 0.3}, "temperature"),
    ({"top_p": 0.5}, "top_p"),
    ({"options": {"reasoning_effort": "low", "top_k": 5}}, "top_k"),
]


@pytest.mark.parametrize(("fields", "param"), _THINKING_CONFLICTS, ids=[p for _, p in _THINKING_CONFLICTS])
def test_what_thinking_cannot_be_combined_with_is_refused_before_any_call(
    anthropic: Target, caller: Caller, fields: dict[str, Any], param: str
) -> None:
    fields = {"options": {"reasoning_effort": "low"}} | fields
    with pytest.raises(UnsupportedParameter) as caught:
        caller.complete(anthropic, ask("hi", **fields))
    assert caught.value.param == param
    assert "reasoning_effort" in caught.value.message
    assert anthropic.fake.requests == []
    # The fake refuses the same combination, as the API does, were it to reach it.
    body = AnthropicAdapter().build_call(ask("hi", options={"reasoning_effort": "low"}), "http://x", "k", stream=False)
    assert FakeAnthropic.check_body(body.body) is None
    tools = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}, {"name": "lookup", "input_schema": LOOKUP_SCHEMA}]
    raw = {
        "tool_choice": {"tools": tools, "tool_choice": {"type": "any"}},
        "temperature": {"temperature": 0.3},
        "top_p": {"top_p": 0.5},
        "top_k": {"top_k": 5},
    }[param]
    assert "thinking" in (FakeAnthropic.check_body(body.body | raw) or "").lower()


def test_thinking_allows_temperature_1_top_p_095_and_tool_choice_auto(anthropic: Target, caller: Caller) -> None:
    request = with_tools(
        temperature=1, top_p=0.95, tool_choice=ToolChoice("auto"), options={"reasoning_effort": "medium"}
    )
    result = caller.complete(anthropic, request)
    assert anthropic.fake.last.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert [call.name for call in result.tool_calls] == ["get_weather"]


@pytest.mark.parametrize("then_user", [False, True])
def test_an_agent_loop_with_reasoning_effort_thinks_on_the_first_round_only(
    anthropic: Target, caller: Caller, then_user: bool
) -> None:
    first = with_tools(options={"reasoning_effort": "low"})
    calls = caller.complete(anthropic, first).tool_calls
    assert anthropic.fake.last.body["thinking"]["type"] == "enabled"
    follow = [ChatMessage("user", "And tomorrow?")] if then_user else []
    second = ChatRequest(
        model="test-model",
        messages=[
            *first.messages,
            ChatMessage("assistant", "", tool_calls=calls),
            ChatMessage("tool", "18 C", tool_call_id=calls[0].id),
            *follow,
        ],
        tools=TOOLS,
        options={"reasoning_effort": "low"},
    )
    # The thinking block of round one cannot come back through Chat Completions; the API would refuse it missing.
    result = caller.complete(anthropic, second)
    assert "thinking" not in anthropic.fake.last.body
    assert result.text == tool_results_answer(["18 C"])


def test_the_fake_refuses_a_thinking_tool_turn_without_its_thinking_block() -> None:
    body = {
        "model": "m",
        "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "noon"}]},
        ],
    }
    assert "must start with a thinking block" in (FakeAnthropic.check_body(body) or "")


def test_a_new_user_turn_after_a_finished_tool_loop_thinks_again(anthropic: Target, caller: Caller) -> None:
    request = ChatRequest(
        model="test-model",
        messages=[
            ChatMessage("user", "Weather?"),
            ChatMessage("assistant", "", tool_calls=(ToolCall("toolu_a", "get_weather", '{"city": "Paris"}'),)),
            ChatMessage("tool", "18 C", tool_call_id="toolu_a"),
            ChatMessage("assistant", "It is 18 C."),
            ChatMessage("user", "Thanks. And Rome?"),
        ],
        options={"reasoning_effort": "low"},
    )
    assert caller.complete(anthropic, request).text == expected_answer("Thanks. And Rome?")
    assert anthropic.fake.last.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_a_conversation_started_on_gemini_3_continues_with_valid_ids(anthropic: Target, caller: Caller) -> None:
    # A Gemini 3 call id carries its thought signature (base64: + / =), which Anthropic's ids refuse; the
    # tool_use block and the tool_result that answers it get the same valid id.
    signed = "call_0123456789abcdef01234567__thought__c2lnbmF0dXJl+/w=="
    call = ToolCall(signed, "get_weather", WEATHER_ARGS)
    request = ChatRequest(
        model="test-model",
        messages=[
            ChatMessage("user", "What is the weather in Paris?"),
            ChatMessage("assistant", "", tool_calls=(call,)),
            ChatMessage("tool", "sunny", tool_call_id=signed),
        ],
        tools=TOOLS,
    )
    answer = caller.complete(anthropic, request)
    assert answer.text == tool_results_answer(["sunny"])
    sent = anthropic.fake.last.body["messages"]
    used = sent[1]["content"][0]["id"]
    assert used != signed and re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", used)
    assert sent[2]["content"][0]["tool_use_id"] == used
