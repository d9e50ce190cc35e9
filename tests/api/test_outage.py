"""A database outage under the API (issue #13 item 7): admission answers OpenAI's JSON 503 and logs
the refusal once the database is back; lastUsedAt never fails or holds up a call; the log writer
keeps every row of an answered call while the database is away (PostgreSQL cut off by a TCP
forwarder, or its connections terminated; SQLite write-locked past its busy timeout), drops only
rows the database refuses for themselves, and bounds what it keeps."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Engine, event, text, update

from mindroute import config
from mindroute import db as mr_db
from mindroute.db import make_engine
from mindroute.models import ApiKey, utcnow
from mindroute.services import admission, log_writer
from mindroute.services.call_log import CallRecord, is_database_outage
from tests.api.conftest import ApiServer, add_account, add_provider, log_count, log_rows, logged, wait_for
from tests.api.test_admission import terminate_other_connections
from tests.api.test_refusals import assert_error, chat, post
from tests.providers.conftest import make_target
from tests.tcp_cut import TcpCut

SQLITE_BUSY_MS = 200  # the writer engine's busy timeout in the writer-level SQLite tests


class Outage:
    """An engine for the code under test, and a real outage of its database to start and end."""

    def __init__(self, engine: Engine, start: Callable[[], None], end: Callable[[], None]) -> None:
        self.engine = engine
        self._start, self._end = start, end
        self.on = False

    def start(self) -> None:
        self._start()
        self.on = True

    def end(self) -> None:
        if self.on:
            self.on = False
            self._end()


def _sqlite_lock(url_database: str) -> tuple[Callable[[], None], Callable[[], None]]:
    holder: list[sqlite3.Connection] = []

    def start() -> None:
        connection = sqlite3.connect(url_database, isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN IMMEDIATE")  # the write lock, held until end()
        holder.append(connection)

    def end() -> None:
        connection = holder.pop()
        connection.execute("ROLLBACK")
        connection.close()

    return start, end


@pytest.fixture
def outage(engine: Engine) -> Iterator[Outage]:
    """PostgreSQL behind a TcpCut (start: cut it); SQLite with a short busy timeout (start: another
    connection holds BEGIN IMMEDIATE)."""
    if engine.dialect.name == "postgresql":
        cut = TcpCut(engine.url.port or 5432)
        proxied = make_engine(engine.url.set(host="127.0.0.1", port=cut.port), connect_args={"connect_timeout": 2})
        current = Outage(proxied, cut.cut, cut.restore)
        yield current
        current.end()
        cut.close()
    else:
        proxied = make_engine(engine.url)

        @event.listens_for(proxied, "connect")
        def short_busy_timeout(dbapi_connection, _record) -> None:
            dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")

        start, end = _sqlite_lock(engine.url.database)
        current = Outage(proxied, start, end)
        yield current
        current.end()
    proxied.dispose()


def record(status: int = 200, user_id: uuid.UUID | None = None) -> CallRecord:
    return CallRecord(
        user_id=user_id, provider_id=None, model="m", request=None, status_code=status, duration_ms=5, source="api"
    )


def test_the_log_writer_keeps_every_row_while_the_database_is_away(engine, outage):
    writer = log_writer.LogWriter(outage.engine)
    try:
        writer.submit(record())
        assert wait_for(lambda: log_count(engine) == 1)
        outage.start()
        for _ in range(20):
            writer.submit(record())
        assert wait_for(lambda: writer.retries >= 2, 15), "the writer did not retry"
        assert log_count(engine) == 1
        outage.end()
        assert wait_for(lambda: log_count(engine) == 21, 20), log_count(engine)
        assert writer.dropped == 0 and writer.pending == 0
    finally:
        writer.stop()
    assert log_count(engine) == 21


def test_a_bad_row_is_dropped_alone_but_an_outage_keeps_the_batch(engine, outage):
    writer = log_writer.LogWriter(outage.engine)
    try:
        outage.start()
        # A row the database refuses for itself (its user does not exist: a foreign key), among good ones.
        for row in (record(201), record(202, user_id=uuid.uuid4()), record(203)):
            writer.submit(row)
        assert wait_for(lambda: writer.retries >= 1, 15)
        outage.end()
        assert wait_for(lambda: log_count(engine) == 2, 20)
    finally:
        writer.stop()
    assert sorted(r.status_code for r in log_rows(engine)) == [201, 203]


def test_the_queue_is_bounded_and_drops_the_newest_rows_counted(engine, outage, caplog):
    writer = log_writer.LogWriter(outage.engine, max_queued=5)
    try:
        outage.start()
        for status in range(200, 208):
            writer.submit(record(status))
        assert writer.dropped == 3
        assert "dropped 1 new rows so far" in caplog.text
        outage.end()
        assert wait_for(lambda: log_count(engine) == 5, 20)
    finally:
        writer.stop()
    assert sorted(r.status_code for r in log_rows(engine)) == [200, 201, 202, 203, 204]


def test_a_stop_writes_what_waited_once_the_database_is_back(engine, outage):
    writer = log_writer.LogWriter(outage.engine)
    outage.start()
    writer.submit(record())
    assert wait_for(lambda: writer.retries >= 1, 15)
    threading.Timer(1.0, outage.end).start()
    writer.stop()  # retries for up to LOG_STOP_RETRY_S: the database is back after about a second
    assert log_count(engine) == 1


def test_a_stop_during_an_outage_writes_a_backlog_of_several_batches(engine, outage):
    writer = log_writer.LogWriter(outage.engine)
    outage.start()
    for _ in range(3 * log_writer.LOG_BATCH_MAX_ROWS + 7):
        writer.submit(record())
    assert wait_for(lambda: writer.retries >= 1, 15)
    threading.Timer(1.0, outage.end).start()
    writer.stop()
    assert log_count(engine) == 3 * log_writer.LOG_BATCH_MAX_ROWS + 7
    assert writer.dropped == 0


def test_the_writer_survives_its_connections_being_terminated(engine, outage):
    if engine.dialect.name != "postgresql":
        pytest.skip("terminating server connections is a PostgreSQL matter")
    writer = log_writer.LogWriter(outage.engine)
    try:
        writer.submit(record())
        assert wait_for(lambda: log_count(engine) == 1)
        killed = terminate_other_connections(engine)
        assert killed >= 1
        for _ in range(10):
            writer.submit(record())
        assert wait_for(lambda: log_count(engine) == 11, 20)
        assert writer.dropped == 0
    finally:
        writer.stop()


def test_outage_errors_are_told_from_bad_rows(engine, outage):
    outage.start()
    try:
        with pytest.raises(Exception) as away, outage.engine.begin() as connection:
            connection.execute(text("CREATE TABLE outage_probe (x integer)"))
        assert is_database_outage(away.value)
    finally:
        outage.end()
    with pytest.raises(Exception) as bad, engine.begin() as connection:
        connection.execute(text("SELECT no_such_column FROM logs"))
    assert not is_database_outage(bad.value)


# --- the API under an outage ---------------------------------------------------------------------


@pytest.fixture
def proxied_server(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ApiServer, TcpCut]]:
    """The API on PostgreSQL through a TcpCut."""
    if engine.dialect.name != "postgresql":
        pytest.skip("cutting the connection to the database server is a PostgreSQL matter")
    cut = TcpCut(engine.url.port or 5432)
    url = engine.url.set(host="127.0.0.1", port=cut.port)
    monkeypatch.setenv("MINDROUTE_DATABASE_URL", url.render_as_string(hide_password=False))
    config.get_settings.cache_clear()
    monkeypatch.setattr(mr_db, "_engine", None)
    admission.clear_route_cache()
    running = ApiServer().start()
    yield running, cut
    if cut.is_cut:
        cut.restore()
    running.stop()
    admission.dispose_read_engines()
    if mr_db._engine is not None:
        mr_db._engine.dispose()
    cut.close()


def test_admission_without_a_database_answers_a_json_503_logged_once_it_is_back(engine, proxied_server, request):
    server, cut = proxied_server
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, ["test-model"], grant_to=account.user_id)
    assert post(server, account.key, chat("Fake/test-model")).status_code == 200
    assert wait_for(lambda: log_count(engine) == 1)
    cut.cut()
    refused = post(server, account.key, chat("Fake/test-model"))
    error = assert_error(refused, 503, "MindRoute's database is unavailable; retry")
    assert error["type"] == "server_error"
    assert refused.headers["retry-after"] == "1"
    assert account.key not in refused.text
    models = httpx.get(f"{server.url}/v1/models", headers={"authorization": f"Bearer {account.key}"}, timeout=10)
    assert models.status_code == 503 and models.json()["error"]["type"] == "server_error"
    time.sleep(0.5)  # the writer tries, fails, keeps the row
    assert log_count(engine) == 1
    cut.restore()
    rows = logged(engine, 2) if wait_for(lambda: log_count(engine) == 2, 20) else log_rows(engine)
    assert [r.status_code for r in rows] == [200, 503]
    assert rows[1].error_message == "MindRoute's database is unavailable; retry"
    assert post(server, account.key, chat("Fake/test-model")).status_code == 200
    assert wait_for(lambda: log_count(engine) == 3, 20)


def test_a_sqlite_write_lock_past_the_busy_timeout_holds_up_no_call_and_drops_no_row(engine, server, request):
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, ["test-model"], grant_to=account.user_id)
    assert post(server, account.key, chat("Fake/test-model")).status_code == 200
    assert wait_for(lambda: log_count(engine) == 1)
    with engine.begin() as connection:  # lastUsedAt is due again on the next call
        connection.execute(update(ApiKey).values(last_used_at=utcnow() - timedelta(minutes=5)))
    failures = admission._touch_failures
    start, end = _sqlite_lock(engine.url.database)
    start()  # held for 12 s: longer than the app's busy timeout (10 s)
    try:
        for _ in range(5):
            began = time.monotonic()
            answer = post(server, account.key, chat("Fake/test-model"))
            assert answer.status_code == 200, answer.text
            assert time.monotonic() - began < 3  # neither the Logs row nor lastUsedAt waits for the lock
        time.sleep(12 - 5 * 0.05)
        assert admission._touch_failures == failures + 1  # lastUsedAt failed behind the calls, quietly
    finally:
        end()
    assert wait_for(lambda: log_count(engine) == 6, 30), log_count(engine)


def test_a_call_answered_while_the_database_is_away_keeps_its_row(engine, proxied_server, request):
    """The PostgreSQL restart of issue #13: a call admitted before the database went away is answered
    while it is away, and its row is written once it is back."""
    server, cut = proxied_server
    target = make_target(request, "openai")
    account = add_account(engine)
    add_provider(engine, "Fake", "openai", target.server, target.key, ["slow"], grant_to=account.user_id)
    answers: list[httpx.Response] = []
    call = threading.Thread(target=lambda: answers.append(post(server, account.key, chat("Fake/slow"))))
    call.start()
    assert wait_for(lambda: len(target.server.fake.requests) == 1, 10)  # admitted, now waiting on the provider
    cut.cut()
    call.join(30)
    [answer] = answers
    assert answer.status_code != 503  # answered by the provider's outcome, not refused
    time.sleep(0.5)
    assert log_count(engine) == 0  # the row waits for the database
    cut.restore()
    assert wait_for(lambda: log_count(engine) == 1, 20)
    [row] = log_rows(engine)
    assert row.status_code == answer.status_code
    assert row.user_id == account.user_id
