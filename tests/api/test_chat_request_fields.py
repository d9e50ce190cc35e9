"""The request parser field by field: where each accepted value lands in the ChatRequest, and each refusal's
message and param (the OpenAI field path), as OpenAI checks them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from mindroute.http.chat_request import InvalidChatRequest, ParsedChat, chat_from_body, parse_chat_request
from mindroute.providers.shapes import Attachment, ResponseFormat, ToolCall, ToolChoice, ToolSpec

USER = {"role": "user", "content": "hi"}
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG-a").decode()
PNG_B = "data:image/png;base64," + base64.b64encode(b"\x89PNG-b").decode()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}
CLOCK = {"type": "function", "function": {"name": "get-time_2"}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}


def parse(**fields: Any) -> ParsedChat:
    return chat_from_body({"model": "P/m", "messages": [USER], **fields})


def refused(**fields: Any) -> InvalidChatRequest:
    with pytest.raises(InvalidChatRequest) as refusal:
        parse(**fields)
    return refusal.value


def assert_refused(param: str, words: str, **fields: Any) -> None:
    refusal = refused(**fields)
    assert refusal.param == param, refusal.message
    assert words in refusal.message


def loop(*after: dict[str, Any]) -> list[dict[str, Any]]:
    """A tool round: the question, the assistant's call, then `after`."""
    return [USER, {"role": "assistant", "content": None, "tool_calls": [CALL]}, *after]


# --- messages ---------------------------------------------------------------------------------------------


def test_content_parts_keep_their_order_and_text_and_attachments_are_still_filled():
    content = [
        {"type": "text", "text": "Image A:"},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
        {"type": "text", "text": "Image B:"},
        {"type": "image_url", "image_url": {"url": PNG_B}},
        {"type": "text", "text": "Which is brighter?"},
    ]
    (message,) = parse(messages=[{"role": "user", "content": content}]).request.messages
    a, b = message.attachments
    assert message.parts == ("Image A:", a, "Image B:", b, "Which is brighter?")
    assert message.content() == message.parts
    assert message.text == "Image A:\nImage B:\nWhich is brighter?"
    assert (a.data, a.detail, b.data, b.detail) == (b"\x89PNG-a", "low", b"\x89PNG-b", None)
    assert all(isinstance(x, Attachment) and x.mime_type == "image/png" for x in (a, b))


def test_a_string_content_has_no_parts_and_names_are_kept():
    (message,) = parse(messages=[{"role": "user", "content": "hi", "name": "alice"}]).request.messages
    assert (message.text, message.parts, message.name, message.content()) == ("hi", None, "alice", ("hi",))
    assert_refused("messages[0].name", "must be a string", messages=[{"role": "user", "content": "x", "name": 7}])


@pytest.mark.parametrize("detail", ["auto", "low", "high"])
def test_image_detail_reaches_the_attachment(detail):
    part = {"type": "image_url", "image_url": {"url": PNG, "detail": detail}}
    (message,) = parse(messages=[{"role": "user", "content": [part]}]).request.messages
    assert message.attachments[0].detail == detail


def test_refused_parts_name_their_place():
    image = {"type": "image_url", "image_url": {"url": PNG, "detail": "ultra"}}
    assert_refused(
        "messages[0].content[0].image_url.detail", "auto, low, high", messages=[{"role": "user", "content": [image]}]
    )
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    assert_refused(
        "messages[0].content[1].type",
        "input_audio parts are not supported",
        messages=[{"role": "user", "content": [{"type": "text", "text": "listen"}, audio]}],
    )
    assert_refused(
        "messages[0].content[0].type",
        "'video_url' are not supported",
        messages=[{"role": "user", "content": [{"type": "video_url"}]}],
    )
    assert_refused(
        "messages[0].content[0].text",
        "must be a string",
        messages=[{"role": "user", "content": [{"type": "text", "text": 3}]}],
    )
    system_image = {"role": "system", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}
    assert_refused("messages[0].content[0].type", "only allowed in user messages", messages=[system_image])


def test_roles_developer_is_system_and_function_is_refused():
    messages = [
        {"role": "developer", "content": "rules"},
        {"role": "system", "content": [{"type": "text", "text": "s"}]},
    ]
    assert [(m.role, m.text) for m in parse(messages=[*messages, USER]).request.messages] == [
        ("system", "rules"),
        ("system", "s"),
        ("user", "hi"),
    ]
    function = {"role": "function", "name": "f", "content": "42"}
    assert_refused("messages[1].role", "use tool messages (with tool_call_id)", messages=[USER, function])
    assert_refused("messages[0].role", "'robot' is not supported", messages=[{"role": "robot", "content": "x"}])


