"""Every Chat Completions request field on every protocol, through the API: passed, translated, ignored or refused.

The expectations are written out here as their own table (issue #15's), not read from the code.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.conftest import add_account, add_provider, logged
from tests.api.test_refusals import post
from tests.providers.conftest import make_target
from tests.providers.fake_base import expected_answer

PROTOCOLS = ("openai", "openai-compatible", "anthropic", "google")
PRESENT = object()  # translate: the upstream field is there, whatever its value
ABSENT = object()  # translate: the upstream field is not there

PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": PARAMETERS}}]
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "rainy": {"type": "boolean"}},
    "required": ["city", "rainy"],
    "additionalProperties": False,
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True}}
GEMINI_CONFIG = "generationConfig"


@dataclass(frozen=True)
class Pass:
    """The upstream body holds the field as sent (or, with `as_`, under another name of the same protocol)."""

    as_: str | None = None
    # The real server refuses it (OpenAI's "Unrecognized request argument"): its 400 comes back, as it said it.
    upstream_refuses: bool = False


@dataclass(frozen=True)
class Translate:
    """The upstream body holds these values at these paths (a path is the keys and list indexes to follow)."""

    checks: tuple[tuple[tuple[Any, ...], Any], ...]
    header: tuple[str, str] | None = None  # a request header holding this text


@dataclass(frozen=True)
class Ignore:
    """200, and the field is not in the upstream body."""


@dataclass(frozen=True)
class Refuse:
    """400 with param naming the field; no upstream request."""

    params: tuple[str, ...] = ()  # when not the field's own name: any of these


PASS, IGNORE, REFUSE = Pass(), Ignore(), Refuse()


def t(*checks: tuple[tuple[Any, ...], Any], header: tuple[str, str] | None = None) -> Translate:
    return Translate(checks, header)


def cfg(name: str, value: Any) -> tuple[tuple[Any, ...], Any]:
    return ((GEMINI_CONFIG, name), value)


@dataclass(frozen=True)
class Row:
    """One field set to one value, with what each protocol does with it."""

    id: str
    fields: dict[str, Any]  # what the request sets (the field under test first; the others it needs)
    openai: Any
    anthropic: Any
    google: Any
    compatible: Any = None  # None: as openai
    text: str = "hi"  # the user message

    @property
    def name(self) -> str:
        return next(iter(self.fields))

    def expectation(self, protocol: str) -> Any:
        if protocol == "openai-compatible":
            return self.compatible or self.openai
        return getattr(self, protocol)


@dataclass(frozen=True)
class Above:
    """translate: a number over this one."""

    floor: int


def _anthropic_thinking(budget: int) -> Translate:
    # Anthropic wants max_tokens over the thinking budget: MindRoute raises an unset one.
    return t((("thinking",), {"type": "enabled", "budget_tokens": budget}), (("max_tokens",), Above(budget)))


ROWS = [
    Row("temperature", {"temperature": 0.3}, PASS, t((("temperature",), 0.3)), t(cfg("temperature", 0.3))),
    Row("top_p", {"top_p": 0.8}, PASS, t((("top_p",), 0.8)), t(cfg("topP", 0.8))),
    Row("stop", {"stop": ["END"]}, PASS, t((("stop_sequences",), ["END"])), t(cfg("stopSequences", ["END"]))),
    Row(
        "max_tokens",
        {"max_tokens": 77},
        Pass(as_="max_completion_tokens"),  # OpenAI's reasoning models take only the newer name
        t((("max_tokens",), 77)),
        t(cfg("maxOutputTokens", 77)),
        compatible=PASS,
    ),
    Row(
        "max_completion_tokens",
        {"max_completion_tokens": 66},
        PASS,
        t((("max_tokens",), 66)),
        t(cfg("maxOutputTokens", 66)),
        compatible=Pass(as_="max_tokens"),  # compatible servers mostly know only max_tokens
    ),
    Row(
        "tools",
        {"tools": TOOLS},
        t(
            (("tools", 0, "type"), "function"),
            (("tools", 0, "function", "name"), "get_weather"),
            (("tools", 0, "function", "parameters"), PARAMETERS),
        ),
        t((("tools", 0, "name"), "get_weather"), (("tools", 0, "input_schema"), PARAMETERS)),
        t((("tools", 0, "functionDeclarations", 0, "name"), "get_weather")),
    ),
    Row(
        "tool_choice-auto",
        {"tool_choice": "auto", "tools": TOOLS},
        PASS,
        t((("tool_choice", "type"), "auto")),
        t((("toolConfig", "functionCallingConfig", "mode"), "AUTO")),
    ),
    Row(
        "tool_choice-required",
        {"tool_choice": "required", "tools": TOOLS},
        PASS,
        t((("tool_choice", "type"), "any")),
        t((("toolConfig", "functionCallingConfig", "mode"), "ANY")),
    ),
    Row(
        "tool_choice-none",
        {"tool_choice": "none", "tools": TOOLS},
        PASS,
        t((("tool_choice", "type"), "none")),
        t((("toolConfig", "functionCallingConfig", "mode"), "NONE")),
    ),
    Row(
        "tool_choice-function",
        {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "tools": TOOLS},
        PASS,
        t((("tool_choice", "type"), "tool"), (("tool_choice", "name"), "get_weather")),
        t(
            (("toolConfig", "functionCallingConfig", "mode"), "ANY"),
            (("toolConfig", "functionCallingConfig", "allowedFunctionNames"), ["get_weather"]),
        ),
    ),
    Row(
        "parallel_tool_calls-false",
        {"parallel_tool_calls": False, "tools": TOOLS},
        PASS,
        t((("tool_choice", "disable_parallel_tool_use"), True)),
        IGNORE,  # nothing on Gemini's wire: MindRoute keeps only the answer's first call
    ),
    Row("parallel_tool_calls-true", {"parallel_tool_calls": True, "tools": TOOLS}, PASS, IGNORE, IGNORE),
    Row(
        "response_format-json_schema",
        {"response_format": JSON_SCHEMA},
        PASS,
        t(
            (("output_format", "type"), "json_schema"),
            (("output_format", "schema", "properties"), SCHEMA["properties"]),
            header=("anthropic-beta", "structured-outputs-2025-11-13"),
        ),
        t(cfg("responseMimeType", "application/json"), ((GEMINI_CONFIG, "responseSchema"), PRESENT)),
    ),
    Row(
        "response_format-json_object",
        {"response_format": {"type": "json_object"}},
        PASS,
        REFUSE,
        t(cfg("responseMimeType", "application/json"), ((GEMINI_CONFIG, "responseSchema"), ABSENT)),
        text="answer in json",  # OpenAI wants the word json in the messages
    ),
    Row(
        "response_format-text",
        {"response_format": {"type": "text"}},
        PASS,
        t((("output_format",), ABSENT)),
        t(((GEMINI_CONFIG, "responseMimeType"), ABSENT)),
    ),
    Row("n-2", {"n": 2}, PASS, REFUSE, t(cfg("candidateCount", 2))),
    Row("seed", {"seed": 7}, PASS, REFUSE, t(cfg("seed", 7))),
    Row("presence_penalty", {"presence_penalty": 0.5}, PASS, REFUSE, t(cfg("presencePenalty", 0.5))),
    Row("presence_penalty-0", {"presence_penalty": 0}, PASS, IGNORE, t(cfg("presencePenalty", 0))),
    Row("frequency_penalty", {"frequency_penalty": 0.5}, PASS, REFUSE, t(cfg("frequencyPenalty", 0.5))),
    Row("frequency_penalty-0", {"frequency_penalty": 0}, PASS, IGNORE, t(cfg("frequencyPenalty", 0))),
    Row("logit_bias", {"logit_bias": {"50256": -100}}, PASS, REFUSE, REFUSE),
    Row("logit_bias-empty", {"logit_bias": {}}, PASS, IGNORE, IGNORE),
    Row("logprobs", {"logprobs": True}, PASS, REFUSE, REFUSE),
    Row("logprobs-false", {"logprobs": False}, PASS, IGNORE, IGNORE),
    # OpenAI takes top_logprobs only with logprobs: MindRoute says so before any call, as OpenAI would.
    Row("top_logprobs", {"top_logprobs": 2}, REFUSE, REFUSE, REFUSE),
    Row(
        "top_logprobs-with-logprobs",
        {"top_logprobs": 2, "logprobs": True},
        PASS,
        Refuse(("top_logprobs", "logprobs")),
        Refuse(("top_logprobs", "logprobs")),
    ),
    Row(
        "reasoning_effort-low",
        {"reasoning_effort": "low"},
        PASS,
        _anthropic_thinking(1024),
        t(cfg("thinkingConfig", {"thinkingBudget": 1024})),
    ),
    Row(
        "reasoning_effort-medium",
        {"reasoning_effort": "medium"},
        PASS,
        _anthropic_thinking(2048),
        t(cfg("thinkingConfig", {"thinkingBudget": 8192})),
    ),
    Row(
        "reasoning_effort-high",
        {"reasoning_effort": "high"},
        PASS,
        _anthropic_thinking(4096),
        t(cfg("thinkingConfig", {"thinkingBudget": 24576})),
    ),
    Row(
        "reasoning_effort-minimal",
        {"reasoning_effort": "minimal"},
        PASS,
        t((("thinking",), ABSENT)),
        t(cfg("thinkingConfig", {"thinkingBudget": 0})),
    ),
    Row(
        "reasoning_effort-none",
        {"reasoning_effort": "none"},
        PASS,
        t((("thinking",), ABSENT)),
        t(cfg("thinkingConfig", {"thinkingBudget": 0})),
    ),
    Row("user", {"user": "end-user-9"}, PASS, t((("metadata", "user_id"), "end-user-9")), IGNORE),
    Row("metadata", {"metadata": {"team": "blue"}}, PASS, IGNORE, IGNORE),
    Row("store", {"store": True}, PASS, IGNORE, IGNORE),
    Row("prompt_cache_key", {"prompt_cache_key": "cache-1"}, PASS, IGNORE, IGNORE),
    Row("safety_identifier", {"safety_identifier": "sid-1"}, PASS, IGNORE, IGNORE),
    Row("service_tier-auto", {"service_tier": "auto"}, PASS, IGNORE, IGNORE),
    Row("service_tier-default", {"service_tier": "default"}, PASS, IGNORE, IGNORE),
    Row("service_tier-flex", {"service_tier": "flex"}, PASS, REFUSE, REFUSE),
    Row("modalities-text", {"modalities": ["text"]}, PASS, IGNORE, IGNORE),
    Row("modalities-audio", {"modalities": ["text", "audio"]}, PASS, REFUSE, REFUSE),
    Row(
        "audio",
        {"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]},  # OpenAI needs both
        PASS,
        Refuse(("audio", "modalities")),
        Refuse(("audio", "modalities")),
    ),
    Row("prediction", {"prediction": {"type": "content", "content": "Hello"}}, PASS, REFUSE, REFUSE),
    Row("verbosity", {"verbosity": "low"}, PASS, REFUSE, REFUSE),
    Row("web_search_options", {"web_search_options": {}}, PASS, REFUSE, REFUSE),
    # OpenAI's deprecated function calling: refused on every protocol, the message pointing to tools.
    Row("functions", {"functions": [{"name": "get_weather", "parameters": PARAMETERS}]}, REFUSE, REFUSE, REFUSE),
    Row("function_call", {"function_call": "auto"}, REFUSE, REFUSE, REFUSE),
    Row("top_k", {"top_k": 5}, Pass(upstream_refuses=True), t((("top_k",), 5)), t(cfg("topK", 5)), compatible=PASS),
    Row("unknown-min_p", {"min_p": 0.1}, Pass(upstream_refuses=True), REFUSE, REFUSE, compatible=PASS),
]


def _at(body: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        if isinstance(key, int):
            if not isinstance(body, list) or len(body) <= key:
                return ABSENT
        elif not isinstance(body, dict) or key not in body:
            return ABSENT
        body = body[key]
    return body


@pytest.fixture
def world(request, engine, server):
    def make(protocol: str):
        target = make_target(request, protocol)
        account = add_account(engine)
        add_provider(engine, "Fake", protocol, target.server, target.key, grant_to=account.user_id)
        return target, account

    return make


# The translation is the adapters' and the fakes': one database dialect is enough.
@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_each_field_on_each_protocol(row: Row, protocol: str, world, server, engine) -> None:
    target, account = world(protocol)
    body = {"model": "Fake/test-model", "messages": [{"role": "user", "content": row.text}], **row.fields}
    answer = post(server, account.key, body)
    expectation = row.expectation(protocol)
    if isinstance(expectation, Refuse):
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["param"] in (expectation.params or (row.name,)), error
        assert error["param"] in error["message"], error
        assert target.fake.requests == [], "a refused field reached the provider"
        [logged_row] = logged(engine, 1)
        assert logged_row.status_code == 400
        return
    sent = target.fake.last
    if isinstance(expectation, Pass) and expectation.upstream_refuses:
        assert sent.body[row.name] == row.fields[row.name]
        assert answer.status_code == 400, answer.text
        assert row.name in answer.json()["error"]["message"]
        return
    assert answer.status_code == 200, answer.text
    if isinstance(expectation, Pass):
        assert sent.body.get(expectation.as_ or row.name, ABSENT) == row.fields[row.name], sent.body
        if expectation.as_:
            assert row.name not in sent.body
    elif isinstance(expectation, Ignore):
        assert row.name not in sent.body, sent.body
    else:
        for path, value in expectation.checks:
            found = _at(sent.body, path)
            if value is PRESENT:
                assert found is not ABSENT, (path, sent.body)
            elif isinstance(value, Above):
                assert isinstance(found, int) and found > value.floor, (path, found, sent.body)
            else:
                assert found == value, (path, found, sent.body)
        if expectation.header:
            name, text = expectation.header
            assert text in sent.headers.get(name, ""), sent.headers
        if row.name not in ("max_tokens", "temperature", "top_p", "tools", "tool_choice", "top_k"):
            assert row.name not in sent.body or protocol.startswith("openai"), sent.body


PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0fake-jpeg").decode()


def _kinds(protocol: str, message: dict) -> list[str]:
    """The upstream message's parts as "text:<text>" or "image:<mime>", in order."""
    out = []
    if protocol.startswith("openai"):
        for part in message["content"]:
            if part["type"] == "text":
                out.append("text:" + part["text"])
            else:
                out.append("image:" + part["image_url"]["url"].split(";", 1)[0].removeprefix("data:"))
    elif protocol == "anthropic":
        for block in message["content"]:
            out.append("text:" + block["text"] if block["type"] == "text" else "image:" + block["source"]["media_type"])
    else:
        for part in message["parts"]:
            inline = part.get("inlineData") or part.get("inline_data")
            out.append(
                "text:" + part["text"]
                if "text" in part
                else "image:" + (inline.get("mimeType") or inline.get("mime_type"))
            )
    return out


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mixed_content_keeps_its_order_on_each_protocol(protocol: str, engine, server, request) -> None:
    target = make_target(request, protocol)
    account = add_account(engine)
    add_provider(engine, "Fake", protocol, target.server, target.key, grant_to=account.user_id, allow_images=True)
    content = [
        {"type": "text", "text": "Image A:"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}", "detail": "low"}},
        {"type": "text", "text": "Image B:"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG}"}},
        {"type": "text", "text": "Which differs?"},
    ]
    body = {"model": "Fake/test-model", "messages": [{"role": "user", "content": content}]}
    answer = post(server, account.key, body)
    assert answer.status_code == 200, answer.text
    sent = target.fake.last.body
    message = (sent["contents"] if protocol == "google" else sent["messages"])[-1]
    assert _kinds(protocol, message) == [
        "text:Image A:",
        "image:image/png",
        "text:Image B:",
        "image:image/jpeg",
        "text:Which differs?",
    ]
    if protocol.startswith("openai"):  # only OpenAI's protocol has an image detail
        assert message["content"][1]["image_url"]["detail"] == "low"
        assert "detail" not in message["content"][3]["image_url"]
    else:
        assert "detail" not in json.dumps(message)
    assert answer.json()["choices"][0]["message"]["content"] == expected_answer("Image A:Image B:Which differs?")
