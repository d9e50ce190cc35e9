"""Gemini generateContent/streamGenerateContent: the path, the key header, roles, systemInstruction, inline_data."""

from __future__ import annotations

import pytest

from mindroute.providers.errors import (
    AuthenticationError,
    ProviderPermissionError,
    RateLimitedError,
    UnsupportedMedia,
    UpstreamError,
)
from mindroute.providers.google import GoogleAdapter, model_url
from mindroute.providers.shapes import ChatMessage, ChatRequest
from tests.providers.conftest import Caller, Target, ask
from tests.providers.fakes import GOOGLE_KEY, expected_answer
from tests.providers.media import DOCX, IMAGE, MP4_BYTES, PDF, PNG_BYTES, TEXT, VIDEO, b64, with_attachments


def test_the_call_goes_to_generate_content_with_the_key_header(google: Target, caller: Caller) -> None:
    caller.complete(google, ask("hi", system="Be brief.", temperature=0.1, max_tokens=64, top_p=0.5, stop=["END"]))

    received = google.fake.last
    assert received.path == "/v1beta/models/test-model:generateContent"
    assert received.headers["x-goog-api-key"] == GOOGLE_KEY
    assert "key" not in received.query  # never in the URL, where logs and proxies keep it
    assert received.body == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.1, "maxOutputTokens": 64, "topP": 0.5, "stopSequences": ["END"]},
    }


def test_a_stream_asks_for_server_sent_events(google: Target, caller: Caller) -> None:
    items = caller.stream(google, ask("hi"))
    assert google.fake.last.path == "/v1beta/models/test-model:streamGenerateContent"
    assert google.fake.last.query == {"alt": "sse"}
    assert items[-1].text == expected_answer("hi")


def test_assistant_turns_are_sent_with_the_role_model(google: Target, caller: Caller) -> None:
    request = ChatRequest(
        model="models/test-model",  # the prefix Gemini's model list uses is tolerated
        messages=[ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello."), ChatMessage("user", "Again")],
    )
    assert caller.complete(google, request).text == expected_answer("Again")
    assert google.fake.last.path == "/v1beta/models/test-model:generateContent"
    assert [c["role"] for c in google.fake.last.body["contents"]] == ["user", "model", "user"]
    assert "systemInstruction" not in google.fake.last.body
    assert "generationConfig" not in google.fake.last.body


def test_images_videos_and_pdfs_go_as_inline_data(google: Target, caller: Caller) -> None:
    result = caller.complete(google, with_attachments(IMAGE, VIDEO, PDF, TEXT))

    assert result.text == expected_answer("What is in these?")
    parts = google.fake.last.body["contents"][0]["parts"]
    assert parts == [
        {"inline_data": {"mime_type": "image/png", "data": b64(PNG_BYTES)}},
        {"inline_data": {"mime_type": "video/mp4", "data": b64(MP4_BYTES)}},
        {"inline_data": {"mime_type": "application/pdf", "data": b64(PDF.data)}},
        {"inline_data": {"mime_type": "text/plain", "data": b64(TEXT.data)}},
        {"text": "What is in these?"},
    ]


def test_a_file_gemini_cannot_read_is_refused_before_any_call(google: Target, caller: Caller) -> None:
    with pytest.raises(UnsupportedMedia):
        caller.stream(google, with_attachments(DOCX))
    assert google.fake.requests == []


def test_geminis_400_api_key_invalid_is_an_authentication_error(google: Target, caller: Caller) -> None:
    with pytest.raises(AuthenticationError) as caught:
        caller.complete(google, ask("hi"), key="AIzaSyWrongKey000000000000000000000")
    assert caught.value.status_code == 400
    assert caught.value.message == "API key not valid. Please pass a valid API key."
    assert caught.value.error_type == "INVALID_ARGUMENT"


def test_a_403_naming_the_key_comes_back_without_it(google: Target, caller: Caller) -> None:
    with pytest.raises(ProviderPermissionError) as caught:
        caller.complete(google, ask("hi", model="error-403"))
    assert caught.value.message == "Permission denied: Consumer 'api_key:[redacted]' has been suspended."


def test_a_429_waits_as_long_as_retry_info_says(google: Target, caller: Caller) -> None:
    with pytest.raises(RateLimitedError) as caught:
        caller.stream(google, ask("hi", model="error-429"))
    assert caught.value.retry_after == 27.0
    assert caught.value.error_type == "RESOURCE_EXHAUSTED"


def test_a_503_overloaded_is_an_upstream_error(google: Target, caller: Caller) -> None:
    with pytest.raises(UpstreamError) as caught:
        caller.complete(google, ask("hi", model="error-503"))
    assert (caught.value.status_code, caught.value.error_type) == (503, "UNAVAILABLE")


def test_thinking_tokens_count_as_completion_and_thoughts_are_not_the_answer() -> None:
    body = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Let me think", "thought": True}, {"text": "42"}], "role": "model"},
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 8,
            "candidatesTokenCount": 2,
            "thoughtsTokenCount": 30,
            "totalTokenCount": 40,
        },
        "modelVersion": "gemini-2.5-flash",
    }
    result = GoogleAdapter().parse_response(body, ask("hi"))
    assert (result.text, result.prompt_tokens, result.completion_tokens, result.total_tokens) == ("42", 8, 32, 40)
    assert result.model == "gemini-2.5-flash"


def test_a_blocked_prompt_is_an_empty_answer_with_the_block_reason() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}}
    result = GoogleAdapter().parse_response(body, ask("hi"))
    assert (result.text, result.finish_reason, result.prompt_tokens, result.completion_tokens) == ("", "SAFETY", 9, 0)


def test_an_answer_without_usage_metadata_reports_none() -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}]}
    result = GoogleAdapter().parse_response(body, ask("hi"))
    assert (result.usage_reported, result.prompt_tokens, result.total_tokens) == (False, None, None)


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://generativelanguage.googleapis.com",
        "https://generativelanguage.googleapis.com/",
        "https://generativelanguage.googleapis.com/v1beta",
    ],
)
def test_the_model_url_tolerates_a_typed_version(endpoint: str) -> None:
    assert (
        model_url(endpoint, "gemini-2.0-flash", "generateContent")
        == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
    )


def test_a_model_id_cannot_walk_out_of_its_path_segment() -> None:
    url = model_url("https://g.example", "../../evil?x=1", "generateContent")
    assert url == "https://g.example/v1beta/models/..%2F..%2Fevil%3Fx%3D1:generateContent"