def test_an_assistant_message_with_tool_calls_and_the_tool_message_answering_it():
    result = {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'}
    messages = parse(messages=loop(result)).request.messages
    assistant, tool = messages[1], messages[2]
    assert assistant.role == "assistant" and assistant.text == "" and assistant.content() == ()
    assert assistant.tool_calls == (ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)
    assert (tool.role, tool.tool_call_id, tool.text) == ("tool", "call_1", '{"temp": 21}')
    assert tool.name == "get_weather"  # looked up from the call it answers (Gemini's functionResponse needs it)
    # The content may also be absent, and a tool's content may be text parts.
    parts = {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
    }
    body = [USER, {"role": "assistant", "tool_calls": [CALL]}, parts]
    tool = parse(messages=body).request.messages[2]
    assert (tool.text, tool.parts) == ("a\nb", ("a", "b"))


def test_parallel_calls_are_answered_by_consecutive_tool_messages():
    second = {"id": "call_2", "type": "function", "function": {"name": "get-time_2", "arguments": "{}"}}
    messages = [
        USER,
        {"role": "assistant", "content": "Looking.", "tool_calls": [CALL, second]},
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "thanks"},
    ]
    parsed = parse(messages=messages).request.messages
    assert [m.name for m in parsed[2:4]] == ["get-time_2", "get_weather"]
    assert parsed[1].text == "Looking." and len(parsed[1].tool_calls) == 2


def test_an_assistant_refusal_part_is_text():
    refusal = {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]}
    assert parse(messages=[USER, refusal, USER]).request.messages[1].text == "I can't."
    user_refusal = {"role": "user", "content": [{"type": "refusal", "refusal": "x"}]}
    assert_refused("messages[0].content[0].type", "'refusal' are not supported", messages=[user_refusal])


@pytest.mark.parametrize(
    ("call", "param", "words"),
    [
        ({**CALL, "type": "custom"}, "messages[1].tool_calls[0].type", "must be 'function'"),
        ({k: v for k, v in CALL.items() if k != "id"}, "messages[1].tool_calls[0].id", "is required"),
        ({**CALL, "function": "f"}, "messages[1].tool_calls[0].function", "must be an object"),
        ({**CALL, "function": {"name": "f"}}, "messages[1].tool_calls[0].function.arguments", "is required"),
        (
            {**CALL, "function": {"name": "f", "arguments": {"a": 1}}},
            "messages[1].tool_calls[0].function.arguments",
            "a string",
        ),
        (
            {**CALL, "function": {"name": "f", "arguments": '{"a": "\ud800"}'}},
            "messages[1].tool_calls[0].function.arguments",
            "lone surrogate",
        ),
    ],
)
def test_bad_tool_calls_in_history_are_refused(call, param, words):
    messages = [
        USER,
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "r"},
    ]
    assert_refused(param, words, messages=messages)


def test_tool_messages_must_answer_the_calls_before_them():
    assert_refused(
        "messages[1].tool_calls", "non-empty array", messages=[USER, {"role": "assistant", "tool_calls": []}]
    )
    assert_refused("messages[0].tool_call_id", "is required", messages=[{"role": "tool", "content": "r"}])
    assert_refused(
        "messages[2].tool_call_id",
        "must be a string",
        messages=loop({"role": "tool", "tool_call_id": 1, "content": "r"}),
    )
    assert_refused(
        "messages[2].tool_call_id",
        "no unanswered call has the id 'call_9'",
        messages=loop({"role": "tool", "tool_call_id": "call_9", "content": "r"}),
    )
    # Not answered before the next message, or at all.
    assert_refused("messages[2]", "not answered: 'call_1'", messages=loop(USER))
    assert_refused("messages", "must be followed by tool messages", messages=loop())
    # A call answered twice: the second answer answers nothing.
    answer = {"role": "tool", "tool_call_id": "call_1", "content": "r"}
    assert_refused("messages[3].tool_call_id", "no unanswered call", messages=loop(answer, answer))
    image = {"type": "image_url", "image_url": {"url": PNG}}
    assert_refused(
        "messages[2].content[0].type",
        "only allowed in user messages",
        messages=loop({"role": "tool", "tool_call_id": "call_1", "content": [image]}),
    )
    assert_refused(
        "messages[2].content", "a string or a list", messages=loop({"role": "tool", "tool_call_id": "call_1"})
    )


