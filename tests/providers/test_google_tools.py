"""Gemini tools, tool results, structured output, candidates and the other Chat Completions fields, against the fake."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from mindroute.providers.errors import UnsupportedParameter
from mindroute.providers.google import (
    SKIP_SIGNATURE,
    THOUGHT_SEPARATOR,
    GoogleAdapter,
    GoogleStreamTranslator,
    signed_call_id,
    split_call_id,
)
from mindroute.providers.shapes import (
    Attachment,
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
from tests.providers.fake_base import GOOGLE_KEY, example_from_schema, expected_answer, tool_results_answer
from tests.providers.media import IMAGE, PNG_BYTES, b64

MADE_ID = re.compile(r"^call_[0-9a-f]{24}$")
WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city"},
        "unit": {"type": "string", "enum": ["C", "F"]},
        "days": {"type": ["integer", "null"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER = ToolSpec("get_weather", "The weather in a city", WEATHER_PARAMS, strict=True)
TIME = ToolSpec("get_time", None, {"type": "object", "properties": {}})
WEATHER_ARGS = json.dumps(example_from_schema(WEATHER_PARAMS))
GEMINI_WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING", "description": "The city"},
            "unit": {"type": "STRING", "enum": ["C", "F"]},
            "days": {"type": "INTEGER", "nullable": True},
        },
        "propertyOrdering": ["city", "unit", "days"],
        "required": ["city"],
    },
}


def tools_request(text: str = "Weather in Paris?", model: str = "test-model", **fields: Any) -> ChatRequest:
    return ask(text, model=model, tools=(WEATHER, TIME), **fields)


# -- tools in --


def test_tools_go_as_function_declarations_and_a_call_comes_back_with_a_made_id(google: Target, caller: Caller) -> None:
    result = caller.complete(google, tools_request())

    body = google.fake.last.body
    # The tool without arguments sends no parameters: Gemini refuses an OBJECT without properties.
    assert body["tools"] == [{"functionDeclarations": [GEMINI_WEATHER, {"name": "get_time"}]}]
    assert "toolConfig" not in body
    assert result.text == ""
    assert len(result.tool_calls) == 1
    call = result.tool_calls[0]
    assert MADE_ID.match(call.id)  # Gemini sent none: the client needs one to answer
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "x", "unit": "C", "days": 1})
    assert call.arguments == WEATHER_ARGS
    assert result.finish_reason == "STOP"  # the HTTP layer says "tool_calls" when there are calls


@pytest.mark.parametrize(
    ("choice", "config", "called"),
    [
        (ToolChoice("auto"), {"functionCallingConfig": {"mode": "AUTO"}}, "get_weather"),
        (ToolChoice("required"), {"functionCallingConfig": {"mode": "ANY"}}, "get_weather"),
        (
            ToolChoice("function", "get_time"),
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}},
            "get_time",
        ),
        (ToolChoice("none"), {"functionCallingConfig": {"mode": "NONE"}}, None),
    ],
)
def test_tool_choice_is_the_function_calling_mode(
    google: Target, caller: Caller, choice: ToolChoice, config: dict[str, Any], called: str | None
) -> None:
    result = caller.complete(google, tools_request(tool_choice=choice))

    assert google.fake.last.body["toolConfig"] == config
    assert [c.name for c in result.tool_calls] == ([called] if called else [])
    if called is None:
        assert result.text == expected_answer("Weather in Paris?")


def test_parallel_tool_calls_false_keeps_only_the_first_call_whole_and_streamed(google: Target, caller: Caller) -> None:
    # Gemini has no such switch: nothing is sent for it, and MindRoute hands on one call per answer.
    result = caller.complete(google, tools_request(model="parallel-tools", parallel_tool_calls=False))
    assert "parallel_tool_calls" not in json.dumps(google.fake.last.body)
    assert [c.name for c in result.tool_calls] == ["get_weather"]
    items = caller.stream(google, tools_request(model="parallel-tools", parallel_tool_calls=False))
    deltas = [item for item in items if isinstance(item, ToolCallDelta)]
    assert [(d.position, d.name) for d in deltas] == [(0, "get_weather")]
    assert [c.name for c in items[-1].tool_calls] == ["get_weather"]
    both = caller.complete(google, tools_request(model="parallel-tools"))
    assert [c.name for c in both.tool_calls] == ["get_weather", "get_time"]  # the control: two without the switch


def test_parallel_calls_get_positions_and_distinct_ids_when_streamed(google: Target, caller: Caller) -> None:
    items = caller.stream(google, tools_request(model="parallel-tools", parallel_tool_calls=True))

    deltas = [item for item in items if isinstance(item, ToolCallDelta)]
    # Gemini sends each call whole: one piece with the id, the name and all the arguments.
    assert [(d.position, d.name, d.arguments, d.choice) for d in deltas] == [
        (0, "get_weather", WEATHER_ARGS, 0),
        (1, "get_time", "{}", 0),
    ]
    assert all(MADE_ID.match(d.id or "") for d in deltas)
    assert deltas[0].id != deltas[1].id
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.finished
    assert end.tool_calls == tuple(ToolCall(d.id or "", d.name or "", d.arguments) for d in deltas)
    assert end.text == "" and end.finish_reason == "STOP"


def test_a_streamed_single_call_matches_the_whole_answer(google: Target, caller: Caller) -> None:
    whole = caller.complete(google, tools_request())
    items = caller.stream(google, tools_request())
    end = items[-1]
    assert isinstance(end, StreamEnd)
    assert [(c.name, c.arguments) for c in end.tool_calls] == [(c.name, c.arguments) for c in whole.tool_calls]
    assert not any(isinstance(item, StreamChunk) for item in items)


# -- tool results in: the agent loop --


def test_a_two_round_agent_loop_answers_the_made_id_with_the_right_function(google: Target, caller: Caller) -> None:
    first = caller.complete(google, tools_request(model="parallel-tools"))
    weather, time = first.tool_calls
    messages = [
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "Let me look.", tool_calls=first.tool_calls),
        # Answered out of order: the name is found from the id, not the position.
        ChatMessage("tool", "12:00", tool_call_id=time.id),
        ChatMessage("tool", '{"temp": 21, "sky": "clear"}', tool_call_id=weather.id),
    ]
    second = caller.complete(google, ChatRequest(model="parallel-tools", messages=messages, tools=(WEATHER, TIME)))

    contents = google.fake.last.body["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"text": "Let me look."},
            {"functionCall": {"name": "get_weather", "args": json.loads(weather.arguments)}},
            {"functionCall": {"name": "get_time", "args": {}}},
        ],
    }
    # Consecutive tool messages are one user content; a result that is not a JSON object is wrapped.
    assert contents[2:] == [
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_time", "response": {"result": "12:00"}}},
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21, "sky": "clear"}}},
            ],
        }
    ]
    assert second.text == tool_results_answer(["12:00", '{"temp": 21, "sky": "clear"}'])
    assert second.tool_calls == ()


def test_the_loop_streams_too_and_a_tool_message_may_name_its_function(google: Target, caller: Caller) -> None:
    messages = [
        ChatMessage("user", "Weather?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_from_elsewhere", "get_weather", '{"city": "Oslo"}'),)),
        ChatMessage("tool", "[1, 2]", tool_call_id="call_other_id", name="get_weather"),
        ChatMessage("user", "And tomorrow?"),
    ]
    items = caller.stream(google, ChatRequest(model="m", messages=messages, tools=(WEATHER,)))

    contents = google.fake.last.body["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "[1, 2]"}}}],
    }
    assert contents[3] == {"role": "user", "parts": [{"text": "And tomorrow?"}]}
    end = items[-1]
    assert isinstance(end, StreamEnd) and [c.name for c in end.tool_calls] == ["get_weather"]


# -- structured output --


def test_a_json_schema_becomes_a_response_schema_and_the_answer_follows_it(google: Target, caller: Caller) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "age", "tags"],
        "additionalProperties": False,
    }
    request = ask("Who?", response_format=ResponseFormat("json_schema", "person", schema, strict=True))
    result = caller.complete(google, request)

    assert google.fake.last.body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {
                "name": {"type": "STRING"},
                "age": {"type": "INTEGER"},
                "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
            },
            "propertyOrdering": ["name", "age", "tags"],
            "required": ["name", "age", "tags"],
        },
    }
    assert json.loads(result.text) == {"name": "x", "age": 1, "tags": ["x"]}
    end = caller.stream(google, request)[-1]
    assert isinstance(end, StreamEnd) and end.text == result.text


def test_json_object_asks_for_json_without_a_schema(google: Target, caller: Caller) -> None:
    result = caller.complete(google, ask("hi", response_format=ResponseFormat("json_object")))
    assert google.fake.last.body["generationConfig"] == {"responseMimeType": "application/json"}
    assert json.loads(result.text) == {"answer": expected_answer("hi")}


def test_a_text_response_format_sends_nothing(google: Target, caller: Caller) -> None:
    caller.complete(google, ask("hi", response_format=ResponseFormat("text")))
    assert "generationConfig" not in google.fake.last.body


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (
            ask(
                "x",
                response_format=ResponseFormat(
                    "json_schema",
                    "s",
                    {
                        "type": "object",
                        "properties": {"m": {"type": "object", "additionalProperties": {"type": "string"}}},
                    },
                ),
            ),
            "response_format.json_schema.schema.properties.m.additionalProperties",
        ),
        (
            ask(
                "x",
                tools=(
                    WEATHER,
                    ToolSpec("bad", None, {"type": "object", "properties": {"x": {"not": {"type": "string"}}}}),
                ),
            ),
            "tools[1].function.parameters.properties.x.not",
        ),
    ],
)
def test_a_schema_gemini_cannot_express_is_refused_before_any_call(
    google: Target, caller: Caller, request_: ChatRequest, param: str
) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        caller.complete(google, request_)
    assert caught.value.param == param
    assert google.fake.requests == []


# -- several candidates --


def test_n_is_candidate_count_and_the_other_candidates_are_other_choices(google: Target, caller: Caller) -> None:
    result = caller.complete(google, ask("hi", n=3))

    assert google.fake.last.body["generationConfig"] == {"candidateCount": 3}
    assert result.text == expected_answer("hi")
    assert [(c.index, c.text, c.finish_reason) for c in result.other_choices] == [
        (1, "(1) " + expected_answer("hi"), "STOP"),
        (2, "(2) " + expected_answer("hi"), "STOP"),
    ]


def test_streamed_candidates_come_as_their_choices(google: Target, caller: Caller) -> None:
    items = caller.stream(google, ask("hi", n=2))

    chunks = [item for item in items if isinstance(item, StreamChunk)]
    assert "".join(c.text for c in chunks if c.choice == 0) == expected_answer("hi")
    assert "".join(c.text for c in chunks if c.choice == 1) == "(1) " + expected_answer("hi")
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.finished
    assert end.text == expected_answer("hi")
    assert [(c.index, c.text, c.finish_reason) for c in end.other_choices] == [
        (1, "(1) " + expected_answer("hi"), "STOP")
    ]


def test_candidates_may_each_call_tools(google: Target, caller: Caller) -> None:
    result = caller.complete(google, tools_request(n=2))
    assert [c.name for c in result.tool_calls] == ["get_weather"]
    (other,) = result.other_choices
    assert [c.name for c in other.tool_calls] == ["get_weather"]
    assert MADE_ID.match(other.tool_calls[0].id) and other.tool_calls[0].id != result.tool_calls[0].id


# -- the other fields --


@pytest.mark.parametrize(
    ("options", "config"),
    [
        ({"seed": 7}, {"seed": 7}),
        ({"presence_penalty": 0.5, "frequency_penalty": -0.25}, {"presencePenalty": 0.5, "frequencyPenalty": -0.25}),
        ({"top_k": 40}, {"topK": 40}),
        ({"reasoning_effort": "low"}, {"thinkingConfig": {"thinkingBudget": 1024}}),
        ({"reasoning_effort": "medium"}, {"thinkingConfig": {"thinkingBudget": 8192}}),
        ({"reasoning_effort": "high"}, {"thinkingConfig": {"thinkingBudget": 24576}}),
        ({"reasoning_effort": "minimal"}, {"thinkingConfig": {"thinkingBudget": 0}}),
        ({"reasoning_effort": "none"}, {"thinkingConfig": {"thinkingBudget": 0}}),
    ],
)
def test_fields_with_a_gemini_equivalent_are_translated(
    google: Target, caller: Caller, options: dict[str, Any], config: dict[str, Any]
) -> None:
    result = caller.complete(google, ask("hi", temperature=0.2, options=options))
    assert google.fake.last.body["generationConfig"] == {"temperature": 0.2, **config}
    assert result.text == expected_answer("hi")


def test_fields_that_do_not_change_the_answer_are_not_sent(google: Target, caller: Caller) -> None:
    options = {
        "user": "u-1",
        "metadata": {"a": "b"},
        "store": True,
        "prompt_cache_key": "k",
        "safety_identifier": "s",
        "service_tier": "auto",
        "logit_bias": {},
        "logprobs": False,
        "top_logprobs": 0,
        "modalities": ["text"],
        "verbosity": None,
    }
    result = caller.complete(google, ask("hi", n=1, parallel_tool_calls=True, options=options))
    assert google.fake.last.body == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert result.text == expected_answer("hi")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"options": {"logit_bias": {"50256": -100}}}, "logit_bias"),
        ({"options": {"logprobs": True}}, "logprobs"),
        ({"options": {"top_logprobs": 3}}, "top_logprobs"),
        ({"options": {"service_tier": "flex"}}, "service_tier"),
        ({"options": {"modalities": ["text", "audio"]}}, "modalities"),
        ({"options": {"audio": {"voice": "alloy", "format": "wav"}}}, "audio"),
        ({"options": {"prediction": {"type": "content", "content": "x"}}}, "prediction"),
        ({"options": {"verbosity": "low"}}, "verbosity"),
        ({"options": {"web_search_options": {}}}, "web_search_options"),
        ({"options": {"functions": [{"name": "f"}]}}, "functions"),
        ({"options": {"function_call": "auto"}}, "function_call"),
        ({"options": {"reasoning_effort": "extreme"}}, "reasoning_effort"),
        ({"options": {"min_p": 0.1}}, "min_p"),
        ({"options": {"seed": 2**31}}, "seed"),
        ({"tool_choice": ToolChoice("required")}, "tool_choice"),
    ],
)
def test_every_refusal_names_its_field_and_sends_nothing(
    google: Target, caller: Caller, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        caller.stream(google, ask("hi", **fields))
    assert caught.value.param == param
    assert caught.value.status_code == 400
    assert caught.value.message.startswith(param)
    assert google.fake.requests == []


def test_an_unknown_field_says_the_protocol_lacks_it(google: Target, caller: Caller) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        caller.complete(google, ask("hi", options={"min_p": 0.1}))
    assert caught.value.message == "min_p is not a field the Gemini protocol has"


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (
            [
                ChatMessage("system", "Be brief."),
                ChatMessage("user", "hi"),
                ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "get_weather", "{not json"),)),
                ChatMessage("tool", "sunny", tool_call_id="c1"),
            ],
            "messages[2].tool_calls[0].function.arguments",
        ),
        (
            [
                ChatMessage("user", "hi"),
                ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "a", "{}"), ToolCall("c2", "b", "[1]"))),
            ],
            "messages[1].tool_calls[1].function.arguments",
        ),
        ([ChatMessage("user", "hi"), ChatMessage("tool", "sunny", tool_call_id="nowhere")], "messages[1].tool_call_id"),
    ],
)
def test_history_gemini_cannot_carry_is_refused_by_its_place(
    google: Target, caller: Caller, messages: list[ChatMessage], param: str
) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        caller.complete(google, ChatRequest(model="m", messages=messages, tools=(WEATHER,)))
    assert caught.value.param == param
    assert google.fake.requests == []


def test_mixed_content_keeps_the_callers_order(google: Target, caller: Caller) -> None:
    other = Attachment("image", "image/jpeg", b"\xff\xd8\xff\xe0jpeg", "b.jpg", detail="high")
    message = ChatMessage("user", "Look:\nand\n?", [IMAGE, other], parts=("Look:", IMAGE, "and", other, "?"))
    caller.complete(google, ChatRequest(model="m", messages=[message]))

    assert google.fake.last.body["contents"][0]["parts"] == [
        {"text": "Look:"},
        {"inline_data": {"mime_type": "image/png", "data": b64(PNG_BYTES)}},
        {"text": "and"},
        {"inline_data": {"mime_type": "image/jpeg", "data": b64(other.data)}},  # detail is not sent
        {"text": "?"},
    ]


# -- Gemini's own answers (shapes the fake does not produce) --


def test_a_call_id_gemini_sends_is_kept_and_candidates_are_ordered_by_index() -> None:
    body = {
        "candidates": [
            {"index": 1, "content": {"parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS"},
            {
                "content": {
                    "parts": [
                        {"text": "Checking. "},
                        {"functionCall": {"id": "gem-1", "name": "get_weather", "args": {"city": "Rome"}}},
                    ]
                },
                "finishReason": "STOP",
            },
        ]
    }
    result = GoogleAdapter().parse_response(body, ask("hi"))
    assert result.text == "Checking. "
    assert result.tool_calls == (ToolCall("gem-1", "get_weather", '{"city": "Rome"}'),)
    assert [(c.index, c.text, c.finish_reason) for c in result.other_choices] == [(1, "B", "MAX_TOKENS")]


def test_a_stream_with_text_and_calls_in_one_event_keeps_their_order_and_counts_positions() -> None:
    translator = GoogleStreamTranslator(GoogleAdapter(), "m")
    first = {"candidates": [{"content": {"parts": [{"text": "On it. "}, {"functionCall": {"name": "a", "args": {}}}]}}]}
    second = {
        "candidates": [
            {
                "content": {"parts": [{"functionCall": {"id": "x9", "name": "b", "args": {"k": [1]}}}]},
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4},
    }
    items = translator.feed(SSEEvent("message", json.dumps(first)))
    assert translator.is_complete() is False
    items += translator.feed(SSEEvent("message", json.dumps(second)))

    assert items[0] == StreamChunk("On it. ")
    assert [(d.position, d.name, d.arguments) for d in items[1:] if isinstance(d, ToolCallDelta)] == [
        (0, "a", "{}"),
        (1, "b", '{"k": [1]}'),
    ]
    end = translator.finish()
    assert [c.id for c in end.tool_calls][1] == "x9" and MADE_ID.match(end.tool_calls[0].id)
    assert (end.text, end.finish_reason, end.total_tokens) == ("On it. ", "STOP", 7)


def test_a_stream_is_complete_only_when_every_candidate_has_finished() -> None:
    translator = GoogleStreamTranslator(GoogleAdapter(), "m")
    both = {
        "candidates": [
            {"content": {"parts": [{"text": "A"}]}, "index": 0},
            {"content": {"parts": [{"text": "B"}]}, "index": 1},
        ]
    }
    translator.feed(SSEEvent("message", json.dumps(both)))
    translator.feed(SSEEvent("message", json.dumps({"candidates": [{"index": 0, "finishReason": "STOP"}]})))
    assert translator.is_complete() is False
    translator.feed(SSEEvent("message", json.dumps({"candidates": [{"index": 1, "finishReason": "STOP"}]})))
    assert translator.is_complete() is True
    assert [(c.index, c.text) for c in translator.finish().other_choices] == [(1, "B")]


# -- Gemini 3's thought signatures: carried in the tool call id, sent back on their functionCall part --

GEMINI_3 = "gemini-3-pro-preview"
SIGNED_ID = re.compile(r"^(call_[0-9a-f]{24})" + THOUGHT_SEPARATOR + r"([A-Za-z0-9+/]+=*)$")


def answer(caller: Caller, google: Target, request: ChatRequest, stream: bool) -> tuple[tuple[ToolCall, ...], str]:
    """(tool calls, text) of one call, whole or streamed; streamed, the deltas' ids are the calls' ids."""
    if not stream:
        result = caller.complete(google, request)
        return result.tool_calls, result.text
    items = caller.stream(google, request)
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.finished
    assert [d.id for d in items if isinstance(d, ToolCallDelta)] == [c.id for c in end.tool_calls]
    assert "".join(c.text for c in items if isinstance(c, StreamChunk)) == end.text
    return end.tool_calls, end.text


def loop_messages(calls: tuple[ToolCall, ...], *results: tuple[str, str]) -> list[ChatMessage]:
    """Round two: the question, the assistant's calls as the client got them, then (tool_call_id, result)s."""
    return [
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=calls),
        *(ChatMessage("tool", text, tool_call_id=call_id) for call_id, text in results),
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_gemini_3_signature_rides_in_the_call_id_and_goes_back_on_its_part(
    google: Target, caller: Caller, stream: bool
) -> None:
    (call,), text = answer(caller, google, tools_request(model=GEMINI_3), stream)
    match = SIGNED_ID.match(call.id)
    assert match, call.id
    signature = match.group(2)
    assert signature in google.fake.signatures  # the very one the fake handed out
    assert split_call_id(call.id) == (match.group(1), signature)
    assert (call.name, call.arguments, text) == ("get_weather", WEATHER_ARGS, "")

    request = ChatRequest(model=GEMINI_3, messages=loop_messages((call,), (call.id, "sunny")), tools=(WEATHER, TIME))
    calls, text = answer(caller, google, request, stream)

    contents = google.fake.last.body["contents"]
    # The bare part (no id is sent) with the signature as its sibling; the tool message's full id found the name.
    assert contents[1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": json.loads(WEATHER_ARGS)},
                    "thoughtSignature": signature,
                }
            ],
        },
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}]},
    ]
    assert (calls, text) == ((), tool_results_answer(["sunny"]))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_only_the_first_of_parallel_calls_is_signed_and_each_part_keeps_its_own(
    google: Target, caller: Caller, stream: bool
) -> None:
    model = "gemini-3-parallel-tools"
    (weather, time), _ = answer(caller, google, tools_request(model=model), stream)
    signature = SIGNED_ID.match(weather.id).group(2)  # type: ignore[union-attr]
    assert MADE_ID.match(time.id)  # Gemini 3 signs only the first call of a parallel set
    assert split_call_id(time.id) == (time.id, None)

    messages = loop_messages((weather, time), (time.id, "12:00"), (weather.id, "sunny"))
    _, text = answer(caller, google, ChatRequest(model=model, messages=messages, tools=(WEATHER, TIME)), stream)

    contents = google.fake.last.body["contents"]
    assert contents[1]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": json.loads(WEATHER_ARGS)}, "thoughtSignature": signature},
        {"functionCall": {"name": "get_time", "args": {}}},
    ]
    assert [p["functionResponse"]["name"] for p in contents[2]["parts"]] == ["get_time", "get_weather"]
    assert text == tool_results_answer(["12:00", "sunny"])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_gemini_2_5_call_ids_have_no_signature_and_nothing_extra_goes_back(
    google: Target, caller: Caller, stream: bool
) -> None:
    model = "gemini-2.5-flash"
    (call,), _ = answer(caller, google, tools_request(model=model), stream)
    assert MADE_ID.match(call.id) and THOUGHT_SEPARATOR not in call.id

    request = ChatRequest(model=model, messages=loop_messages((call,), (call.id, "sunny")), tools=(WEATHER,))
    _, text = answer(caller, google, request, stream)

    assert google.fake.last.body["contents"][1]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": json.loads(WEATHER_ARGS)}}
    ]
    assert text == tool_results_answer(["sunny"])


