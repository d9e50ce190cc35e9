"""The OpenAPI description and the request parser read one field table: every field of the schema lands in the
request the parser builds, with the same constraints (ranges, enums, lengths, patterns) as the document says."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mindroute.http.chat_request import REFUSED_FIELDS, REQUEST_FIELDS, InvalidChatRequest, chat_from_body
from mindroute.http.openapi import OPENAPI

CHAT = OPENAPI["paths"]["/v1/chat/completions"]["post"]
SCHEMA = CHAT["requestBody"]["content"]["application/json"]["schema"]
MINIMAL = {"model": "P/m", "messages": [{"role": "user", "content": "hi"}]}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
# A valid value of each field: the parser must take them all at once.
VALID: dict[str, Any] = {
    "model": "P/m",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": 5,
    "max_completion_tokens": 6,
    "temperature": 1,
    "top_p": 0.5,
    "stop": ["a", "b"],
    "tools": [TOOL],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "response_format": {"type": "json_object"},
    "n": 2,
    "seed": 7,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 3,
    "reasoning_effort": "low",
    "metadata": {"team": "a"},
    "service_tier": "flex",
    "store": False,
    "modalities": ["text"],
    "audio": {"voice": "alloy", "format": "mp3"},
    "prediction": {"type": "content", "content": "x"},
    "verbosity": "high",
    "web_search_options": {},
    "prompt_cache_key": "k1",
    "safety_identifier": "s1",
    "user": "u1",
    "top_k": 40,
}
# What a field needs beside it to be accepted.
NEEDS: dict[str, dict[str, Any]] = {
    "stream_options": {"stream": True},
    "tool_choice": {"tools": [TOOL]},
    "parallel_tool_calls": {"tools": [TOOL]},
    "top_logprobs": {"logprobs": True},
}
OPTIONS = {field.name for field in REQUEST_FIELDS if field.option}


def with_field(name: str, value: Any) -> dict[str, Any]:
    return {**MINIMAL, **NEEDS.get(name, {}), name: value}


def refused_param(body: dict[str, Any]) -> str | None:
    with pytest.raises(InvalidChatRequest) as refused:
        chat_from_body(body)
    return refused.value.param


def test_every_field_of_the_schema_is_taken_at_once_and_lands_in_the_request():
    assert set(VALID) == set(SCHEMA["properties"])
    parsed = chat_from_body(VALID)
    request = parsed.request
    assert parsed.include_usage and parsed.user == "u1" and request.max_tokens == 6
    assert (request.temperature, request.top_p, request.stop, request.stream) == (1.0, 0.5, ["a", "b"], True)
    assert [tool.name for tool in request.tools] == ["get_weather"]
    assert request.tool_choice is not None and request.tool_choice.mode == "required"
    assert request.parallel_tool_calls is False and request.n == 2
    assert request.response_format is not None and request.response_format.type == "json_object"
    # The option fields, and only they, are in options, as sent.
    assert dict(request.options) == {name: VALID[name] for name in OPTIONS}
    assert OPTIONS < set(SCHEMA["properties"])


@pytest.mark.parametrize("name", sorted(set(VALID) - {"model", "messages"}))
def test_each_field_alone_changes_the_request(name):
    bare = chat_from_body({**MINIMAL, **NEEDS.get(name, {})})
    parsed = chat_from_body(with_field(name, VALID[name]))
    assert parsed != bare, f"{name} landed nowhere"


def test_a_field_the_table_does_not_name_is_kept_as_sent_and_the_deprecated_ones_are_refused():
    extension = {"min_p": 0.05, "chat_template_kwargs": {"enable_thinking": False}}
    assert dict(chat_from_body({**MINIMAL, **extension}).request.options) == extension
    assert "additionalProperties" in SCHEMA and all(name in SCHEMA["description"] for name in REFUSED_FIELDS)
    for name in REFUSED_FIELDS:
        assert name not in SCHEMA["properties"]
        assert refused_param({**MINIMAL, name: [] if name == "functions" else "auto"}) == name


def test_the_schema_s_required_fields_are_the_ones_the_parser_requires():
    assert SCHEMA["required"] == ["model", "messages"]
    for name in SCHEMA["required"]:
        body = {k: v for k, v in MINIMAL.items() if k != name}
        assert refused_param(body) == name
    bare = chat_from_body(MINIMAL)
    for name in set(SCHEMA["properties"]) - set(SCHEMA["required"]):
        assert chat_from_body({**MINIMAL, name: None}) == bare  # optional: null is the same as absent


def bounded(schema: dict[str, Any]) -> dict[str, Any] | None:
    for variant in [schema, *schema.get("oneOf", [])]:
        if "minimum" in variant or "maximum" in variant:
            return variant
    return None


@pytest.mark.parametrize("name", [name for name, spec in SCHEMA["properties"].items() if bounded(spec)])
def test_numeric_bounds_in_the_schema_are_the_parser_s(name):
    schema = bounded(SCHEMA["properties"][name])
    field = next(f for f in REQUEST_FIELDS if f.name == name)
    assert (schema.get("minimum"), schema.get("maximum")) == (field.minimum, field.maximum)
    for edge in (schema.get("minimum"), schema.get("maximum")):
        if edge is not None:
            chat_from_body(with_field(name, edge))
    if "minimum" in schema:
        assert refused_param(with_field(name, schema["minimum"] - 1)) == name
    if "maximum" in schema:
        assert refused_param(with_field(name, schema["maximum"] + 0.5)) == name
        assert refused_param(with_field(name, schema["maximum"] + 1)) == name
    assert refused_param(with_field(name, "1")) == name  # a number's text is not a number
    assert refused_param(with_field(name, True)) == name


def enumerated(schema: dict[str, Any]) -> dict[str, Any] | None:
    for variant in [schema, *schema.get("oneOf", [])]:
        if "enum" in variant:
            return variant
    return None


@pytest.mark.parametrize("name", [name for name, spec in SCHEMA["properties"].items() if enumerated(spec)])
def test_the_enums_in_the_schema_are_the_parser_s(name):
    values = enumerated(SCHEMA["properties"][name])["enum"]
    for value in values:
        chat_from_body(with_field(name, value))
    assert refused_param(with_field(name, "surely-not-a-value")) == name


def test_nested_enums_lengths_and_patterns_are_the_parser_s():
    props = SCHEMA["properties"]
    for modality in props["modalities"]["items"]["enum"]:
        chat_from_body({**MINIMAL, "modalities": [modality]})
    assert refused_param({**MINIMAL, "modalities": ["smell"]}) == "modalities[0]"
    for kind in props["response_format"]["properties"]["type"]["enum"]:
        extra = {"json_schema": {"name": "a"}} if kind == "json_schema" else {}
        chat_from_body({**MINIMAL, "response_format": {"type": kind, **extra}})
    assert refused_param({**MINIMAL, "response_format": {"type": "yaml"}}) == "response_format.type"
    roles = props["messages"]["items"]["properties"]["role"]["enum"]
    assert set(roles) == {"system", "developer", "user", "assistant", "tool"}

    tools = props["tools"]
    name_schema = tools["items"]["properties"]["function"]["properties"]["name"]
    assert name_schema["pattern"] == "^[a-zA-Z0-9_-]{1,64}$"
    chat_from_body({**MINIMAL, "tools": [{"type": "function", "function": {"name": "a" * 64}}]})
    for bad in ("a" * 65, "", "has space", "dot.ted"):
        body = {**MINIMAL, "tools": [{"type": "function", "function": {"name": bad}}]}
        assert refused_param(body) == "tools[0].function.name"
    many = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(tools["maxItems"] + 1)]
    chat_from_body({**MINIMAL, "tools": many[:-1]})
    assert refused_param({**MINIMAL, "tools": many}) == "tools"
    assert tools["minItems"] == 1 and refused_param({**MINIMAL, "tools": []}) == "tools"

    stop = next(s for s in props["stop"]["oneOf"] if s["type"] == "array")
    chat_from_body({**MINIMAL, "stop": ["x"] * stop["maxItems"]})
    assert refused_param({**MINIMAL, "stop": ["x"] * (stop["maxItems"] + 1)}) == "stop"
    assert props["messages"]["minItems"] == 1
    assert refused_param({**MINIMAL, "messages": []}) == "messages"

    metadata = props["metadata"]
    most, longest = metadata["maxProperties"], metadata["additionalProperties"]["maxLength"]
    chat_from_body({**MINIMAL, "metadata": {f"k{i}": "v" * longest for i in range(most)}})
    assert refused_param({**MINIMAL, "metadata": {f"k{i}": "v" for i in range(most + 1)}}) == "metadata"
    assert refused_param({**MINIMAL, "metadata": {"k": "v" * (longest + 1)}}) == "metadata.k"
    bias = props["logit_bias"]
    low, high = bias["additionalProperties"]["minimum"], bias["additionalProperties"]["maximum"]
    chat_from_body({**MINIMAL, "logit_bias": {str(i): low if i % 2 else high for i in range(bias["maxProperties"])}})
    assert (
        refused_param({**MINIMAL, "logit_bias": {str(i): 1 for i in range(bias["maxProperties"] + 1)}}) == "logit_bias"
    )
    assert refused_param({**MINIMAL, "logit_bias": {"7": high + 1}}) == "logit_bias.7"


def test_the_answer_s_tool_calls_are_described():
    schemas = OPENAPI["components"]["schemas"]
    ok = CHAT["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletion"}
    assert ok["text/event-stream"]["schema"] == {"$ref": "#/components/schemas/ChatCompletionChunk"}
    message = schemas["ChatCompletion"]["properties"]["choices"]["items"]["properties"]["message"]
    assert message["properties"]["tool_calls"]["items"] == {"$ref": "#/components/schemas/ToolCall"}
    delta = schemas["ChatCompletionChunk"]["properties"]["choices"]["items"]["properties"]["delta"]
    assert delta["properties"]["tool_calls"]["items"] == {"$ref": "#/components/schemas/ToolCallDelta"}
    assert schemas["ToolCall"]["required"] == ["id", "type", "function"]
    assert "tool_calls" in json.dumps(schemas["ChatCompletion"]["properties"]["choices"])
    assert "index" in schemas["ToolCallDelta"]["required"]


def test_embeddings_and_completions_are_described():
    embeddings = OPENAPI["paths"]["/v1/embeddings"]["post"]
    body = embeddings["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["model", "input"]
    assert {"model", "input", "dimensions", "encoding_format", "user"} == set(body["properties"])
    assert body["properties"]["encoding_format"]["enum"] == ["float", "base64"]
    assert len(body["properties"]["input"]["oneOf"]) == 4  # a string, strings, tokens, token lists
    answer = embeddings["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["properties"]["object"]["const"] == "list"
    assert answer["properties"]["data"]["items"]["properties"]["object"]["const"] == "embedding"
    assert set(answer["properties"]["usage"]["properties"]) == {"prompt_tokens", "total_tokens"}
    completions = OPENAPI["paths"]["/v1/completions"]["post"]
    legacy = completions["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "prompt", "stream", "max_tokens"} <= set(legacy["properties"])
    assert "OpenAI-protocol providers only" in completions["summary"]


def test_every_field_is_described_and_the_document_is_json():
    assert all(spec.get("description") for spec in SCHEMA["properties"].values())
    assert json.loads(json.dumps(OPENAPI)) == OPENAPI
