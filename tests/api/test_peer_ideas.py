"""Ideas from peer servers' suites (vLLM's tests/entrypoints/openai/test_chat.py, FastChat's tests/test_openai_api.py),
rewritten for MindRoute: through the running API, with the official openai client, on every protocol.

Ideas taken from vLLM: a streamed answer equals the whole one and says its finish reason once (test_chat_streaming,
test_named_tool_use); stream_options decide the usage chunk (test_chat_completion_stream_options); too many
top_logprobs are a 400 and the server still answers afterwards (test_too_many_chat_logprobs); logprobs off means no
logprobs, some means that many alternatives (test_no/zero/some_logprobs_chat); a multi-turn session
(test_single_chat_session); a list of text parts means what the string means (test_complex_message_content); extra
fields (test_extra_fields_allowed: MindRoute passes them only to openai-compatible servers); a custom role (vLLM takes
it, MindRoute refuses it by name); seeds outside 64 bits (test_long_seed); a tool_choice that names no declared tool
(test_inconsistent_tool_choice_and_tools). From FastChat: every model /v1/models lists answers a chat and a stream
(test_list_models + test_chat_completion(_stream) run for each listed model).
Not taken: LoRA adapters, prompt_logprobs, guided_* decoding, an empty model name falling back to the server's
one model, /invocations (vLLM-only features MindRoute does not have); the translation of each field is in
test_field_table.py. The translation is the adapters' and the fakes': one database dialect (SQLite) is enough.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.api.conftest import PROTOCOLS, add_account, add_provider, logged
from tests.providers.conftest import make_target
from tests.providers.fake_base import example_from_schema, expected_answer

pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)

PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
TOOLS = [{"type": "function", "function": {"name": "forecast", "description": "Forecast", "parameters": PARAMETERS}}]
MODELS = ["test-model", "parallel-tools"]


def client_for(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=20)


@pytest.fixture(params=PROTOCOLS)
def world(request, engine, server):
    target = make_target(request, request.param)
    account = add_account(engine)
    add_provider(engine, "Fake", target.protocol, target.server, target.key, MODELS, grant_to=account.user_id)
    return target, client_for(server, account.key)


def ask(text: str = "what is 1+1?") -> list[dict]:
    return [{"role": "system", "content": "you are a helpful assistant"}, {"role": "user", "content": text}]


def refused(call) -> dict:
    """The 400 body of a call the API refuses."""
    with pytest.raises(openai.BadRequestError) as error:
        call()
    assert error.value.status_code == 400
    return error.value.body


def _assembled(chunks) -> dict[int, dict]:
    """Each choice of a streamed answer put together: its text, finish reasons, roles and tool calls by position."""
    choices: dict[int, dict] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            seen = choices.setdefault(choice.index, {"text": "", "finishes": [], "roles": [], "calls": {}})
            delta = choice.delta
            if delta.role:
                seen["roles"].append(delta.role)
            seen["text"] += delta.content or ""
            if choice.finish_reason is not None:
                seen["finishes"].append(choice.finish_reason)
            for piece in delta.tool_calls or ():
                call = seen["calls"].setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
                call["id"] = call["id"] or piece.id
                if piece.function and piece.function.name:
                    call["name"] = piece.function.name
                if piece.function and piece.function.arguments:
                    call["arguments"] += piece.function.arguments
    return choices


# vLLM test_chat_streaming: the streamed text and finish reason are the whole answer's; the finish reason comes
# once, in the last chunk of the choice; every role a delta carries is "assistant".
def test_a_streamed_answer_equals_the_whole_one(world):
    _, client = world
    whole = client.chat.completions.create(model="Fake/test-model", messages=ask(), max_tokens=10, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="Fake/test-model", messages=ask(), max_tokens=10, temperature=0, stream=True
        )
    )
    [streamed] = _assembled(chunks).values()
    assert streamed["text"] == whole.choices[0].message.content == expected_answer("what is 1+1?")
    assert streamed["finishes"] == [whole.choices[0].finish_reason] == ["stop"]
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "stop"
    assert streamed["roles"] and set(streamed["roles"]) == {"assistant"}
    assert whole.choices[0].message.role == "assistant"


# vLLM test_named_tool_use (streamed half): the tool calls of a streamed answer are the whole answer's, their
# arguments parse as JSON fitting the schema, the text stays empty and the finish reason comes once.
@pytest.mark.parametrize("model", MODELS)
def test_streamed_tool_calls_equal_the_whole_answer_s(world, model):
    _, client = world
    forced = {"type": "function", "function": {"name": "forecast"}}
    tools = [*TOOLS, {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}]
    whole = client.chat.completions.create(model=f"Fake/{model}", messages=ask(), tools=tools, tool_choice="required")
    chunks = client.chat.completions.create(
        model=f"Fake/{model}", messages=ask(), tools=tools, tool_choice="required", stream=True
    )
    [streamed] = _assembled(chunks).values()
    expected = whole.choices[0].message.tool_calls
    assert len(expected) == (2 if model == "parallel-tools" else 1)
    assert [streamed["calls"][i]["name"] for i in sorted(streamed["calls"])] == [c.function.name for c in expected]
    for position, call in enumerate(expected):
        arguments = json.loads(streamed["calls"][position]["arguments"])
        assert arguments == json.loads(call.function.arguments)
        assert streamed["calls"][position]["id"]
    assert json.loads(expected[0].function.arguments) == example_from_schema(PARAMETERS)
    assert streamed["text"] == (whole.choices[0].message.content or "")
    assert streamed["finishes"] == [whole.choices[0].finish_reason] == ["tool_calls"]
    # the forced choice of one function, streamed: that function alone
    [only] = _assembled(
        client.chat.completions.create(
            model="Fake/test-model", messages=ask(), tools=tools, tool_choice=forced, stream=True
        )
    ).values()
    assert [call["name"] for call in only["calls"].values()] == ["forecast"]
    assert json.loads(only["calls"][0]["arguments"]) == example_from_schema(PARAMETERS)


# vLLM test_chat_completion_stream_options: include_usage false (or no stream_options) gives no usage anywhere;
# include_usage true gives it once, in a last chunk without choices, after the one with the finish reason.
@pytest.mark.parametrize("options", [{"include_usage": False}, None])
def test_without_include_usage_no_chunk_has_usage(world, options):
    _, client = world
    extra = {} if options is None else {"stream_options": options}
    chunks = list(client.chat.completions.create(model="Fake/test-model", messages=ask(), stream=True, **extra))
    assert chunks and all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    assert _assembled(chunks)[0]["text"] == expected_answer("what is 1+1?")


def test_with_include_usage_only_the_last_chunk_has_usage(world):
    target, client = world
    chunks = list(
        client.chat.completions.create(
            model="Fake/test-model", messages=ask(), stream=True, stream_options={"include_usage": True}
        )
    )
    *before, last = chunks
    assert all(chunk.usage is None and chunk.choices for chunk in before)
    assert before[-1].choices[0].finish_reason == "stop"
    assert last.choices == []
    if target.reports_usage:
        usage = last.usage
        assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


# vLLM test_too_many_chat_logprobs: 21 alternatives (OpenAI's most is 20) is a 400 naming top_logprobs, whole or
# streamed, before any upstream call; the next request is answered as usual.
@pytest.mark.parametrize("stream", [False, True])
def test_too_many_top_logprobs_is_a_400_and_the_api_still_answers(world, engine, stream):
    target, client = world
    body = refused(
        lambda: list(
            client.chat.completions.create(
                model="Fake/test-model", messages=ask(), logprobs=True, top_logprobs=21, stream=stream
            )
            if stream
            else [
                client.chat.completions.create(model="Fake/test-model", messages=ask(), logprobs=True, top_logprobs=21)
            ]
        )
    )
    assert body["param"] == "top_logprobs"
    assert "top_logprobs" in body["message"]
    assert target.fake.requests == []
    after = client.chat.completions.create(model="Fake/test-model", messages=ask())
    assert after.choices[0].message.content == expected_answer("what is 1+1?")
    assert [row.status_code for row in logged(engine, 2)] == [400, 200]


# vLLM test_no_logprobs_chat: logprobs false gives an answer without logprobs, on every protocol.
def test_logprobs_false_gives_none(world):
    _, client = world
    completion = client.chat.completions.create(model="Fake/test-model", messages=ask(), logprobs=False)
    assert completion.choices[0].logprobs is None
    assert completion.choices[0].message.content == expected_answer("what is 1+1?")


# vLLM test_zero_logprobs_chat / test_some_logprobs_chat: on the OpenAI protocols the answer carries the logprobs
# the server wrote, each token with as many alternatives as asked (0 or 5); the others refuse logprobs by name.
@pytest.mark.parametrize("top", [0, 5])
def test_logprobs_carry_as_many_alternatives_as_asked(world, top):
    target, client = world
    call = lambda: client.chat.completions.create(  # noqa: E731
        model="Fake/test-model", messages=ask(), logprobs=True, top_logprobs=top
    )
    if not target.protocol.startswith("openai"):
        assert refused(call)["param"] in ("logprobs", "top_logprobs")
        assert target.fake.requests == []
        return
    logprobs = call().choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert all(len(token.top_logprobs) == top for token in logprobs.content)
    assert "".join(token.token for token in logprobs.content) == expected_answer("what is 1+1?")


# vLLM test_single_chat_session: a second turn carries the first answer; upstream gets every message in order.
def test_a_multi_turn_conversation_reaches_upstream_in_order(world):
    target, client = world
    messages = ask()
    first = client.chat.completions.create(model="Fake/test-model", messages=messages)
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "express your result in json"},
    ]
    second = client.chat.completions.create(model="Fake/test-model", messages=messages)
    assert second.choices[0].message.content == expected_answer("express your result in json")
    sent = target.fake.last.body
    if target.protocol.startswith("openai"):
        upstream = [(m["role"], _text(m["content"])) for m in sent["messages"]]
    elif target.protocol == "anthropic":
        upstream = [("system", _text(sent["system"]))] + [(m["role"], _text(m["content"])) for m in sent["messages"]]
    else:
        system = [("system", _text(sent["systemInstruction"]["parts"]))]
        upstream = system + [
            ({"model": "assistant"}.get(c["role"], c["role"]), _text(c["parts"])) for c in sent["contents"]
        ]
    assert upstream == [(m["role"], m["content"]) for m in messages]


def _text(content) -> str:
    """The text of one upstream message's content in any protocol: a string, or text blocks / parts."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)