# --- tools, tool_choice, parallel_tool_calls ----------------------------------------------------------------


def test_tools_become_tool_specs():
    request = parse(tools=[WEATHER, CLOCK]).request
    assert request.tools == (
        ToolSpec("get_weather", "The weather in a city", WEATHER["function"]["parameters"], True),
        ToolSpec("get-time_2"),
    )
    assert request.tool_choice is None and request.parallel_tool_calls is None


@pytest.mark.parametrize(
    ("tools", "param", "words"),
    [
        ("get_weather", "tools", "non-empty array"),
        ([], "tools", "non-empty array"),
        ([{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)], "tools", "at most 128 tools"),
        ([{"type": "web_search"}], "tools[0].type", "'web_search' is not supported: only function tools"),
        ([{"type": "function"}], "tools[0].function", "must be an object"),
        (
            [CLOCK, {"type": "function", "function": {"name": "get weather"}}],
            "tools[1].function.name",
            "1 to 64 letters",
        ),
        ([CLOCK, CLOCK], "tools[1].function.name", "two tools have this name"),
        ([{"type": "function", "function": {"name": "f", "parameters": []}}], "tools[0].function.parameters", "object"),
        ([{"type": "function", "function": {"name": "f", "strict": "yes"}}], "tools[0].function.strict", "boolean"),
        (
            [{"type": "function", "function": {"name": "f", "description": 1}}],
            "tools[0].function.description",
            "string",
        ),
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"title": "\udfff"}}}],
            "tools[0].function.parameters",
            "lone surrogate",
        ),
    ],
)
def test_bad_tools_are_refused(tools, param, words):
    assert_refused(param, words, tools=tools)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", ToolChoice("none")),
        ("auto", ToolChoice("auto")),
        ("required", ToolChoice("required")),
        ({"type": "function", "function": {"name": "get-time_2"}}, ToolChoice("function", "get-time_2")),
    ],
)
def test_tool_choice(choice, expected):
    assert parse(tools=[WEATHER, CLOCK], tool_choice=choice).request.tool_choice == expected


def test_tool_choice_refusals_and_without_tools():
    # none and auto say nothing without tools: accepted, not passed on.
    assert parse(tool_choice="none").request.tool_choice is None
    assert parse(tool_choice="auto").request.tool_choice is None
    assert_refused("tool_choice", "only allowed when tools are specified", tool_choice="required")
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert_refused("tool_choice", "only allowed when tools are specified", tool_choice=named)
    unknown = {"type": "function", "function": {"name": "get_wether"}}
    assert_refused(
        "tool_choice.function.name", "'get_wether' is not one of the tools' names", tools=[WEATHER], tool_choice=unknown
    )
    assert_refused("tool_choice", "none, auto, required or a function", tools=[WEATHER], tool_choice="any")
    assert_refused("tool_choice.type", "only function", tools=[WEATHER], tool_choice={"type": "allowed_tools"})
    assert_refused(
        "tool_choice.function.name", "is required", tools=[WEATHER], tool_choice={"type": "function", "function": {}}
    )
    assert_refused("tool_choice", "a string or an object", tools=[WEATHER], tool_choice=1)


def test_parallel_tool_calls():
    assert parse(tools=[WEATHER], parallel_tool_calls=False).request.parallel_tool_calls is False
    assert parse(tools=[WEATHER], parallel_tool_calls=True).request.parallel_tool_calls is True
    assert parse(parallel_tool_calls=False).request.parallel_tool_calls is None  # without tools: says nothing
    assert_refused("parallel_tool_calls", "must be a boolean", tools=[WEATHER], parallel_tool_calls="no")


# --- response_format, n, stream ------------------------------------------------------------------------------


def test_response_format():
    assert parse(response_format={"type": "text"}).request.response_format == ResponseFormat("text")
    assert parse(response_format={"type": "json_object"}).request.response_format == ResponseFormat("json_object")
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    spec = {"name": "Answer_1", "schema": schema, "strict": True, "description": "The answer"}
    assert parse(response_format={"type": "json_schema", "json_schema": spec}).request.response_format == (
        ResponseFormat("json_schema", "Answer_1", schema, True, "The answer")
    )
    bare = parse(response_format={"type": "json_schema", "json_schema": {"name": "a"}}).request.response_format
    assert bare == ResponseFormat("json_schema", "a")


