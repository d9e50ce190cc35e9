"""POST /v1/embeddings with the official openai client, through each protocol against the embeddings
fakes: float and base64 answers, dimensions reaching the provider, the refusals, one Logs row each."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from sqlalchemy import Engine

from mindroute import config
from tests.api.conftest import add_account, add_provider, logged
from tests.providers.fake_base import GOOGLE_KEY, OPENAI_KEY
from tests.providers.fake_embeddings import FakeGeminiEmbeddings, FakeOpenAIEmbeddings, fake_vector, token_count
from tests.providers.fakes import FakeServer

MODELS = ["embed-small", "embed-large"]
# protocol -> (the fake's fixture, the key it takes, whether it reports token counts)
PROTOCOLS = {
    "openai": ("openai_embeddings", OPENAI_KEY, True),
    "openai-compatible": ("compatible_embeddings", None, False),
    "google": ("gemini_embeddings", GOOGLE_KEY, False),
}


def _served(fake: FakeOpenAIEmbeddings | FakeGeminiEmbeddings) -> Iterator[FakeServer]:
    running = FakeServer(fake).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def openai_embeddings() -> Iterator[FakeServer]:
    yield from _served(FakeOpenAIEmbeddings())


@pytest.fixture(scope="module")
def compatible_embeddings() -> Iterator[FakeServer]:
    yield from _served(FakeOpenAIEmbeddings(key=None, report_usage=False))


@pytest.fixture(scope="module")
def gemini_embeddings() -> Iterator[FakeServer]:
    yield from _served(FakeGeminiEmbeddings())


def client(server, key: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key or "none", max_retries=0, timeout=20)


def provider_for(request: pytest.FixtureRequest, engine: Engine, protocol: str, account, **grant) -> FakeServer:
    fixture, key, _ = PROTOCOLS[protocol]
    fake_server: FakeServer = request.getfixturevalue(fixture)
    fake_server.fake.reset()
    add_provider(engine, "Emb", protocol, fake_server, key, MODELS, grant_to=account.user_id, **grant)
    return fake_server


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_embeddings_float_and_base64_decode_to_the_same_vectors(engine, server, request, protocol):
    account = add_account(engine)
    fake = provider_for(request, engine, protocol, account).fake
    api = client(server, account.key)
    texts = ["the first text", "a second one"]

    as_float = api.embeddings.create(model="Emb/embed-small", input=texts, dimensions=3, encoding_format="float")
    float_body = fake.last.body
    # The SDK's default: base64 asked for, decoded by the SDK into floats.
    as_base64 = api.embeddings.create(model="Emb/embed-small", input=texts, dimensions=3)
    base64_body = fake.last.body

    expected = [fake_vector(text, 3) for text in texts]
    assert [item.embedding for item in as_float.data] == expected
    assert [item.embedding for item in as_base64.data] == expected
    assert [item.index for item in as_base64.data] == [0, 1]
    assert as_float.model == as_base64.model == "Emb/embed-small"  # the id the client used
    if protocol == "google":
        assert fake.last.path == "/v1beta/models/embed-small:batchEmbedContents"
        assert [r["outputDimensionality"] for r in base64_body["requests"]] == [3, 3]
        assert [r["model"] for r in float_body["requests"]] == ["models/embed-small"] * 2
        assert as_float.usage.prompt_tokens == 0  # Gemini counts nothing: zeros in the answer...
    else:
        assert fake.last.path == "/v1/embeddings"
        assert float_body == {"model": "embed-small", "input": texts, "dimensions": 3, "encoding_format": "float"}
        assert base64_body["encoding_format"] == "base64"
    rows = logged(engine, 2)
    tokens = sum(token_count(text) for text in texts)
    for row in rows:
        assert row.request_type == "embedding"
        assert row.status_code == 200
        assert row.model_id == "embed-small"
        assert row.completion_tokens is None
        # ...and NULL, unknown, in the Logs row: never a made-up 0.
        assert row.prompt_tokens == (tokens if PROTOCOLS[protocol][2] else None)
        assert row.request_body["input_count"] == 2
        assert row.request_body["first_input"] == "the first text"
        assert row.request_body["dimensions"] == 3
        assert "input" not in row.request_body
    assert sorted(row.request_body.get("encoding_format") for row in rows) == ["base64", "float"]


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_one_string_is_one_embedding(engine, server, request, protocol):
    account = add_account(engine)
    fake = provider_for(request, engine, protocol, account).fake
    answer = client(server, account.key).embeddings.create(model="Emb/embed-large", input="just one")
    assert [item.embedding for item in answer.data] == [fake_vector("just one")]
    if protocol == "google":
        assert fake.last.path == "/v1beta/models/embed-large:embedContent"
        assert fake.last.body == {"content": {"parts": [{"text": "just one"}]}}
    else:
        assert fake.last.body["input"] == "just one"
    (row,) = logged(engine, 1)
    assert row.request_body["input_count"] == 1


def test_token_arrays_pass_through_to_openai(engine, server, request):
    account = add_account(engine)
    fake = provider_for(request, engine, "openai", account).fake
    answer = client(server, account.key).embeddings.create(
        model="embed-small", input=[[1, 2, 3], [4, 5]], encoding_format="float"
    )
    assert fake.last.body["input"] == [[1, 2, 3], [4, 5]]
    assert [item.embedding for item in answer.data] == [fake_vector([1, 2, 3]), fake_vector([4, 5])]
    assert answer.model == "embed-small"  # a bare id stays bare
    (row,) = logged(engine, 1)
    assert row.prompt_tokens == 5 and row.request_body["input_type"] == "tokens"


def test_the_first_input_is_logged_clipped(engine, server, request):
    account = add_account(engine)
    provider_for(request, engine, "openai", account)
    long_text = "word " * 2000
    client(server, account.key).embeddings.create(model="Emb/embed-small", input=[long_text, "b"])
    (row,) = logged(engine, 1)
    assert row.request_body["first_input"] == long_text[:1000]
    assert "b" not in row.request_body.values()


def _refused(call, error_class: type[openai.APIStatusError]) -> openai.APIStatusError:
    with pytest.raises(error_class) as caught:
        call()
    return caught.value


def test_refusals_each_have_their_logs_row(engine, server, request, anthropic_server):
    account = add_account(engine)
    google = provider_for(request, engine, "google", account).fake
    add_provider(engine, "Claude", "anthropic", anthropic_server, "sk-ant-x", ["claude-x"], grant_to=account.user_id)
    anthropic_server.fake.reset()
    add_provider(engine, "Narrow", "openai", request.getfixturevalue("openai_embeddings"), OPENAI_KEY, MODELS,
                 grant_to=account.user_id, grant={"settings": {"models": ["embed-small"]}})  # fmt: skip
    api = client(server, account.key)

    no_key = _refused(lambda: client(server, None).embeddings.create(model="Emb/embed-small", input="x"),
                      openai.AuthenticationError)  # fmt: skip
    assert no_key.status_code == 401
    not_granted = _refused(lambda: api.embeddings.create(model="Narrow/embed-large", input="x"),
                           openai.PermissionDeniedError)  # fmt: skip
    assert not_granted.status_code == 403
    claude = _refused(lambda: api.embeddings.create(model="Claude/claude-x", input="x"), openai.BadRequestError)
    assert claude.body["param"] == "model" and "The Anthropic protocol has no embeddings" in claude.body["message"]
    assert anthropic_server.fake.requests == []
    tokens = _refused(lambda: api.embeddings.create(model="Emb/embed-small", input=[[1, 2]]), openai.BadRequestError)
    assert tokens.body["param"] == "input"
    assert google.requests == []
    empty = _refused(lambda: api.embeddings.create(model="Emb/embed-small", input=[]), openai.BadRequestError)
    assert empty.body["param"] == "input"

    rows = logged(engine, 5)
    assert [row.request_type for row in rows] == ["embedding"] * 5
    assert [row.status_code for row in rows] == [401, 403, 400, 400, 400]
    assert rows[2].model_id == "claude-x" and rows[2].provider_id is not None
    assert rows[3].request_body["input_type"] == "tokens"


def test_bad_fields_are_400_with_their_param(engine, server, request):
    account = add_account(engine)
    provider_for(request, engine, "openai", account)
    headers = {"authorization": f"Bearer {account.key}"}
    cases = [
        ({"model": "Emb/embed-small", "input": ""}, "input"),
        ({"model": "Emb/embed-small", "input": ["a"] * 2049}, "input"),
        ({"model": "Emb/embed-small", "input": ["a", 1]}, "input"),
        ({"model": "Emb/embed-small", "input": "a", "dimensions": 0}, "dimensions"),
        ({"model": "Emb/embed-small", "input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a"}, "model"),
    ]
    for body, param in cases:
        answer = httpx.post(f"{server.url}/v1/embeddings", json=body, headers=headers, timeout=20)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == param
    rows = logged(engine, len(cases))
    assert {row.request_type for row in rows} == {"embedding"}


def test_unknown_fields_reach_openai_but_not_gemini(engine, server, request):
    account = add_account(engine)
    fake = provider_for(request, engine, "google", account).fake
    headers = {"authorization": f"Bearer {account.key}"}
    body = {"model": "Emb/embed-small", "input": "a", "task_type": "retrieval"}
    answer = httpx.post(f"{server.url}/v1/embeddings", json=body, headers=headers, timeout=20)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "task_type"
    assert fake.requests == []
    logged(engine, 1)


def test_a_provider_failure_is_relayed_without_its_key(engine, server, request):
    account = add_account(engine)
    fake_server = request.getfixturevalue("openai_embeddings")
    add_provider(engine, "Wrong", "openai", fake_server, "sk-proj-WrongKey0123456789abcdefghijklmnop", MODELS,
                 grant_to=account.user_id)  # fmt: skip
    failure = _refused(
        lambda: client(server, account.key).embeddings.create(model="Wrong/embed-small", input="x"),
        openai.InternalServerError,
    )
    assert failure.status_code == 502
    assert "Incorrect API key provided" in failure.body["message"]
    assert "WrongKey" not in str(failure.body)
    (row,) = logged(engine, 1)
    assert row.status_code == 502 and row.request_type == "embedding"
    assert "Incorrect API key provided" in row.error_message and "WrongKey" not in row.error_message


def test_a_body_over_the_limit_is_413(engine, server, request, monkeypatch):
    account = add_account(engine)
    fake = provider_for(request, engine, "openai", account).fake
    monkeypatch.setenv("MINDROUTE_API_MAX_BODY_BYTES", "2000")
    config.get_settings.cache_clear()  # settings are read once per process
    body = {"model": "Emb/embed-small", "input": "x" * 3000}
    answer = httpx.post(f"{server.url}/v1/embeddings", json=body, headers={"authorization": f"Bearer {account.key}"})
    assert answer.status_code == 413 and "2,000 bytes" in answer.json()["error"]["message"]
    assert fake.requests == []
    (row,) = logged(engine, 1)
    assert row.status_code == 413 and row.request_type == "embedding"


def test_more_texts_than_one_gemini_batch_go_in_several(engine, server, request):
    account = add_account(engine)
    fake = provider_for(request, engine, "google", account).fake
    texts = [f"text {i}" for i in range(250)]
    answer = client(server, account.key).embeddings.create(model="Emb/embed-small", input=texts)
    assert [len(r.body["requests"]) for r in fake.requests] == [100, 100, 50]
    assert [item.index for item in answer.data] == list(range(250))
    assert [item.embedding for item in answer.data] == [fake_vector(text) for text in texts]
    (row,) = logged(engine, 1)
    assert row.prompt_tokens is None and row.request_body["input_count"] == 250


def test_a_provider_without_its_key_is_not_called(engine, server, request):
    account = add_account(engine)
    fake_server = request.getfixturevalue("openai_embeddings")
    fake_server.fake.reset()
    add_provider(engine, "Keyless", "openai", fake_server, None, MODELS, grant_to=account.user_id)
    failure = _refused(
        lambda: client(server, account.key).embeddings.create(model="Keyless/embed-small", input="x"),
        openai.InternalServerError,
    )
    assert "No API key is set" in failure.body["message"]
    assert fake_server.fake.requests == []
    (row,) = logged(engine, 1)
    assert row.status_code == 502
