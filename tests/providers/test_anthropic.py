"""Anthropic Messages: headers, the top-level system prompt, content blocks and the event stream."""

from __future__ import annotations

import pytest

from mindroute.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicAdapter, messages_url
from mindroute.providers.errors import AuthenticationError, UnsupportedMedia, UpstreamError
from mindroute.providers.shapes import ChatMessage, ChatRequest, StreamEnd
from mindroute.providers.sse import SSEEvent
from tests.providers.conftest import Caller, Target, ask
from tests.providers.fakes import ANTHROPIC_KEY, COMPLETION_TOKENS, PROMPT_TOKENS, expected_answer
from tests.providers.media import DOCX, IMAGE, PDF, PNG_BYTES, TEXT, VIDEO, b64, with_attachments


def test_the_call_sends_the_key_the_version_and_a_top_level_system(anthropic: Target, caller: Caller) -> None:
    caller.complete(anthropic, ask("hi", system="Be brief.", temperature=0.3, top_p=0.8, stop=["END"]))

    received = anthropic.fake.last
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == ANTHROPIC_KEY
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert received.body == {
        "model": "test-model",
        "max_tokens": DEFAULT_MAX_TOKENS,  # required by the API, so always sent
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.3,
        "top_p": 0.8,
        "stop_sequences": ["END"],
    }


def test_the_callers_max_tokens_wins_over_the_default(anthropic: Target, caller: Caller) -> None:
    caller.stream(anthropic, ask("hi", max_tokens=77))
    assert anthropic.fake.last.body["max_tokens"] == 77
    assert anthropic.fake.last.body["stream"] is True


def test_several_system_messages_join_into_the_one_system_prompt(anthropic: Target, caller: Caller) -> None:
    request = ChatRequest(
        model="test-model",
        messages=[
            ChatMessage("system", "Rule one."),
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello."),
            ChatMessage("system", "Rule two."),
            ChatMessage("user", "Again"),
        ],
    )
    assert caller.complete(anthropic, request).text == expected_answer("Again")
    body = anthropic.fake.last.body
    assert body["system"] == "Rule one.\n\nRule two."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_attachments_become_image_and_document_blocks(anthropic: Target, caller: Caller) -> None:
    result = caller.complete(anthropic, with_attachments(IMAGE, PDF, TEXT))

    assert result.text == expected_answer("What is in these?")
    blocks = anthropic.fake.last.body["messages"][0]["content"]
    assert blocks[0] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG_BYTES)},
    }
    assert blocks[1] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF.data)},
        "title": "report.pdf",
    }
    assert blocks[2] == {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": TEXT.data.decode()},
        "title": "notes.txt",
    }
    assert blocks[3] == {"type": "text", "text": "What is in these?"}


def test_an_image_without_text_sends_no_empty_text_block(anthropic: Target, caller: Caller) -> None:
    caller.stream(anthropic, with_attachments(IMAGE, text=""))
    assert [b["type"] for b in anthropic.fake.last.body["messages"][0]["content"]] == ["image"]


@pytest.mark.parametrize("attachment", [VIDEO, DOCX])
def test_what_messages_cannot_carry_is_refused_before_any_call(
    anthropic: Target, caller: Caller, attachment: object
) -> None:
    with pytest.raises(UnsupportedMedia):
        caller.complete(anthropic, with_attachments(attachment))
    assert anthropic.fake.requests == []


def test_a_stream_counts_input_from_message_start_and_output_from_message_delta(
    anthropic: Target, caller: Caller
) -> None:
    end = caller.stream(anthropic, ask("hi"))[-1]
    assert isinstance(end, StreamEnd)
    # message_start says output_tokens 1; message_delta's cumulative 5 replaces it.
    assert (end.prompt_tokens, end.completion_tokens, end.total_tokens) == (
        PROMPT_TOKENS,
        COMPLETION_TOKENS,
        PROMPT_TOKENS + COMPLETION_TOKENS,
    )
    assert end.finish_reason == "end_turn"


def test_an_overloaded_error_event_keeps_anthropics_status_and_type(anthropic: Target, caller: Caller) -> None:
    with pytest.raises(UpstreamError) as caught:
        caller.stream(anthropic, ask("hi", model="stream-error"))
    assert (caught.value.status_code, caught.value.error_type, caught.value.message) == (
        529,
        "overloaded_error",
        "Overloaded",
    )


def test_a_529_overloaded_answer_is_an_upstream_error(anthropic: Target, caller: Caller) -> None:
    with pytest.raises(UpstreamError) as caught:
        caller.complete(anthropic, ask("hi", model="error-529"))
    assert caught.value.status_code == 529


def test_a_wrong_key_says_what_anthropic_says(anthropic: Target, caller: Caller) -> None:
    with pytest.raises(AuthenticationError) as caught:
        caller.complete(anthropic, ask("hi"), key="sk-ant-api03-nope")
    assert (caught.value.message, caught.value.error_type) == ("invalid x-api-key", "authentication_error")


def test_cached_prompt_tokens_count_as_prompt_tokens() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1000,
            "output_tokens": 4,
        },
    }
    result = AnthropicAdapter().parse_response(body, ask("hi"))
    assert (result.text, result.prompt_tokens, result.completion_tokens, result.total_tokens) == ("Hi", 1110, 4, 1114)


def test_thinking_deltas_are_not_answer_text() -> None:
    translator = AnthropicAdapter().stream_translator(ask("hi"))
    thinking = '{"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}'
    assert translator.feed(SSEEvent("content_block_delta", thinking)) == []


@pytest.mark.parametrize(
    "endpoint", ["https://api.anthropic.com", "https://api.anthropic.com/", "https://api.anthropic.com/v1"]
)
def test_the_messages_url_tolerates_a_typed_version(endpoint: str) -> None:
    assert messages_url(endpoint) == "https://api.anthropic.com/v1/messages"