@pytest.mark.parametrize(
    ("value", "param", "words"),
    [
        ("json", "response_format", "must be an object"),
        ({"type": "yaml"}, "response_format.type", "text, json_object or json_schema, not 'yaml'"),
        ({"type": "json_schema"}, "response_format.json_schema", "required with type json_schema"),
        ({"type": "json_schema", "json_schema": {"schema": {}}}, "response_format.json_schema.name", "1 to 64"),
        ({"type": "json_schema", "json_schema": {"name": "a b"}}, "response_format.json_schema.name", "1 to 64"),
        (
            {"type": "json_schema", "json_schema": {"name": "a", "schema": "{}"}},
            "response_format.json_schema.schema",
            "object",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "a", "strict": 1}},
            "response_format.json_schema.strict",
            "boolean",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "a", "description": 1}},
            "response_format.json_schema.description",
            "string",
        ),
    ],
)
def test_bad_response_formats_are_refused(value, param, words):
    assert_refused(param, words, response_format=value)


def test_n():
    assert parse().request.n is None
    assert [parse(n=n).request.n for n in (1, 2, 128)] == [1, 2, 128]
    for bad in (0, 129, 1.5, True, "2"):
        assert refused(n=bad).param == "n"
    assert "between 1 and 128" in refused(n=0).message


