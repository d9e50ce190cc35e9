"""The OpenAI shapes in and out, without a server."""

from __future__ import annotations

import json

import pytest

from mindroute.http.chat_request import InvalidChatRequest, parse_chat_request
from mindroute.http.openai_compat import error_body, finish_reason


def parse(**body):
    return parse_chat_request(
        json.dumps({"model": "P/m", "messages": [{"role": "user", "content": "hi"}], **body}).encode()
    )


def test_options_reach_the_chat_request():
    parsed = parse(max_tokens=10, max_completion_tokens=20, temperature=0.2, top_p=0.5, stop="END", user="u1")
    request = parsed.request
    assert (request.max_tokens, request.temperature, request.top_p, request.stop) == (20, 0.2, 0.5, ["END"])
    assert parsed.user == "u1"
    assert not parsed.include_usage


def test_tools_and_several_choices_reach_the_chat_request():
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    request = parse(tools=[tool], tool_choice="required", n=2).request
    assert [t.name for t in request.tools] == ["lookup"] and request.tool_choice.mode == "required"
    assert request.n == 2


def test_developer_messages_are_system_and_text_parts_join():
    parsed = parse(
        messages=[
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        ]
    )
    assert [(m.role, m.text) for m in parsed.request.messages] == [("system", "rules"), ("user", "a\nb")]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"tools": [{"type": "function"}]}, "tools\\[0\\].function must be an object"),
        ({"functions": [{"name": "f"}]}, "functions is deprecated .*use tools"),
        ({"function_call": "auto"}, "function_call is deprecated .*use tool_choice"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "'g' is not one of the tools' names",
        ),
        ({"tool_choice": "required"}, "only allowed when tools are specified"),
        ({"n": 129}, "n must be between 1 and 128"),
        ({"stream_options": {"include_usage": True}}, "only allowed when 'stream' is enabled"),
        ({"temperature": 3}, "between 0 and 2"),
        ({"max_tokens": 0}, "positive integer"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "not supported: use tool messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id is required"),
        ({"messages": [{"role": "tool", "tool_call_id": "c1", "content": "x"}]}, "must answer a tool call"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
                ]
            },
            "does not fetch remote URLs",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}],
                    }
                ]
            },
            "not valid base64",
        ),
    ],
)
def test_requests_mindroute_cannot_carry_are_refused(body, words):
    with pytest.raises(InvalidChatRequest, match=words):
        parse(**body)


def test_error_bodies_redact_keys_and_finish_reasons_map():
    body = error_body(502, "upstream said sk-proj-abcdefghijklmnop is wrong")
    assert "sk-proj" not in body["error"]["message"]
    assert body["error"]["type"] == "upstream_error"
    assert [finish_reason(r) for r in ("end_turn", "MAX_TOKENS", "SAFETY", None)] == [
        "stop",
        "length",
        "content_filter",
        "stop",
    ]