def test_gemini_3_gets_googles_stand_in_for_a_call_that_lost_its_signature(google: Target, caller: Caller) -> None:
    # History from elsewhere (another model, a client that kept only a bare id): the first call of the step
    # goes with Google's documented stand-in, which Gemini 3 accepts, instead of a turn it would refuse.
    (call,) = caller.complete(google, tools_request(model=GEMINI_3)).tool_calls
    bare, _ = split_call_id(call.id)
    stripped = ToolCall(bare, call.name, call.arguments)
    request = ChatRequest(model=GEMINI_3, messages=loop_messages((stripped,), (bare, "sunny")), tools=(WEATHER,))

    result = caller.complete(google, request)
    assert result.text == tool_results_answer(["sunny"])
    assert google.fake.last.body["contents"][1]["parts"][0]["thoughtSignature"] == SKIP_SIGNATURE


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_text_answers_signature_never_shows_in_the_text(google: Target, caller: Caller, stream: bool) -> None:
    request = ask("Hello there", model=GEMINI_3)
    if stream:
        items = caller.stream(google, request)
        text = "".join(c.text for c in items if isinstance(c, StreamChunk))
        end = items[-1]
        assert isinstance(end, StreamEnd) and end.text == text and end.tool_calls == ()
    else:
        result = caller.complete(google, request)
        text = result.text
        # The fake did sign the text part: it is dropped, as Gemini allows.
        assert "thoughtSignature" in result.raw["candidates"][0]["content"]["parts"][-1]
    assert text == expected_answer("Hello there")
    assert not any(signature in text for signature in google.fake.signatures)