def test_stream_and_stream_options():
    parsed = parse(stream=True, stream_options={"include_usage": True})
    assert parsed.request.stream and parsed.include_usage
    assert not parse(stream=True, stream_options={}).include_usage
    for stream in (None, False):
        refusal = refused(stream=stream, stream_options={"include_usage": True})
        assert (refusal.message, refusal.param) == (
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    assert_refused("stream", "must be a boolean", stream="yes")
    assert_refused("stream_options", "must be an object", stream=True, stream_options=[])
    assert_refused("stream_options.include_usage", "boolean", stream=True, stream_options={"include_usage": "y"})


# --- options ----------------------------------------------------------------------------------------------

ACCEPTED_OPTIONS: list[tuple[str, Any]] = [
    ("seed", 42),
    ("seed", -1),
    ("presence_penalty", 1.5),
    ("frequency_penalty", -2),
    ("logit_bias", {"50256": -100, "15": 0.5}),
    ("logit_bias", {}),
    ("logprobs", False),
    ("reasoning_effort", "minimal"),
    ("reasoning_effort", "xhigh"),
    ("metadata", {"team": "search", "k" * 64: "v" * 512}),
    ("service_tier", "priority"),
    ("store", True),
    ("modalities", ["text", "audio"]),
    ("audio", {"voice": "alloy", "format": "wav"}),
    ("prediction", {"type": "content", "content": "draft"}),
    ("verbosity", "low"),
    ("web_search_options", {"search_context_size": "low"}),
    ("prompt_cache_key", "cache-1"),
    ("safety_identifier", "hash-1"),
    ("top_k", -1),
    ("top_k", 40),
    ("min_p", 0.1),  # not OpenAI's: kept as sent, for openai-compatible servers
    ("chat_template_kwargs", {"enable_thinking": False}),
    ("repetition_penalty", 1.1),
]


@pytest.mark.parametrize(("name", "value"), ACCEPTED_OPTIONS)
def test_options_land_in_options_as_sent(name, value):
    request = parse(**{name: value}).request
    assert dict(request.options) == {name: value}


def test_top_logprobs_with_logprobs_and_user_in_both_places():
    assert dict(parse(logprobs=True, top_logprobs=20).request.options) == {"logprobs": True, "top_logprobs": 20}
    parsed = parse(user="end-user-7")
    assert parsed.user == "end-user-7" and dict(parsed.request.options) == {"user": "end-user-7"}
    assert parse().user is None and dict(parse().request.options) == {}


def test_null_options_are_absent():
    assert dict(parse(seed=None, metadata=None, min_p=None, functions=None, function_call=None).request.options) == {}


REFUSED_OPTIONS: list[tuple[dict[str, Any], str, str]] = [
    ({"seed": 1.5}, "seed", "must be an integer"),
    ({"seed": "1"}, "seed", "must be an integer"),
    ({"seed": True}, "seed", "must be an integer"),
    ({"presence_penalty": 2.5}, "presence_penalty", "between -2 and 2"),
    ({"frequency_penalty": -3}, "frequency_penalty", "between -2 and 2"),
    ({"frequency_penalty": "0"}, "frequency_penalty", "must be a number"),
    ({"logit_bias": []}, "logit_bias", "must be an object"),
    ({"logit_bias": {"abc": 1}}, "logit_bias", "token ids (digits), not 'abc'"),
    ({"logit_bias": {"12": 101}}, "logit_bias.12", "between -100 and 100"),
    ({"logit_bias": {"12": "1"}}, "logit_bias.12", "must be a number"),
    ({"logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias", "at most 300 entries"),
    ({"logprobs": "true"}, "logprobs", "must be a boolean"),
    ({"top_logprobs": 3}, "top_logprobs", "needs logprobs set to true"),
    ({"logprobs": False, "top_logprobs": 3}, "top_logprobs", "needs logprobs set to true"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "between 0 and 20"),
    ({"logprobs": True, "top_logprobs": -1}, "top_logprobs", "between 0 and 20"),
    ({"reasoning_effort": "ultra"}, "reasoning_effort", "none, minimal, low, medium, high, xhigh, not 'ultra'"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "at most 16 entries"),
    ({"metadata": {"k" * 65: "v"}}, "metadata", "keys must be at most 64 characters"),
    ({"metadata": {"k": "v" * 513}}, "metadata.k", "at most 512 characters"),
    ({"metadata": {"k": 1}}, "metadata.k", "must be a string"),
    ({"metadata": "tag"}, "metadata", "must be an object"),
    ({"service_tier": "turbo"}, "service_tier", "auto, default, flex, scale, priority"),
    ({"store": 1}, "store", "must be a boolean"),
    ({"modalities": "text"}, "modalities", "must be an array"),
    ({"modalities": ["text", "video"]}, "modalities[1]", "text, audio, not 'video'"),
    ({"audio": "alloy"}, "audio", "must be an object"),
    ({"prediction": 1}, "prediction", "must be an object"),
    ({"verbosity": "max"}, "verbosity", "low, medium, high"),
    ({"web_search_options": []}, "web_search_options", "must be an object"),
    ({"prompt_cache_key": 1}, "prompt_cache_key", "must be a string"),
    ({"safety_identifier": ["a"]}, "safety_identifier", "must be a string"),
    ({"user": 7}, "user", "must be a string"),
    ({"user": "\ud800"}, "user", "lone surrogate"),
    ({"top_k": -2}, "top_k", "at least -1"),
    ({"top_k": 1.5}, "top_k", "must be an integer"),
    ({"min_p": {"x": "\udc00"}}, "min_p", "lone surrogate"),
    ({"functions": [{"name": "f"}]}, "functions", "use tools"),
    ({"function_call": {"name": "f"}}, "function_call", "use tool_choice"),
]


@pytest.mark.parametrize(("fields", "param", "words"), REFUSED_OPTIONS)
def test_bad_options_are_refused(fields, param, words):
    assert_refused(param, words, **fields)


# --- the typed fields are not options; the hot path reads only what is there ---------------------------------


def test_mindroute_s_own_fields_are_typed_not_options():
    body = {
        "max_tokens": 5,
        "max_completion_tokens": 6,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": "END",
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [WEATHER],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "response_format": {"type": "text"},
        "n": 3,
    }
    assert dict(parse(**body).request.options) == {}


class ReadingBody(dict):
    """A request body that remembers which keys the parser asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


def test_a_plain_body_is_parsed_without_looking_for_the_rare_fields():
    body = ReadingBody({"model": "P/m", "messages": [USER], "stream": True, "max_tokens": 9})
    chat_from_body(body)
    assert body.read <= {
        "model",
        "messages",
        "stream",
        "temperature",
        "top_p",
        "stop",
        "max_tokens",
        "max_completion_tokens",
    }
    assert "tools" not in body.read and "n" not in body.read


def test_a_whole_agent_request_from_json():
    body = {
        "model": "P/m",
        "messages": loop({"role": "tool", "tool_call_id": "call_1", "content": "sunny"}),
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
        "seed": 1,
        "top_k": 5,
    }
    parsed = parse_chat_request(json.dumps(body).encode())
    request = parsed.request
    assert request.tool_choice == ToolChoice("function", "get_weather") and request.parallel_tool_calls is False
    assert [m.role for m in request.messages] == ["user", "assistant", "tool"]
    assert dict(request.options) == {"seed": 1, "top_k": 5}


def test_unknown_fields_keep_the_body_s_order_and_a_broken_field_name_is_refused():
    options = parse(zeta=1, seed=2, alpha={"x": [1]}).request.options
    assert list(options.items()) == [("zeta", 1), ("seed", 2), ("alpha", {"x": [1]})]
    raw = b'{"model": "P/m", "messages": [{"role": "user", "content": "x"}], "a\\ud800": 1}'
    with pytest.raises(InvalidChatRequest, match="a field whose name is not printable text"):
        parse_chat_request(raw)
