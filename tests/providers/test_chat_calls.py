"""What every protocol must do the same way, on the sync and the async path: answers, usage, errors, stopping."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from mindroute.providers.errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    ProviderError,
    ProviderPermissionError,
    ProviderTimeout,
    RateLimitedError,
    UpstreamError,
)
from mindroute.providers.shapes import StreamChunk, StreamEnd
from tests.providers.conftest import SHORT_TIMEOUT, Caller, Target, ask, run_async
from tests.providers.fakes import COMPLETION_TOKENS, PROMPT_TOKENS, expected_answer

DISCONNECT_WAIT_S = 5.0


def _text(items: list[StreamChunk | StreamEnd]) -> str:
    return "".join(item.text for item in items if isinstance(item, StreamChunk))


# --- answers and usage ----------------------------------------------------------------------


def test_complete_returns_the_answer_and_the_providers_token_counts(target: Target, caller: Caller) -> None:
    result = caller.complete(target, ask("What is 2+2?", system="Be brief."))

    assert result.text == expected_answer("What is 2+2?")
    assert result.model == "test-model"
    assert result.finish_reason in ("stop", "end_turn", "STOP")
    assert result.raw  # the provider's JSON, for the log
    if target.reports_usage:
        assert result.usage_reported is True
        assert (result.prompt_tokens, result.completion_tokens, result.total_tokens) == (
            PROMPT_TOKENS,
            COMPLETION_TOKENS,
            PROMPT_TOKENS + COMPLETION_TOKENS,
        )
    else:
        assert result.usage_reported is False
        assert (result.prompt_tokens, result.completion_tokens, result.total_tokens) == (None, None, None)


def test_stream_yields_text_chunks_then_one_end_with_usage(target: Target, caller: Caller) -> None:
    items = caller.stream(target, ask("Stream me, grüße 👋", system="Be brief."))

    chunks, end = items[:-1], items[-1]
    assert all(isinstance(item, StreamChunk) for item in chunks)
    assert len(chunks) >= 4  # arrived in pieces, not as one
    assert isinstance(end, StreamEnd)
    assert _text(chunks) == end.text == expected_answer("Stream me, grüße 👋")
    assert end.finished is True
    assert end.finish_reason in ("stop", "end_turn", "STOP")
    if target.reports_usage:
        assert end.usage_reported is True
        assert (end.prompt_tokens, end.completion_tokens, end.total_tokens) == (
            PROMPT_TOKENS,
            COMPLETION_TOKENS,
            PROMPT_TOKENS + COMPLETION_TOKENS,
        )
    else:
        assert end.usage_reported is False
        assert (end.prompt_tokens, end.completion_tokens, end.total_tokens) == (None, None, None)


def test_pooled_connections_serve_many_calls_in_a_row(target: Target, caller: Caller) -> None:
    for n in range(3):
        assert caller.complete(target, ask(f"call {n}")).text == expected_answer(f"call {n}")
        assert _text(caller.stream(target, ask(f"stream {n}"))) == expected_answer(f"stream {n}")


# --- errors ---------------------------------------------------------------------------------

# model -> (error class, status) for every protocol; the message is checked against the fake's.
ERRORS = {
    "error-400": (BadRequestError, 400),
    "error-403": (ProviderPermissionError, 403),
    "error-404": (NotFoundError, 404),
    "error-429": (RateLimitedError, 429),
    "error-500": (UpstreamError, 500),
}
MESSAGES = {
    "openai": {
        "error-400": "maximum context length is 128000 tokens",
        "error-403": "Country, region, or territory not supported",
        "error-404": "The model `error-404` does not exist",
        "error-429": "Rate limit reached for gpt-4o-mini",
        "error-500": "The server had an error while processing your request",
    },
    "anthropic": {
        "error-400": "prompt is too long",
        "error-403": "Your API key does not have permission",
        "error-404": "model: error-404",
        "error-429": "Number of request tokens has exceeded your per-minute rate limit",
        "error-500": "Internal server error",
    },
    "google": {
        "error-400": "max_output_tokens must be positive",
        "error-403": "Permission denied: Consumer",
        "error-404": "models/error-404 is not found for API version v1beta",
        "error-429": "You exceeded your current quota",
        "error-500": "An internal error has occurred",
    },
}
RETRY_AFTER_S = {"openai": 20.0, "openai-compatible": 20.0, "anthropic": 30.0, "google": 27.0}


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("model", list(ERRORS))
def test_error_answers_become_typed_errors_with_the_providers_message(
    target: Target, caller: Caller, model: str, streamed: bool
) -> None:
    error_class, status = ERRORS[model]
    with pytest.raises(error_class) as caught:
        if streamed:
            caller.stream(target, ask("hi", model=model))
        else:
            caller.complete(target, ask("hi", model=model))

    error = caught.value
    assert error.status_code == status
    assert MESSAGES[target.protocol.removesuffix("-compatible")][model] in error.message
    assert str(error) == error.message
    assert error.error_type  # the provider's own type or status name
    if target.key:
        assert target.key not in error.message
        assert target.key[-10:] not in error.message
    if model == "error-429":
        assert error.retry_after == RETRY_AFTER_S[target.protocol]


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
def test_wrong_key_is_an_authentication_error_that_never_shows_the_key(
    keyed_target: Target, caller: Caller, streamed: bool
) -> None:
    target = keyed_target
    wrong = target.key[:-6] + "WRONG1"
    with pytest.raises(AuthenticationError) as caught:
        if streamed:
            caller.stream(target, ask("hi"), key=wrong)
        else:
            caller.complete(target, ask("hi"), key=wrong)
    assert caught.value.status_code in (400, 401)  # Gemini says 400 API_KEY_INVALID
    assert wrong not in caught.value.message
    assert wrong[8:20] not in caught.value.message
    assert caught.value.message  # the provider's words, not a blank


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
def test_a_key_echoed_in_an_error_message_is_removed(target: Target, caller: Caller, streamed: bool) -> None:
    key = target.key or "sk-local-0123456789abcdefghij"  # a compatible server behind a keyed gateway
    with pytest.raises(ProviderError) as caught:
        if streamed:
            caller.stream(target, ask("hi", model="echo-key"), key=key)
        else:
            caller.complete(target, ask("hi", model="echo-key"), key=key)
    assert key not in caught.value.message
    assert key[4:16] not in caught.value.message
    assert "[redacted]" in caught.value.message


def test_no_key_for_a_provider_that_needs_one_is_refused_before_any_call(keyed_target: Target, caller: Caller) -> None:
    target = keyed_target
    with pytest.raises(AuthenticationError):
        caller.complete(target, ask("hi"), key=None)
    assert target.fake.requests == []


def test_json_that_does_not_parse_is_an_upstream_error(target: Target, caller: Caller) -> None:
    with pytest.raises(UpstreamError) as caught:
        caller.complete(target, ask("hi", model="malformed"))
    assert "not valid JSON" in caught.value.message


def test_a_malformed_stream_chunk_is_an_upstream_error(target: Target, caller: Caller) -> None:
    with pytest.raises(UpstreamError) as caught:
        caller.stream(target, ask("hi", model="malformed"))
    assert "not valid JSON" in caught.value.message


def test_a_stream_cut_off_half_way_is_an_upstream_error(target: Target, caller: Caller) -> None:
    with pytest.raises(UpstreamError) as caught:
        caller.stream(target, ask("hi", model="cutoff"))
    assert "before the answer was complete" in caught.value.message


def test_an_error_event_inside_a_stream_is_a_typed_error_with_its_message(target: Target, caller: Caller) -> None:
    with pytest.raises(UpstreamError) as caught:
        caller.stream(target, ask("hi", model="stream-error"))
    assert caught.value.message in (
        "The server had an error while processing your request.",
        "Overloaded",
        "The model is overloaded. Please try again later.",
    )


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
def test_a_slow_first_byte_past_the_read_timeout_is_a_timeout(target: Target, caller: Caller, streamed: bool) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        if streamed:
            caller.stream(target, ask("hi", model="slow"), timeout=SHORT_TIMEOUT)
        else:
            caller.complete(target, ask("hi", model="slow"), timeout=SHORT_TIMEOUT)
    assert time.monotonic() - started < 2.5
    assert caught.value.status_code is None
    assert "within 0.5 s" in caught.value.message
    # Nothing is retried: the slow request reached the provider once, and we hung up on it.
    assert len(target.fake.requests) == 1
    assert target.fake.requests[0].disconnected.wait(DISCONNECT_WAIT_S)


def test_an_unreachable_endpoint_is_an_upstream_error_without_status(caller: Caller, openai: Target) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free, and nothing listens once the socket closes
    dead = Target("openai", openai.server, openai.key)
    request = ask("hi")
    with pytest.raises(UpstreamError) as caught:
        if caller.mode == "sync":
            dead.adapter.complete(request, f"http://127.0.0.1:{port}/v1", dead.key)
        else:
            run_async(lambda: dead.adapter.acomplete(request, f"http://127.0.0.1:{port}/v1", dead.key))
    assert caught.value.status_code is None
    assert "Could not reach 127.0.0.1" in caught.value.message


# --- stopping a stream ----------------------------------------------------------------------


def test_closing_a_stream_midway_closes_the_upstream_connection(target: Target) -> None:
    stream = target.adapter.stream(ask("go on", model="endless"), target.endpoint, target.key)
    first = [next(stream), next(stream)]
    assert all(isinstance(item, StreamChunk) for item in first)

    started = time.monotonic()
    stream.close()

    assert target.fake.requests[0].disconnected.wait(DISCONNECT_WAIT_S), "the provider never saw the disconnect"
    assert time.monotonic() - started < DISCONNECT_WAIT_S
    partial = stream.so_far()
    assert partial.finished is False
    assert partial.text == "tick tick "
    if target.protocol == "anthropic":  # message_start already said how long the prompt was
        assert partial.prompt_tokens == PROMPT_TOKENS
    # The pool is not left with a half-read connection: the next call works.
    assert target.adapter.complete(ask("again"), target.endpoint, target.key).text == expected_answer("again")


def test_leaving_a_with_block_early_closes_the_stream(target: Target) -> None:
    with target.adapter.stream(ask("go on", model="endless"), target.endpoint, target.key) as stream:
        for item in stream:
            assert isinstance(item, StreamChunk)
            break
    assert target.fake.requests[0].disconnected.wait(DISCONNECT_WAIT_S)


def test_aclose_on_an_async_stream_midway_closes_the_upstream_connection(target: Target) -> None:
    async def read_two_then_stop() -> tuple[str, bool]:
        stream = target.adapter.astream(ask("go on", model="endless"), target.endpoint, target.key)
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()
        # Checked while the loop still runs: its end would close every connection anyway.
        seen = await asyncio.to_thread(target.fake.requests[0].disconnected.wait, DISCONNECT_WAIT_S)
        return stream.so_far().text, seen

    assert run_async(read_two_then_stop) == ("tick tick ", True)


def test_cancelling_the_task_of_an_async_stream_closes_the_upstream_connection(target: Target) -> None:
    async def cancel_midway() -> bool:
        async def consume() -> None:
            async for _ in target.adapter.astream(ask("go on", model="endless"), target.endpoint, target.key):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await asyncio.to_thread(target.fake.requests[0].disconnected.wait, DISCONNECT_WAIT_S)

    assert run_async(cancel_midway)


def test_a_timeout_given_in_seconds_applies_to_waiting_for_the_answer(openai: Target) -> None:
    with pytest.raises(ProviderTimeout, match=r"within 0\.5 s"):
        openai.adapter.complete(ask("hi", model="slow"), openai.endpoint, openai.key, timeout=0.5)
