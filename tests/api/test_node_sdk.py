"""The official openai Node client (tests/node/package.json's pinned version) against the API on every protocol."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import PROTOCOLS, add_account, add_provider, logged
from tests.providers.conftest import make_target
from tests.providers.fake_base import GOOGLE_KEY, OPENAI_KEY, expected_answer, tool_results_answer
from tests.providers.fake_embeddings import FakeGeminiEmbeddings, FakeOpenAIEmbeddings, fake_vector
from tests.providers.fakes import COMPLETION_TOKENS, PROMPT_TOKENS, FakeServer

SCRIPTS = Path(__file__).resolve().parent.parent / "node"
INSTALL_TIMEOUT_S = 300


def _missing_node() -> str | None:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    return None


@pytest.fixture(scope="session")
def node_openai() -> Path:
    """The folder holding node_modules/openai at package.json's version, installed once per package.json."""
    missing = _missing_node()
    if missing:
        if os.environ.get("MINDROUTE_REQUIRE_NODE") == "1":
            pytest.fail(f"MINDROUTE_REQUIRE_NODE=1 but {missing}")
        pytest.skip(f"{missing}: the Node client tests need Node.js and npm")
    manifest = (SCRIPTS / "package.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = cache / "mindroute-node" / hashlib.sha256(manifest).hexdigest()[:16]
    version = json.loads(manifest)["dependencies"]["openai"]
    installed = folder / "node_modules" / "openai" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != version:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_bytes(manifest)
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder)],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
    assert json.loads(installed.read_text())["version"] == version
    return folder


def run_script(node_openai: Path, script: str, base_url: str, key: str, model: str) -> dict:
    env = {**os.environ, "OPENAI_NODE_DIR": str(node_openai), "BASE_URL": base_url, "API_KEY": key, "MODEL": model}
    done = subprocess.run(
        ["node", str(SCRIPTS / script)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, f"node {script} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(params=PROTOCOLS)
def world(request, engine, server, node_openai):
    target = make_target(request, request.param)
    account = add_account(engine)
    add_provider(engine, "Fake", target.protocol, target.server, target.key, grant_to=account.user_id)
    return target, lambda script: run_script(node_openai, script, server.url + "/v1", account.key, "Fake/test-model")


def test_a_whole_answer(world, engine):
    target, run = world
    answer = run("chat.mjs")
    assert answer["content"] == expected_answer("hello from node")
    assert answer["finish_reason"] == "stop"
    assert answer["model"] == "Fake/test-model"
    if target.reports_usage:
        assert (answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"]) == (
            PROMPT_TOKENS,
            COMPLETION_TOKENS,
        )
    [row] = logged(engine, 1)
    assert row.status_code == 200


def test_a_streamed_answer(world, engine):
    target, run = world
    answer = run("stream.mjs")
    assert answer["content"] == expected_answer("stream from node")
    assert answer["chunks"] > 2
    assert answer["finish_reason"] == "stop"
    if target.reports_usage:
        assert answer["usage"]["prompt_tokens"] == PROMPT_TOKENS
    [row] = logged(engine, 1)
    assert (row.status_code, row.response_body["text"]) == (200, expected_answer("stream from node"))


def test_a_tool_round(world, engine):
    _, run = world
    answer = run("tools.mjs")
    assert answer["first_finish"] == "tool_calls"
    call = answer["call"]
    assert call["id"] and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "x"}  # the fakes' example of the schema
    assert answer["answer"] == tool_results_answer(["sunny from node"])
    assert answer["second_finish"] == "stop"
    [streamed] = answer["streamed"]
    assert streamed["id"] and streamed["name"] == "get_weather"
    assert json.loads(streamed["arguments"]) == {"city": "x"}
    assert len(logged(engine, 3)) == 3


@pytest.fixture(scope="module")
def embeddings_servers() -> Iterator[dict[str, tuple[FakeServer, str]]]:
    servers = {
        "openai": FakeServer(FakeOpenAIEmbeddings()).start(),
        "google": FakeServer(FakeGeminiEmbeddings()).start(),
    }
    yield {"openai": (servers["openai"], OPENAI_KEY), "google": (servers["google"], GOOGLE_KEY)}
    for running in servers.values():
        running.stop()


@pytest.mark.parametrize("protocol", ["openai", "google"])
def test_embeddings(protocol, engine, server, node_openai, embeddings_servers):
    fake_server, key = embeddings_servers[protocol]
    fake_server.fake.reset()
    account = add_account(engine)
    add_provider(engine, "Emb", protocol, fake_server, key, ["embed-small"], grant_to=account.user_id)
    answer = run_script(node_openai, "embeddings.mjs", server.url + "/v1", account.key, "Emb/embed-small")
    assert answer["indexes"] == [0, 1]
    assert answer["vectors"] == [fake_vector("first text"), fake_vector("second text")]
    [row] = logged(engine, 1)
    assert row.status_code == 200