def test_a_signature_on_gemini_s_own_call_id_and_a_tool_message_with_the_bare_id() -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {
                            "functionCall": {"id": "gem-1", "name": "get_weather", "args": {"city": "Rome"}},
                            "thoughtSignature": "c2ln+/A=",
                        },
                        {"text": "Done.", "thoughtSignature": "dGV4dA=="},
                    ]
                },
                "finishReason": "STOP",
            }
        ]
    }
    result = GoogleAdapter().parse_response(body, ask("hi"))
    assert result.tool_calls == (ToolCall("gem-1__thought__c2ln+/A=", "get_weather", '{"city": "Rome"}'),)
    assert result.text == "Done."
    assert signed_call_id("gem-1", None) == "gem-1" and split_call_id("gem-1") == ("gem-1", None)

    # A client that answers with the bare id still gets the function's name found.
    messages = [
        ChatMessage("user", "Weather?"),
        ChatMessage("assistant", "", tool_calls=result.tool_calls),
        ChatMessage("tool", "sunny", tool_call_id="gem-1"),
    ]
    call = GoogleAdapter().build_call(ChatRequest(model=GEMINI_3, messages=messages), "http://x", "k", stream=False)
    assert call.body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}, "thoughtSignature": "c2ln+/A="}
            ],
        },
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}]},
    ]