# vLLM test_complex_message_content: a list of text parts means its texts in order. Like vLLM's "string" content
# format, the OpenAI and Anthropic protocols get them joined by a newline, one string; Gemini gets them as parts.
def test_a_list_of_text_parts_is_joined_in_order(world):
    target, client = world
    parts = [{"type": "text", "text": "what is "}, {"type": "text", "text": "1+1?"}, {"type": "text", "text": " (sum)"}]
    completion = client.chat.completions.create(model="Fake/test-model", messages=[{"role": "user", "content": parts}])
    sent = target.fake.last.body
    if target.protocol == "google":
        [content] = sent["contents"]
        assert [part["text"] for part in content["parts"]] == ["what is ", "1+1?", " (sum)"]
        joined = "what is 1+1? (sum)"
    else:
        [message] = sent["messages"]
        joined = "what is \n1+1?\n (sum)"
        assert message["content"] == joined
    assert completion.choices[0].message.content == expected_answer(joined)
    from_string = client.chat.completions.create(
        model="Fake/test-model", messages=[{"role": "user", "content": joined}]
    )
    assert from_string.choices[0].message.content == completion.choices[0].message.content


# vLLM test_custom_role: vLLM hands an unknown role to its chat template; MindRoute cannot translate one, so it is a
# 400 naming the message's role, string content or parts alike, with no upstream call.
@pytest.mark.parametrize("content", ["what is 1+1?", [{"type": "text", "text": "what is 1+1?"}]])
def test_an_unknown_role_is_a_400_naming_it(world, content):
    target, client = world
    messages = [*ask(), {"role": "my-custom-role", "content": content}]
    body = refused(lambda: client.chat.completions.create(model="Fake/test-model", messages=messages))
    assert body["param"] == "messages[2].role"
    assert "my-custom-role" in body["message"]
    assert target.fake.requests == []


