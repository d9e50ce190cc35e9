"""The shared pieces: media policy, key redaction, SSE decoding, retry-after, error classes, the registry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from mindroute.models import PROTOCOLS
from mindroute.providers.errors import (
    AuthenticationError,
    BadRequestError,
    Cancelled,
    MediaNotAllowed,
    NotFoundError,
    ProviderError,
    ProviderPermissionError,
    ProviderTimeout,
    RateLimitedError,
    UnsupportedMedia,
    UpstreamError,
    error_class_for_status,
    parse_retry_after,
)
from mindroute.providers.media import check_media
from mindroute.providers.registry import adapter_for, supported_protocols
from mindroute.providers.shapes import Attachment, ChatMessage, ChatRequest, attachment_kind
from mindroute.providers.sse import SSEDecoder, SSEEvent
from mindroute.providers.transport_aiohttp import aclose_shared_async_client
from mindroute.redaction import redact_secrets
from tests.providers.conftest import Caller, Target
from tests.providers.media import IMAGE, PDF, PNG_BYTES, VIDEO, with_attachments

# --- media policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attachment", "allowed", "noun"),
    [
        (IMAGE, {"allow_images": False, "allow_videos": True, "allow_files": True}, "images"),
        (VIDEO, {"allow_images": True, "allow_videos": False, "allow_files": True}, "videos"),
        (PDF, {"allow_images": True, "allow_videos": True, "allow_files": False}, "file attachments"),
    ],
)
def test_media_the_provider_does_not_allow_is_refused_with_403(
    attachment: Attachment, allowed: dict, noun: str
) -> None:
    with pytest.raises(MediaNotAllowed) as caught:
        check_media(with_attachments(attachment), **allowed)
    assert caught.value.status_code == 403
    assert isinstance(caught.value, ProviderPermissionError)
    assert noun in caught.value.message and attachment.filename in caught.value.message


def test_an_image_labelled_as_a_file_is_still_an_image_to_the_policy() -> None:
    disguised = Attachment("file", "image/png", PNG_BYTES, "dot.png")
    with pytest.raises(MediaNotAllowed):
        check_media(with_attachments(disguised), allow_images=False, allow_videos=False, allow_files=True)


def test_allowed_media_and_plain_text_pass_the_policy() -> None:
    check_media(with_attachments(IMAGE, VIDEO, PDF), True, True, True)
    check_media(ChatRequest("m", [ChatMessage("user", "no attachments")]), False, False, False)


def test_the_policy_refuses_before_any_upstream_call(target: Target, caller: Caller) -> None:
    request = with_attachments(IMAGE)
    with pytest.raises(MediaNotAllowed):
        check_media(request, allow_images=False, allow_videos=False, allow_files=False)
        caller.complete(target, request)
    assert target.fake.requests == []


def test_attachments_are_only_sent_with_user_messages(target: Target, caller: Caller) -> None:
    request = ChatRequest("m", [ChatMessage("user", "hi"), ChatMessage("assistant", "here", [IMAGE])])
    with pytest.raises(UnsupportedMedia):
        caller.complete(target, request)
    assert target.fake.requests == []


def test_an_attachment_never_shows_its_bytes_in_a_repr() -> None:
    assert "data" not in repr(IMAGE) and "PNG" not in repr(IMAGE)


@pytest.mark.parametrize(
    ("mime", "kind"),
    [("image/jpeg", "image"), ("video/mp4", "video"), ("application/pdf", "file"), ("text/csv", "file")],
)
def test_an_uploads_kind_follows_its_content_type(mime: str, kind: str) -> None:
    assert attachment_kind(mime) == kind


# --- redaction ------------------------------------------------------------------------------

CONFIGURED_KEY = "custom-Key-0123456789-abcdefghij"


@pytest.mark.parametrize(
    "message",
    [
        f"bad key {CONFIGURED_KEY} given",
        f"bad key {CONFIGURED_KEY[:-3]}*** given",  # a masked echo
        f"bad key ...{CONFIGURED_KEY[5:20]}... given",  # a piece of it
        "Incorrect API key provided: sk-proj-abcd************************WXYZ.",
        "key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz-0123 was revoked",
        "Consumer 'api_key:AIzaSyA1234567890abcdefghijklmnopqrs' suspended",
        "MindRoute key mr-AbCdEfGhIjKlMnOpQrStUv rejected",
        "header was Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
        "GET https://x.googleapis.com/v1beta/models?key=SECRETVALUE123&pageSize=5",
    ],
)
def test_anything_that_looks_like_a_key_is_redacted(message: str) -> None:
    redacted = redact_secrets(message, CONFIGURED_KEY)
    assert "[redacted]" in redacted
    for secret in (
        CONFIGURED_KEY,
        CONFIGURED_KEY[5:20],
        "abcd****",
        "AbCdEfGhIjKlMnOp",
        "AIzaSyA1234567890",
        "eyJhbGciOi",
        "SECRETVALUE123",
    ):
        assert secret not in redacted
    assert redacted.split()[0] == message.split()[0]  # the words around it stay


def test_ordinary_words_survive_redaction() -> None:
    message = "The model `gpt-4o` does not exist; task-specific settings and desk-top sk-8 are fine."
    assert redact_secrets(message, CONFIGURED_KEY) == message


# --- server-sent events ---------------------------------------------------------------------


def test_sse_events_are_split_on_blank_lines_with_their_names() -> None:
    decoder = SSEDecoder()
    lines = [": keep-alive", "event: message_start", 'data: {"a": 1}', "", "data: [DONE]", ""]
    events = [event for line in lines if (event := decoder.feed(line))]
    assert events == [SSEEvent("message_start", '{"a": 1}'), SSEEvent("message", "[DONE]")]


def test_multi_line_data_joins_with_newlines_and_a_last_event_without_blank_line_is_kept() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("data: one") is None
    assert decoder.feed("data:two\r") is None
    assert decoder.flush() == SSEEvent("message", "one\ntwo")
    assert decoder.flush() is None


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, ProviderPermissionError),
        (404, NotFoundError),
        (408, ProviderTimeout),
        (413, BadRequestError),
        (422, BadRequestError),
        (429, RateLimitedError),
        (500, UpstreamError),
        (502, UpstreamError),
        (529, UpstreamError),
    ],
)
def test_each_status_maps_to_one_typed_error(status: int, error_class: type[ProviderError]) -> None:
    assert error_class_for_status(status) is error_class


def test_every_typed_error_is_a_provider_error_with_a_status() -> None:
    for error_class in (AuthenticationError, ProviderPermissionError, NotFoundError, RateLimitedError, Cancelled):
        error = error_class("because")
        assert isinstance(error, ProviderError)
        assert error.status_code is not None and str(error) == "because"
    assert ProviderTimeout("slow").status_code is None
    assert Cancelled("stopped").status_code == 499


def test_retry_after_reads_seconds_milliseconds_and_http_dates() -> None:
    assert parse_retry_after({"retry-after": "12"}) == 12.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= parse_retry_after({"retry-after": when}) <= 60
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


# --- registry -------------------------------------------------------------------------------


def test_every_protocol_a_provider_can_have_has_an_adapter() -> None:
    assert set(supported_protocols()) == set(PROTOCOLS)
    for protocol in PROTOCOLS:
        assert adapter_for(protocol).protocol == protocol


def test_only_the_official_openai_protocol_insists_on_a_key() -> None:
    assert adapter_for("openai").key_required is True
    assert adapter_for("openai-compatible").key_required is False


def test_an_unknown_protocol_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="Unknown provider protocol 'smoke-signals'"):
        adapter_for("smoke-signals")


@pytest.mark.parametrize(
    ("endpoint", "key", "error_class", "words"),
    [
        ("http://127.0.0.1:9/v1", "sk-clé-0123456789", AuthenticationError, "cannot be sent in an HTTP header"),
        ("ftp://example.com/v1", "sk-0123456789", BadRequestError, "endpoint URL is not usable"),
        ("http://[::1/v1", "sk-0123456789", BadRequestError, "endpoint URL is not usable"),
    ],
)
def test_a_key_or_endpoint_that_cannot_be_sent_is_a_typed_error(
    endpoint: str, key: str, error_class: type[ProviderError], words: str
) -> None:
    request = ChatRequest("m", [ChatMessage("user", "hi")])
    with pytest.raises(error_class, match=words):
        adapter_for("openai").complete(request, endpoint, key)


@pytest.mark.parametrize(
    ("endpoint", "key", "error_class", "words"),
    [
        ("http://127.0.0.1:9/v1", "sk-clé-0123456789", AuthenticationError, "cannot be sent in an HTTP header"),
        ("ftp://example.com/v1", "sk-0123456789", BadRequestError, "endpoint URL is not usable"),
        ("http://[::1/v1", "sk-0123456789", BadRequestError, "endpoint URL is not usable"),
        ("http://127.0.0.1:9/v1", "sk-0123456789\r\nx-injected: 1", BadRequestError, "line break"),
    ],
)
def test_the_api_path_refuses_what_cannot_be_sent_with_the_same_typed_errors(
    endpoint: str, key: str, error_class: type[ProviderError], words: str
) -> None:
    request = ChatRequest("m", [ChatMessage("user", "hi")])

    async def call() -> None:
        try:
            await adapter_for("openai").acomplete(request, endpoint, key)
        finally:
            await aclose_shared_async_client()

    with pytest.raises(error_class, match=words) as caught:
        asyncio.run(call())
    assert "0123456789" not in caught.value.message  # nothing of the key in what is shown or logged