def test_a_streamed_signature_is_in_the_delta_id_of_its_call_only() -> None:
    translator = GoogleStreamTranslator(GoogleAdapter(), GEMINI_3)
    event = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"functionCall": {"name": "a", "args": {}}, "thoughtSignature": "QUJD"},
                        {"functionCall": {"name": "b", "args": {}}},
                    ]
                },
                "finishReason": "STOP",
            }
        ]
    }
    deltas = translator.feed(SSEEvent("message", json.dumps(event)))
    assert [split_call_id(d.id or "")[1] for d in deltas if isinstance(d, ToolCallDelta)] == ["QUJD", None]
    assert translator.finish().tool_calls[0].id.endswith("__thought__QUJD")


@pytest.mark.parametrize(
    ("signature", "says"),
    [
        ("bm90IG1pbmU=", "Corrupted thought signature"),
        ("not base64!", "thought_signature' (TYPE_BYTES), Base64 decoding failed"),
    ],
)
def test_the_fake_refuses_a_signature_it_did_not_give(google: Target, signature: str, says: str) -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": signature}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
        ]
    }
    answer = httpx.post(
        f"{google.endpoint}/v1beta/models/{GEMINI_3}:generateContent", json=body, headers={"x-goog-api-key": GOOGLE_KEY}
    )
    assert answer.status_code == 400
    assert says in answer.json()["error"]["message"]


# -- the fake refuses what Gemini refuses, so the translations above are checked against something --


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"logitBias": {}}},
            'Unknown name "logitBias"',
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "generationConfig": {
                    "responseMimeType": "application/json",
                    "responseSchema": {"type": "object", "properties": {"a": {"type": "STRING"}}},
                },
            },
            "(type.googleapis.com/google.ai.generativelanguage.v1beta.Type)",
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"$ref": "#/$defs/A"}}]}],
            },
            'Unknown name "$ref"',
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                    {"role": "user", "parts": [{"functionResponse": {"response": {"result": "ok"}}}]},
                ]
            },
            "function_response.name: Name cannot be empty.",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "g", "response": {}}}]},
                ]
            },
            "g answers no function call",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
                ]
            },
            "function response turn comes immediately after a function call turn",
        ),
    ],
)
def test_the_fake_refuses_what_gemini_refuses(google: Target, body: dict[str, Any], says: str) -> None:
    answer = httpx.post(
        f"{google.endpoint}/v1beta/models/m:generateContent", json=body, headers={"x-goog-api-key": GOOGLE_KEY}
    )
    assert answer.status_code == 400
    assert says in answer.json()["error"]["message"]
