"""The I/O-free half of tool calls and several choices: the call tracker's key redaction of streamed
pieces, the OpenAI answer and chunk shapes, the finish reasons, and what the Logs row keeps."""

from __future__ import annotations

import uuid

from mindroute.http.openai_compat import completion_json, finish_reason, tool_delta_json
from mindroute.providers.shapes import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    Choice,
    ResponseFormat,
    StreamChunk,
    StreamEnd,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)
from mindroute.services.call_log import request_body, response_body
from mindroute.services.call_tracker import ApiOutcome, Caller, CallTracker
from mindroute.services.routing import PreparedCall, Route

KEY = "sk-proj-TrackerTestKey0123456789abcdefXYZ"


def _tracker(request: ChatRequest | None = None) -> CallTracker:
    route = Route(
        user_id=uuid.uuid4(),
        provider_id=uuid.uuid4(),
        provider_name="P",
        protocol="openai",
        endpoint="http://127.0.0.1:9/v1",
        model="m",
        prices={},
        effective_max_tokens=None,
        limit_source=None,
        allow_images=True,
        allow_videos=True,
        allow_files=True,
        api_key=KEY,
    )
    request = request or ChatRequest("m", [ChatMessage("user", "hi")])
    return CallTracker(PreparedCall(route, request), Caller("api"), 0.0)


def _end(**fields) -> StreamEnd:
    return StreamEnd("", 1, 2, 3, True, fields.pop("finish_reason", "tool_calls"), "m", **fields)


def test_a_key_split_across_tool_argument_pieces_never_leaves_whole_or_in_part():
    tracker = _tracker()
    arguments = '{"note": "' + KEY + '"}'
    pieces = [arguments[i : i + 7] for i in range(0, len(arguments), 7)]
    passed = [
        tracker.chunk(ToolCallDelta(0, "call_1" if i == 0 else None, "f" if i == 0 else None, piece))
        for i, piece in enumerate(pieces)
    ]
    out = [p for batch in passed for p in batch] + tracker.rest()
    assert all(isinstance(p, ToolCallDelta) and p.position == 0 for p in out)
    sent = "".join(p.arguments for p in out)
    assert KEY not in sent and KEY[:12] not in sent
    assert sent == '{"note": "[redacted]"}'
    assert out[0].id == "call_1" and out[0].name == "f"  # the first piece keeps its id and name


def test_text_and_tool_pieces_of_several_choices_are_redacted_apart():
    tracker = _tracker()
    out = tracker.chunk(StreamChunk("Hello ", 0))
    out += tracker.chunk(StreamChunk(KEY[:10], 1))
    out += tracker.chunk(ToolCallDelta(0, "c", "f", KEY[10:], 0))  # not the rest of choice 1's text
    out += tracker.chunk(StreamChunk(KEY[10:], 1))
    out += tracker.rest()
    choice_1 = "".join(p.text for p in out if isinstance(p, StreamChunk) and p.choice == 1)
    assert choice_1 == "[redacted]"
    assert "".join(p.text for p in out if isinstance(p, StreamChunk) and p.choice == 0) == "Hello "
    assert tracker.first_token_ms is not None


def test_whole_answers_have_their_tool_calls_and_other_choices_redacted_in_the_outcome():
    tracker = _tracker()
    calls = (ToolCall("call_1", "lookup", '{"k": "' + KEY + '"}'),)
    others = (Choice(1, "also " + KEY, (), "stop"),)
    tracker.answered(ChatResult("", 1, 2, 3, True, "tool_calls", "m", tool_calls=calls, other_choices=others))
    record, outcome = tracker.finished()
    assert outcome.tool_calls == (ToolCall("call_1", "lookup", '{"k": "[redacted]"}'),)
    assert outcome.other_choices[0].text == "also [redacted]"
    assert record.tool_calls == outcome.tool_calls
    body = response_body(record)
    assert body["tool_calls"] == [{"id": "call_1", "name": "lookup", "arguments": '{"k": "[redacted]"}'}]
    assert body["other_choices"][0]["text"] == "also [redacted]"


def test_completion_json_names_tool_calls_as_openai_does():
    tracker = _tracker()
    calls = (ToolCall("call_1", "get_weather", '{"city": "Seoul"}'), ToolCall("call_2", "get_time", "{}"))
    end = ChatResult("", 1, 2, 3, True, "STOP", "m", tool_calls=calls, other_choices=(Choice(1, "B", (), "stop"),))
    tracker.answered(end)
    _, outcome = tracker.finished()
    answer = completion_json(ApiOutcome(outcome, "STOP", "m", end), "P/m")
    first, second = answer["choices"]
    assert first["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Seoul"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }
    assert first["finish_reason"] == "tool_calls"  # Gemini's STOP, with calls
    assert second == {
        "index": 1,
        "message": {"role": "assistant", "content": "B", "refusal": None},
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_finish_reasons_with_tool_calls():
    assert finish_reason("tool_use") == "tool_calls"
    assert finish_reason("tool_calls") == "tool_calls"
    assert finish_reason("STOP", tool_calls=True) == "tool_calls"
    assert finish_reason("STOP") == "stop"
    assert finish_reason("max_tokens", tool_calls=True) == "length"  # cut off mid-call: length, as OpenAI


def test_streamed_tool_call_pieces_have_openais_shape():
    assert tool_delta_json(ToolCallDelta(0, "call_1", "f", "")) == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    assert tool_delta_json(ToolCallDelta(1, None, None, '{"a"')) == {"index": 1, "function": {"arguments": '{"a"'}}


def test_the_request_body_keeps_tools_tool_messages_and_options():
    request = ChatRequest(
        "m",
        [
            ChatMessage("user", "weather?"),
            ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"key": "' + KEY + '"}'),)),
            ChatMessage("tool", "sunny", tool_call_id="call_1"),
        ],
        tools=(ToolSpec("get_weather", "Weather", {"type": "object"}),),
        tool_choice=ToolChoice("function", "get_weather"),
        parallel_tool_calls=False,
        response_format=ResponseFormat("json_schema", "answer", {"type": "object"}),
        n=2,
        options={"seed": 7, "logit_bias": {"50256": -100}, "metadata": {"x": "y"}},
    )
    tracker = _tracker(request)
    tracker.answered(ChatResult("ok", 1, 2, 3, True, "stop", "m"))
    record, _ = tracker.finished()
    body = request_body(record)
    assert body["tools"] == ["get_weather"]
    assert body["tool_choice"] == "get_weather"
    assert body["parallel_tool_calls"] is False
    assert body["response_format"] == {"type": "json_schema", "name": "answer"}
    assert body["n"] == 2
    assert body["options"] == {"seed": 7, "logit_bias": '{"50256": -100}', "metadata": '{"x": "y"}'}
    assistant, tool = body["messages"][1:]
    assert assistant["tool_calls"] == [{"id": "call_1", "name": "get_weather", "arguments": '{"key": "[redacted]"}'}]
    assert tool == {"role": "tool", "text": "sunny", "tool_call_id": "call_1"}


def test_a_plain_call_logs_no_tool_fields():
    tracker = _tracker()
    tracker.answered(ChatResult("ok", 1, 2, 3, True, "stop", "m"))
    record, outcome = tracker.finished()
    assert outcome.tool_calls == () and outcome.other_choices == ()
    assert "tool_calls" not in response_body(record)
    body = request_body(record)
    assert not {"tools", "tool_choice", "options", "n", "response_format"} & set(body)
