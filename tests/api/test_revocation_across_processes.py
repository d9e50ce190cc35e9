"""The revoked-key bound across processes, with limits on: a key revoked by one process is refused by an API
process on its very next call (within 1 s), on a remembered route whose key is read with the counters."""

from __future__ import annotations

import os
import time

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import update

from bench import api as bench
from mindroute import config
from mindroute.db import transaction
from mindroute.models import ApiKey, utcnow
from tests.conftest import create_pg_database, drop_pg_database

BOUND_S = 1.0


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_key_revoked_elsewhere_is_refused_by_an_api_process_on_its_next_call(database, tmp_path, request) -> None:
    pg_url = None
    if database == "postgresql":
        request.getfixturevalue("pg_server")
        pg_url = create_pg_database("mindroute_revoke")
    url = pg_url.render_as_string(hide_password=False) if pg_url is not None else f"sqlite:///{tmp_path / 'r.db'}"
    env = {
        **os.environ,
        "MINDROUTE_DATABASE_URL": url,
        "MINDROUTE_DATA_DIR": str(tmp_path / "data"),
        "MINDROUTE_SECRET_KEY": Fernet.generate_key().decode(),
        "MINDROUTE_BENCH_DELAY_MS": "1",
    }
    saved = {k: os.environ.get(k) for k in ("MINDROUTE_DATABASE_URL", "MINDROUTE_DATA_DIR", "MINDROUTE_SECRET_KEY")}
    os.environ.update({k: env[k] for k in saved})
    upstream_port, api_port = bench._free_port(), bench._free_port()
    upstream = bench._serve("bench.api:upstream_app", upstream_port, env)
    api = None
    try:
        bench._wait_until_up(f"http://127.0.0.1:{upstream_port}")
        credentials, engine, _ = bench._set_up(url, f"http://127.0.0.1:{upstream_port}", limits=True)
        key, model_id = credentials.split("\n")
        api = bench._serve_entry("api", api_port, env)
        bench._wait_until_up(f"http://127.0.0.1:{api_port}/healthz")
        body = bench.bench_body(model_id, tools=False)
        headers = {"authorization": f"Bearer {key}"}
        through = f"http://127.0.0.1:{api_port}/v1/chat/completions"
        with httpx.Client(timeout=20) as client:
            for _ in range(3):  # the route is remembered in the API process from the first call on
                assert client.post(through, json=body, headers=headers).status_code == 200
            with transaction(engine) as session:  # this process revokes it
                session.execute(update(ApiKey).values(revoked_at=utcnow()))
            revoked = time.monotonic()
            answer = client.post(through, json=body, headers=headers)
            assert answer.status_code == 401 and answer.json()["error"]["code"] == "revoked_api_key"
            assert time.monotonic() - revoked < BOUND_S
        engine.dispose()
    finally:
        if api is not None:
            bench._stop(api)
        bench._stop(upstream)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        config.get_settings.cache_clear()
        if pg_url is not None:
            drop_pg_database(pg_url)