# vLLM test_long_seed: a seed is a signed 64-bit integer; one past either end is a 400 naming seed. The ends
# themselves are seeds (OpenAI passes them; Gemini has its own int32 seed, so google keeps the field table's say).
@pytest.mark.parametrize("seed", [-(2**63) - 1, 2**63, 10**30])
def test_a_seed_outside_64_bits_is_a_400_naming_seed(world, seed):
    target, client = world
    body = refused(lambda: client.chat.completions.create(model="Fake/test-model", messages=ask(), seed=seed))
    assert body["param"] == "seed"
    assert "seed must be between -9223372036854775808 and 9223372036854775807" in body["message"]
    assert target.fake.requests == []


@pytest.mark.parametrize("seed", [-(2**63), 2**63 - 1])
def test_the_64_bit_ends_are_seeds_on_openai(engine, server, request, seed):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, MODELS, grant_to=account.user_id)
    completion = client_for(server, account.key).chat.completions.create(
        model="Fake/test-model", messages=ask(), seed=seed
    )
    assert completion.choices[0].message.content == expected_answer("what is 1+1?")
    assert target.fake.last.body["seed"] == seed


# vLLM test_inconsistent_tool_choice_and_tools: a tool_choice naming a function without tools, naming one the
# tools do not declare, or an empty object, is a 400 naming tool_choice, before any upstream call.
@pytest.mark.parametrize(
    ("tools", "choice"),
    [
        (None, {"type": "function", "function": {"name": "forecast"}}),
        (TOOLS, {"type": "function", "function": {"name": "nondefined_function_name"}}),
        (TOOLS, {}),
    ],
    ids=["no-tools", "undeclared", "empty"],
)
def test_a_tool_choice_that_names_no_declared_tool_is_a_400(world, tools, choice):
    target, client = world
    extra = {} if tools is None else {"tools": tools}
    body = refused(
        lambda: client.chat.completions.create(model="Fake/test-model", messages=ask(), tool_choice=choice, **extra)
    )
    assert body["param"].startswith("tool_choice")
    assert target.fake.requests == []


