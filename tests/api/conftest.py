"""The API served by uvicorn on a real port against the test database, with providers pointing at
the fake provider servers, and the helpers to set up users, keys and grants."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine, func, select

from mindroute import config, security
from mindroute import db as mr_db
from mindroute.db import transaction
from mindroute.http import api
from mindroute.models import Log, Provider, User, UserProvider
from mindroute.services import admission, api_keys
from tests.pages.helpers import add_user
from tests.providers.conftest import (  # noqa: F401 - fixtures shared with the adapter tests
    _TARGETS,
    anthropic_server,
    compatible_server,
    google_server,
    openai_server,
)
from tests.providers.fakes import FakeServer

PROTOCOLS = list(_TARGETS)


class ApiServer:
    """mindroute.http.api:app served by uvicorn on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, app: Any = None) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        conf = uvicorn.Config(
            app or api.app, log_level="warning", access_log=False, loop="asyncio", timeout_graceful_shutdown=5
        )
        self._server = uvicorn.Server(conf)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """A graceful stop, as on SIGTERM: in-flight requests finish and the lifespan ends."""
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()


@pytest.fixture
def server(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiServer]:
    monkeypatch.setenv("MINDROUTE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    config.get_settings.cache_clear()
    monkeypatch.setattr(mr_db, "_engine", None)
    admission.clear_route_cache()
    running = ApiServer().start()
    yield running
    running.stop()
    admission.dispose_read_engines()
    if mr_db._engine is not None:
        mr_db._engine.dispose()


@dataclass
class Account:
    user_id: uuid.UUID
    key: str
    key_id: uuid.UUID


def add_account(engine: Engine, email: str = "user@example.com", role: str = "user") -> Account:
    user = add_user(engine, email, role=role)
    with transaction(engine) as session:
        owner = session.get(User, user.id)
        issued = api_keys.create_key(session, owner, owner.id, "tests", None)
    return Account(user.id, issued.plaintext, issued.key.id)


def add_provider(
    engine: Engine,
    name: str,
    protocol: str,
    server: FakeServer,
    key: str | None,
    models: list[str] | None = None,
    *,
    grant_to: uuid.UUID | None = None,
    grant: dict[str, Any] | None = None,
    **columns: Any,
) -> uuid.UUID:
    box = security.SecretBox(config.get_settings().secret_keys)
    endpoint = server.url + "/v1" if protocol.startswith("openai") else server.url
    models = ["test-model", "other-model"] if models is None else models
    with transaction(engine) as session:
        provider = Provider(
            name=name,
            protocol=protocol,
            endpoint_url=endpoint,
            api_key=box.encrypt(key) if key else None,
            settings={"models": models, "default_model": models[0] if models else None, "prices": {}},
            **columns,
        )
        session.add(provider)
        session.flush()
        if grant_to is not None:
            session.add(UserProvider(user_id=grant_to, provider_id=provider.id, allowed=True, **(grant or {})))
    return provider.id


def log_rows(engine: Engine) -> list[Log]:
    with transaction(engine) as session:
        return list(session.scalars(select(Log).order_by(Log.created_at)))


def log_count(engine: Engine) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(Log)) or 0


def wait_for(condition: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def logged(engine: Engine, count: int) -> list[Log]:
    """The Logs rows once `count` of them are written (the API writes them behind its answers)."""
    assert wait_for(lambda: log_count(engine) >= count), f"expected {count} Logs rows, found {log_count(engine)}"
    time.sleep(0.05)  # a row too many would show up now
    rows = log_rows(engine)
    assert len(rows) == count
    return rows
