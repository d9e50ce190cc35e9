"""The API under both entries: `streamlit run app.py` (a real process, as README says users run it)
and `uvicorn mindroute.http.api:app`: /v1 skips the page middleware, unknown /v1 URLs get OpenAI's JSON
404, and GET /v1/models/{id} takes ids with a slash."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tests.api.conftest import add_account, add_provider, logged
from tests.api.test_refusals import chat, post
from tests.conftest import TEST_SECRET_KEY
from tests.providers.conftest import make_target

ROOT = Path(__file__).resolve().parents[2]
# A browser's page load: with a cookie that signs in nobody, the page middleware clears it.
PAGE_HEADERS = {"accept": "text/html", "accept-encoding": "gzip", "cookie": "mindroute_session=signs-in-nobody"}


@dataclass
class AppServer:
    url: str
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_server(engine: Engine, tmp_path: Path) -> Iterator[AppServer]:
    """`streamlit run app.py` on a free port, on the test database."""
    port = _free_port()
    env = {
        **os.environ,
        "MINDROUTE_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "MINDROUTE_DATA_DIR": str(tmp_path / "data"),
        "MINDROUTE_SECRET_KEY": TEST_SECRET_KEY,
        "MINDROUTE_SECRETS_FILE": str(tmp_path / "none.toml"),
    }
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    log_path = tmp_path / "app.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("app.py did not start:\n" + log_path.read_text(errors="replace"))
        time.sleep(0.2)
    try:
        yield AppServer(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _assert_unknown_url(response: httpx.Response, method: str, path: str) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "unknown_url"
    assert error["param"] is None
    assert f"{method} {path}" in error["message"]


UNKNOWN = [
    ("GET", "/v1/nope"),
    ("GET", "/v1"),
    ("GET", "/v1/chat/completions"),  # a known path with the wrong method
    ("DELETE", "/v1/models"),
    ("POST", "/v1/completions/x"),
    ("GET", "/v1/embeddings/x/y"),
]


def _check_entry(url: str, engine: Engine, request: pytest.FixtureRequest) -> None:
    for method, path in UNKNOWN:
        _assert_unknown_url(httpx.request(method, url + path, headers=PAGE_HEADERS, timeout=10), method, path)
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "OpenAI", "openai", target.server, target.key, ["gpt-4o-mini"], grant_to=account.user_id)
    auth = {"authorization": f"Bearer {account.key}"}
    model = httpx.get(f"{url}/v1/models/OpenAI/gpt-4o-mini", headers={**PAGE_HEADERS, **auth}, timeout=10)
    assert model.status_code == 200, model.text
    assert model.json() == {"id": "OpenAI/gpt-4o-mini", "object": "model", "created": 0, "owned_by": "OpenAI"}
    # The page middleware did not run: no cookie cleared (that takes a database read), no gzip.
    assert "set-cookie" not in model.headers
    assert "content-encoding" not in model.headers
    missing = httpx.get(f"{url}/v1/models/OpenAI/gpt-5-nowhere", headers=auth, timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    assert httpx.get(f"{url}/v1/models/OpenAI/gpt-4o-mini", timeout=10).status_code == 401
    openapi = httpx.get(f"{url}/v1/openapi.json", headers=PAGE_HEADERS, timeout=10)
    assert openapi.status_code == 200 and "content-encoding" not in openapi.headers
    assert "/v1/models/{model}" in openapi.json()["paths"]
    answer = httpx.post(
        f"{url}/v1/chat/completions",
        json=chat("OpenAI/gpt-4o-mini"),
        headers={**PAGE_HEADERS, **auth},
        timeout=20,
    )
    assert answer.status_code == 200, answer.text
    assert "set-cookie" not in answer.headers
    assert float(answer.headers["x-mindroute-overhead-ms"]) >= 0
    assert [row.status_code for row in logged(engine, 1)] == [200]


def test_under_app_py_every_v1_url_is_the_apis_and_skips_page_middleware(engine, app_server, request):
    _check_entry(app_server.url, engine, request)
    # The same cookie on a page load is cleared by the page middleware: the check above can fail.
    page = httpx.get(app_server.url + "/", headers=PAGE_HEADERS, timeout=10)
    assert page.status_code == 200
    assert 'mindroute_session=""' in page.headers["set-cookie"]
    assert "text/html" in page.headers["content-type"]


def test_under_the_api_alone_every_v1_url_answers_json(engine, server, request):
    _check_entry(server.url, engine, request)
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200


def test_models_by_id_are_only_the_owners(engine, server, request):
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Mine", "openai", target.server, target.key, ["m1"], grant_to=account.user_id)
    add_provider(engine, "Theirs", "openai", target.server, target.key, ["t1"])
    auth = {"authorization": f"Bearer {account.key}"}
    assert httpx.get(f"{server.url}/v1/models/Mine/m1", headers=auth, timeout=10).status_code == 200
    hidden = httpx.get(f"{server.url}/v1/models/Theirs/t1", headers=auth, timeout=10)
    nowhere = httpx.get(f"{server.url}/v1/models/Nowhere/t1", headers=auth, timeout=10)
    assert hidden.status_code == nowhere.status_code == 404
    assert hidden.json()["error"]["message"].replace("Theirs", "X") == nowhere.json()["error"]["message"].replace(
        "Nowhere", "X"
    )
    assert post(server, account.key, chat("Mine/m1")).status_code == 200


def test_an_unexpected_failure_is_openais_json_500_not_plain_text(tmp_path, monkeypatch):
    """A database whose schema is broken (not away: no retry helps) fails the call with a JSON 500."""
    from sqlalchemy import text
    from sqlalchemy.engine import URL

    from mindroute import config
    from mindroute import db as mr_db
    from mindroute.db import make_engine, upgrade
    from mindroute.services import admission
    from tests.api.conftest import ApiServer

    url = URL.create("sqlite", database=str(tmp_path / "broken.db"))
    broken = make_engine(url)
    upgrade(broken)
    with broken.begin() as connection:
        connection.execute(text("ALTER TABLE apikeys RENAME TO apikeys_gone"))
    broken.dispose()
    monkeypatch.setenv("MINDROUTE_DATABASE_URL", url.render_as_string())
    config.get_settings.cache_clear()
    monkeypatch.setattr(mr_db, "_engine", None)
    admission.dispose_read_engines()
    running = ApiServer().start()
    try:
        answer = post(running, "mr-" + "x" * 40, chat("Fake/test-model"))
        assert answer.status_code == 500
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["error"]["type"] == "server_error"
        assert "apikeys" not in answer.text  # the details go to the server log only
    finally:
        running.stop()
        admission.dispose_read_engines()
        if mr_db._engine is not None:
            mr_db._engine.dispose()
