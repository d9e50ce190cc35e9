"""OpenAI Chat Completions: what goes on the wire, for OpenAI itself and for openai-compatible servers."""

from __future__ import annotations

import pytest

from mindroute.providers.errors import AuthenticationError, UnsupportedMedia, UpstreamError
from mindroute.providers.openai import OpenAIAdapter, chat_completions_url
from mindroute.providers.shapes import ChatMessage, ChatRequest, StreamEnd
from tests.providers.conftest import Caller, Target, ask
from tests.providers.fakes import OPENAI_KEY, expected_answer
from tests.providers.media import DOCX, IMAGE, PDF, PNG_BYTES, TEXT, VIDEO, b64, with_attachments


def test_the_call_goes_to_chat_completions_with_a_bearer_key(openai: Target, caller: Caller) -> None:
    caller.complete(openai, ask("hi", system="Be brief.", temperature=0.2, max_tokens=50, top_p=0.9, stop=["END"]))

    received = openai.fake.last
    assert received.method == "POST"
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert received.body == {
        "model": "test-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "temperature": 0.2,
        # OpenAI's reasoning models refuse max_tokens; max_completion_tokens works for every model.
        "max_completion_tokens": 50,
        "top_p": 0.9,
        "stop": ["END"],
    }


def test_a_stream_asks_for_usage_in_its_last_chunk(openai: Target, caller: Caller) -> None:
    items = caller.stream(openai, ask("hi"))

    assert openai.fake.last.body["stream"] is True
    assert openai.fake.last.body["stream_options"] == {"include_usage": True}
    assert isinstance(items[-1], StreamEnd) and items[-1].usage_reported


def test_a_whole_conversation_keeps_its_roles_and_order(openai: Target, caller: Caller) -> None:
    request = ChatRequest(
        model="test-model",
        messages=[
            ChatMessage("system", "You are terse."),
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello."),
            ChatMessage("user", "Again"),
        ],
    )
    assert caller.complete(openai, request).text == expected_answer("Again")
    assert [m["role"] for m in openai.fake.last.body["messages"]] == ["system", "user", "assistant", "user"]


def test_attachments_become_image_url_file_and_text_parts(openai: Target, caller: Caller) -> None:
    result = caller.complete(openai, with_attachments(IMAGE, PDF, TEXT))

    assert result.text.endswith("What is in these?")  # the fake echoes every text part, the file's too
    parts = openai.fake.last.body["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG_BYTES)}"}}
    assert parts[1] == {
        "type": "file",
        "file": {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{b64(PDF.data)}"},
    }
    assert parts[2]["type"] == "text"
    assert "notes.txt" in parts[2]["text"] and "Line two – ünïcode" in parts[2]["text"]
    assert parts[3] == {"type": "text", "text": "What is in these?"}


def test_attachments_travel_in_a_stream_too(openai: Target, caller: Caller) -> None:
    items = caller.stream(openai, with_attachments(IMAGE, text="Describe"))
    assert items[-1].text == expected_answer("Describe")
    assert openai.fake.last.body["messages"][0]["content"][0]["type"] == "image_url"


@pytest.mark.parametrize("attachment", [VIDEO, DOCX, IMAGE.__class__("image", "image/bmp", b"BM", "old.bmp")])
def test_what_chat_completions_cannot_carry_is_refused_before_any_call(
    openai: Target, caller: Caller, attachment: object
) -> None:
    with pytest.raises(UnsupportedMedia) as caught:
        caller.stream(openai, with_attachments(attachment))
    assert caught.value.status_code == 400
    assert openai.fake.requests == []


def test_a_compatible_server_without_a_key_gets_no_authorization_header(compatible: Target, caller: Caller) -> None:
    result = caller.complete(compatible, ask("hi", max_tokens=20), key=None)

    assert result.text == expected_answer("hi")
    assert "authorization" not in compatible.fake.last.headers
    # Compatible servers (Ollama, vLLM, LM Studio) all know max_tokens; not all know max_completion_tokens.
    assert compatible.fake.last.body["max_tokens"] == 20


def test_a_compatible_server_that_reports_no_usage_leaves_the_counts_empty(compatible: Target, caller: Caller) -> None:
    result = caller.complete(compatible, ask("hi"))
    end = caller.stream(compatible, ask("hi"))[-1]

    assert (result.usage_reported, result.prompt_tokens, result.completion_tokens, result.total_tokens) == (
        False,
        None,
        None,
        None,
    )
    assert isinstance(end, StreamEnd)
    assert (end.usage_reported, end.prompt_tokens, end.completion_tokens, end.total_tokens) == (False, None, None, None)


def test_openais_masked_echo_of_a_wrong_key_is_redacted(openai: Target, caller: Caller) -> None:
    wrong = "sk-proj-Wrong0123456789abcdefghijklmnop"
    with pytest.raises(AuthenticationError) as caught:
        caller.complete(openai, ask("hi"), key=wrong)
    message = caught.value.message
    assert message.startswith("Incorrect API key provided: [redacted]")
    assert "sk-proj" not in message and "mnop" not in message


def test_an_answer_that_is_json_but_not_a_chat_completion_is_an_upstream_error(openai: Target, caller: Caller) -> None:
    with pytest.raises(UpstreamError, match="not a chat response"):
        caller.complete(openai, ask("hi", model="not-a-chat"))


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1/chat/completions"),
        ("http://localhost:11434/v1", "http://localhost:11434/v1/chat/completions"),
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1/chat/completions"),
    ],
)
def test_the_endpoint_carries_the_version_as_openais_sdk_expects(endpoint: str, url: str) -> None:
    assert chat_completions_url(endpoint) == url


def test_a_refusal_is_the_answer_text() -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help."}
    body = {"model": "gpt-4o", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    result = OpenAIAdapter().parse_response(body, ask("hi"))
    assert result.text == "I can't help."
    assert result.usage_reported is False
