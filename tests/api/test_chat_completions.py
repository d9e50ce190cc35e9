"""The API with the official openai client: each provider protocol, streamed and not, one Logs row per call."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import httpx
import openai
import pytest

from mindroute.db import transaction
from mindroute.models import ApiKey
from tests.api.conftest import PROTOCOLS, add_account, add_provider, log_count, logged
from tests.api.test_refusals import chat, post
from tests.providers.conftest import make_target
from tests.providers.fakes import COMPLETION_TOKENS, PROMPT_TOKENS, expected_answer


def client_for(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=20)


@pytest.fixture(params=PROTOCOLS)
def protocol_world(request, engine, server):
    target = make_target(request, request.param)
    account = add_account(engine)
    add_provider(engine, "Fake", target.protocol, target.server, target.key, grant_to=account.user_id)
    return target, account


def test_openai_client_gets_a_whole_answer_from_each_protocol(protocol_world, engine, server):
    target, account = protocol_world
    answer = client_for(server, account.key).chat.completions.with_raw_response.create(
        model="Fake/test-model",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_tokens=50,
        temperature=0.5,
        top_p=0.9,
        stop=["END"],
        user="end-user-7",
    )
    assert float(answer.headers["x-mindroute-overhead-ms"]) >= 0
    completion = answer.parse()
    assert completion.choices[0].message.content == expected_answer("hi")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "Fake/test-model"
    if target.reports_usage:
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
            PROMPT_TOKENS,
            COMPLETION_TOKENS,
        )
    else:
        assert completion.usage is None
    [row] = logged(engine, 1)
    assert row.status_code == 200
    assert row.request_type == "chat"
    assert row.request_body["source"] == "api"
    assert row.request_body["api_key_id"] == str(account.key_id)
    assert row.request_body["user"] == "end-user-7"
    assert row.ip == "127.0.0.1"
    assert "OpenAI" in row.user_agent
    with transaction(engine) as session:
        assert session.get(ApiKey, account.key_id).last_used_at is not None


def test_openai_client_streams_from_each_protocol_with_usage_last(protocol_world, engine, server):
    target, account = protocol_world
    stream = client_for(server, account.key).chat.completions.create(
        model="Fake/test-model",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_answer("stream me")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    if target.reports_usage:
        assert chunks[-1].usage.prompt_tokens == PROMPT_TOKENS
    [row] = logged(engine, 1)
    assert (row.status_code, row.response_body["text"]) == (200, expected_answer("stream me"))


def test_bare_model_and_image_parts_reach_the_provider(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(
        engine,
        "Fake",
        "openai",
        target.server,
        target.key,
        ["vision-model"],
        grant_to=account.user_id,
        allow_images=True,
    )
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
    completion = client_for(server, account.key).chat.completions.create(
        model="vision-model",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}},
                ],
            }
        ],
        max_completion_tokens=20,
    )
    assert completion.choices[0].message.content == expected_answer("what is this")
    sent = target.fake.last.body
    [image] = [part for part in sent["messages"][0]["content"] if part["type"] == "image_url"]
    assert image["image_url"]["url"] == f"data:image/png;base64,{pixel}"
    [row] = logged(engine, 1)
    assert row.request_body["messages"][0]["attachments"][0]["type"] == "image/png"


def test_models_lists_what_the_owner_may_use(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Mine", "openai", target.server, target.key, ["a", "b"], grant_to=account.user_id)
    add_provider(engine, "Local", "openai-compatible", target.server, None, [], grant_to=account.user_id)
    add_provider(engine, "Theirs", "openai", target.server, target.key, ["c"])
    models = client_for(server, account.key).models.list()
    assert [m.id for m in models] == ["Mine/a", "Mine/b"]


def test_disconnect_mid_stream_cancels_upstream_and_logs_499(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, ["endless"], grant_to=account.user_id)
    body = {"model": "Fake/endless", "messages": [{"role": "user", "content": "go"}], "stream": True}
    headers = {"authorization": f"Bearer {account.key}"}
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        seen = 0
        for line in response.iter_lines():
            seen += "tick" in line
            if seen >= 3:
                break
    assert target.fake.last.disconnected.wait(10), "the provider never saw the disconnect"
    [row] = logged(engine, 1)
    assert row.status_code == 499
    assert row.response_body["stopped_by_user"] is True
    assert row.response_body["text"].startswith("tick tick")


def test_two_hundred_concurrent_calls_leave_two_hundred_log_rows(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, grant_to=account.user_id)
    body = {"model": "Fake/test-model", "messages": [{"role": "user", "content": "hi"}]}

    async def main() -> list[int]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            calls = [
                client.post(
                    f"{server.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {account.key}"}
                )
                for _ in range(200)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(main()) == [200] * 200
    rows = logged(engine, 200)
    assert {r.status_code for r in rows} == {200}


def test_openapi_describes_the_routes(server):
    spec = httpx.get(f"{server.url}/v1/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/models"} <= set(spec["paths"])


def test_a_graceful_stop_writes_every_queued_log_row(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, grant_to=account.user_id)
    body = {"model": "Fake/test-model", "messages": [{"role": "user", "content": "hi"}]}

    async def main() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            calls = [
                client.post(
                    f"{server.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {account.key}"}
                )
                for _ in range(50)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(main()) == [200] * 50
    server.stop()
    assert log_count(engine) == 50


def test_a_provider_failing_mid_stream_sends_an_error_event_and_logs_it(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, ["stream-error"], grant_to=account.user_id)
    body = {"model": "Fake/stream-error", "messages": [{"role": "user", "content": "go"}], "stream": True}
    response = httpx.post(
        f"{server.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {account.key}"}, timeout=20
    )
    assert response.status_code == 200
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert '"error"' in events[-2]
    assert events[-1] == "[DONE]"
    [row] = logged(engine, 1)
    assert row.status_code == 502
    assert row.response_body["text"] == "Hello"


def test_the_routes_mounted_in_another_starlette_app_answer_the_same(engine, server, request):
    """api.routes() mounted in another Starlette app: every /v1 path goes to the API's own ASGI app."""
    from starlette.applications import Starlette

    from mindroute.http import api
    from mindroute.providers.transport_aiohttp import aclose_shared_async_client
    from tests.api.conftest import ApiServer

    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, ["test-model"], grant_to=account.user_id)

    @contextlib.asynccontextmanager
    async def lifespan(_app):  # the server fixture's app writes the Logs rows; this one closes its pool
        yield
        await aclose_shared_async_client()

    mounted = ApiServer(Starlette(routes=api.routes(), lifespan=lifespan)).start()
    try:
        answer = post(mounted, account.key, chat("Fake/test-model"))
        assert answer.status_code == 200, answer.text
        assert answer.json()["object"] == "chat.completion"
        assert float(answer.headers["x-mindroute-overhead-ms"]) >= 0
        # Issue #13: a known path with another method is an unknown URL, OpenAI's JSON 404 (was 405).
        assert httpx.get(f"{mounted.url}/v1/chat/completions", timeout=10).status_code == 404
    finally:
        mounted.stop()
    assert httpx.get(f"{server.url}/v1/chat/completions", timeout=10).json()["error"]["code"] == "unknown_url"
    assert len(logged(engine, 1)) == 1


def test_a_client_gone_before_its_body_arrived_is_no_call(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, ["test-model"], grant_to=account.user_id)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        sock.sendall(f'{head}authorization: Bearer {account.key}\r\ncontent-length: 1000\r\n\r\n{{"mo'.encode())
    answer = post(server, account.key, chat("Fake/test-model"))  # the server carries on
    assert answer.status_code == 200, answer.text
    assert [row.status_code for row in logged(engine, 1)] == [200]