# vLLM test_extra_fields_allowed (and its extra_body extensions): a field OpenAI does not have reaches an
# openai-compatible server as sent (vLLM/Ollama sampling extensions); the official OpenAI server is sent it too and
# its own 400 comes back; anthropic and google cannot carry it, so it is refused by name with no upstream call.
def test_extra_fields_pass_to_compatible_servers_and_are_refused_by_name_elsewhere(world):
    target, client = world
    call = lambda: client.chat.completions.create(  # noqa: E731
        model="Fake/test-model", messages=ask(), extra_body={"repetition_penalty": 1.1}
    )
    if target.protocol == "openai-compatible":
        assert call().choices[0].message.content == expected_answer("what is 1+1?")
        assert target.fake.last.body["repetition_penalty"] == 1.1
    elif target.protocol == "openai":
        body = refused(call)
        assert "repetition_penalty" in body["message"]
        assert target.fake.last.body["repetition_penalty"] == 1.1
    else:
        body = refused(call)
        assert body["param"] == "repetition_penalty"
        assert "repetition_penalty" in body["message"]
        assert target.fake.requests == []


# vLLM test_chat_streaming with several choices (OpenAI streams each choice by its index): n=2 streamed gives chunks
# for choices 0 and 1, each put together equal to that choice of the whole n=2 answer. Anthropic refuses n.
def test_two_choices_streamed_equal_the_two_whole_choices(world):
    target, client = world
    whole = lambda **more: client.chat.completions.create(  # noqa: E731
        model="Fake/test-model", messages=ask("twice"), n=2, **more
    )
    if target.protocol == "anthropic":
        assert refused(whole)["param"] == "n"
        assert target.fake.requests == []
        return
    answer = whole()
    streamed = _assembled(whole(stream=True))
    assert sorted(streamed) == [0, 1]
    for choice in answer.choices:
        assert streamed[choice.index]["text"] == choice.message.content
        assert streamed[choice.index]["finishes"] == [choice.finish_reason] == ["stop"]


# FastChat test_list_models + test_chat_completion(_stream) run for each listed model: every model /v1/models lists
# for this key answers a whole chat and a stream, under the id it is listed by.
def test_every_listed_model_answers_a_chat_and_a_stream(world):
    _, client = world
    ids = [model.id for model in client.models.list()]
    assert sorted(ids) == sorted(f"Fake/{name}" for name in MODELS)
    for model in ids:
        completion = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello!"}])
        assert completion.model == model
        assert completion.choices[0].message.content == expected_answer("Hello!")
        chunks = list(
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello!"}], stream=True)
        )
        assert _assembled(chunks)[0]["text"] == expected_answer("Hello!")
        assert {chunk.model for chunk in chunks} == {model}


# vLLM test_single_chat_session's max_completion_tokens and FastChat's max_tokens: 0 or a negative count is a 400
# naming the field, before any upstream call.
@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [0, -5])
def test_max_tokens_zero_or_negative_is_a_400(world, name, value):
    target, client = world
    body = refused(lambda: client.chat.completions.create(model="Fake/test-model", messages=ask(), **{name: value}))
    assert body["param"] == name
    assert target.fake.requests == []
