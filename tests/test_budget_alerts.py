"""Budget alerts on both databases: one row per crossing (warning, spent) and period, one row from writers
racing, the admin list, and the webhook posted once to a local HTTP server, a failing one never felt by
the call."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from mindroute import config
from mindroute.db import make_engine, transaction
from mindroute.errors import PermissionDenied
from mindroute.models import BudgetAlert, BudgetSpend, Log, utcnow
from mindroute.services import budget_alerts, log_writer
from mindroute.services import limit_rules as lr
from mindroute.services.call_log import write_call_log, write_call_logs
from tests.limit_helpers import free_port
from tests.test_budget_spend import _get, a_call, make_world, set_budget

TOKEN = "s3cret-webhook-token"


class Hook:
    """A webhook receiver on 127.0.0.1: records each POST's JSON; answers `status` after `delay_s`."""

    def __init__(self, status: int = 204, delay_s: float = 0.0) -> None:
        self.status, self.delay_s = status, delay_s
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length))
                time.sleep(hook.delay_s)
                hook.bodies.append(body)
                hook.paths.append(self.path)
                self.send_response(hook.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token={TOKEN}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def world(engine: Engine) -> dict[str, uuid.UUID]:
    return make_world(engine)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    receiver = Hook()
    monkeypatch.setenv(budget_alerts.WEBHOOK_URL_ENV, receiver.url)
    config.get_settings.cache_clear()  # settings are read once per process
    yield receiver
    receiver.close()


def alerts(engine: Engine) -> list[BudgetAlert]:
    with transaction(engine) as session:
        return list(session.scalars(select(BudgetAlert).order_by(BudgetAlert.created_at, BudgetAlert.level)))


def crossings(engine: Engine) -> list[tuple[str, str, str]]:
    return sorted((a.level, a.metric, a.period_key) for a in alerts(engine))


NOON = datetime(2026, 12, 3, 12)
DAY = "day:UTC:2026-12-03"


def test_warning_then_spent_each_once_per_period(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=1, budget_tokens=1000, period="day")
    write_call_log(engine, a_call(engine, world, NOON, cost=0.5))  # 50 %, 150 tokens
    assert crossings(engine) == []
    write_call_log(engine, a_call(engine, world, NOON, cost=0.35))  # 85 %: the warning
    assert crossings(engine) == [("warning", "usd", DAY)]
    write_call_log(engine, a_call(engine, world, NOON, cost=0.1))  # 95 %: nothing new
    write_call_logs(engine, [a_call(engine, world, NOON, cost=0.1), a_call(engine, world, NOON, cost=0.1)])  # 115 %
    assert crossings(engine) == [("spent", "usd", DAY), ("warning", "usd", DAY)]
    write_call_log(engine, a_call(engine, world, NOON, tokens=(400, 0), cost=0.0))  # tokens 750 + 400: both at once
    write_call_log(engine, a_call(engine, world, NOON, cost=0.1))  # past both again: nothing new
    assert crossings(engine) == [
        ("spent", "tokens", DAY),
        ("spent", "usd", DAY),
        ("warning", "tokens", DAY),
        ("warning", "usd", DAY),
    ]
    [spent] = [a for a in alerts(engine) if (a.level, a.metric) == ("spent", "usd")]
    assert (spent.limit_target, spent.budget, spent.webhook_status) == (lr.user_target(world["ann"]), 1.0, None)
    assert spent.spent == pytest.approx(1.15)
    # The next day is a new period: its own crossings.
    write_call_log(engine, a_call(engine, world, NOON + timedelta(days=1), cost=0.9))
    assert ("warning", "usd", "day:UTC:2026-12-04") in crossings(engine)


def test_the_default_rule_alerts_per_user(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    set_budget(engine, lr.DEFAULT_TARGET, budget_usd=1, period="day", warn_percent=100)
    write_call_log(engine, a_call(engine, world, NOON, cost=1.0))
    write_call_log(engine, a_call(engine, world, NOON, cost=1.0, user="bob"))
    targets = sorted(a.limit_target for a in alerts(engine))
    assert targets == sorted(f"default:{lr.user_target(world[u])}" for u in ("ann", "bob"))
    assert {a.level for a in alerts(engine)} == {"spent"}  # a 100 % warning is the spent alert alone


def test_concurrent_writers_make_one_row(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    set_budget(engine, lr.key_target(world["key"]), budget_usd=1, period="day")
    write_call_log(engine, a_call(engine, world, NOON, key=True, cost=0.7))
    writers = 6
    engines = [make_engine(engine.url) for _ in range(2)]
    records = [a_call(engine, world, NOON, key=True, cost=0.2) for _ in range(writers)]
    start = threading.Barrier(writers)

    def write(index: int) -> None:
        start.wait()
        assert write_call_log(engines[index % 2], records[index]) is not None

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for other in engines:
        other.dispose()
    assert crossings(engine) == [("spent", "usd", DAY), ("warning", "usd", DAY)]
    with transaction(engine) as session:
        row = session.get(BudgetSpend, (lr.key_target(world["key"]), DAY))
        assert row is not None and row.spent_usd == pytest.approx(0.7 + 0.2 * writers)  # no lost update


def test_the_webhook_is_posted_once_with_its_json(
    engine: Engine, world: dict[str, uuid.UUID], hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=1, period="day")
    with caplog.at_level(logging.DEBUG):
        write_call_log(engine, a_call(engine, world, NOON, cost=0.85))
        budget_alerts.wait_for_deliveries()
    assert not [r for r in caplog.records if TOKEN in r.getMessage()]  # httpx logs URLs at INFO: not this one
    [alert] = alerts(engine)
    assert (alert.webhook_status, alert.webhook_error) == ("sent", None) and alert.webhook_at is not None
    assert hook.bodies == [
        {
            "event": "budget.warning",
            "id": str(alert.id),
            "target": lr.user_target(world["ann"]),
            "label": "the budget of ann",
            "period": DAY,
            "period_label": "the day of 2026-12-03 (UTC)",
            "level": "warning",
            "metric": "usd",
            "currency": "USD",
            "budget": 1.0,
            "spent": pytest.approx(0.85),
            "at": alert.created_at.isoformat(timespec="seconds") + "Z",
        }
    ]
    budget_alerts.deliver_pending(engine, [alert.id])  # claimed already: not again
    write_call_log(engine, a_call(engine, world, NOON, cost=0.05))  # still in the warning: no new alert
    budget_alerts.wait_for_deliveries()
    assert len(hook.bodies) == 1
    write_call_log(engine, a_call(engine, world, NOON, cost=0.5))
    budget_alerts.wait_for_deliveries()
    assert [b["event"] for b in hook.bodies] == ["budget.warning", "budget.spent"]
    assert hook.paths == [f"/hook?token={TOKEN}"] * 2


def _failing(engine: Engine, world: dict[str, uuid.UUID], monkeypatch: pytest.MonkeyPatch, url: str) -> BudgetAlert:
    monkeypatch.setenv(budget_alerts.WEBHOOK_URL_ENV, url)
    config.get_settings.cache_clear()  # settings are read once per process
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=1, period="day")
    log_id = write_call_log(engine, a_call(engine, world, NOON, cost=2.0))
    assert log_id is not None  # the call's row is written whatever the webhook does
    budget_alerts.wait_for_deliveries()
    with transaction(engine) as session:
        assert session.get(Log, log_id) is not None
    found = alerts(engine)
    assert {a.webhook_status for a in found} == {"failed"}
    for alert in found:
        assert TOKEN not in (alert.webhook_error or "") and "127.0.0.1" not in (alert.webhook_error or "")
    return found[0]


def test_a_failing_webhook_is_marked_failed(
    engine: Engine, world: dict[str, uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Hook(status=500)
    try:
        alert = _failing(engine, world, monkeypatch, receiver.url)
    finally:
        receiver.close()
    assert alert.webhook_error == "the webhook answered HTTP 500"
    assert len(receiver.bodies) == 2  # warning and spent, each once, no retry


def test_an_unreachable_webhook_is_marked_failed(
    engine: Engine, world: dict[str, uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    alert = _failing(engine, world, monkeypatch, f"http://127.0.0.1:{free_port()}/hook?token={TOKEN}")
    assert alert.webhook_error == "could not reach the webhook (ConnectError)"


def test_a_slow_webhook_never_holds_the_call(
    engine: Engine, world: dict[str, uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Hook(delay_s=2.0)
    monkeypatch.setenv(budget_alerts.WEBHOOK_URL_ENV, receiver.url)
    config.get_settings.cache_clear()  # settings are read once per process
    try:
        set_budget(engine, lr.user_target(world["ann"]), budget_usd=1, period="day")
        started = time.monotonic()
        assert write_call_log(engine, a_call(engine, world, NOON, cost=0.9)) is not None
        assert time.monotonic() - started < 1.0
        budget_alerts.wait_for_deliveries()
        assert [a.webhook_status for a in alerts(engine)] == ["sent"]
    finally:
        receiver.close()


def test_the_log_writer_posts_after_its_batch_and_resumes_pending_rows(
    engine: Engine, world: dict[str, uuid.UUID], hook: Hook
) -> None:
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=1, period="day")
    with transaction(engine) as session:  # left 'pending' by a process that ended before posting it
        session.add(
            BudgetAlert(
                limit_target=lr.provider_target(world["provider"]),
                period_key="total",
                level="spent",
                metric="tokens",
                budget=10.0,
                spent=12.0,
                webhook_status="pending",
            )
        )
    writer = log_writer.start_log_writer(engine)
    try:
        writer.submit(a_call(engine, world, NOON, cost=0.9))
    finally:
        log_writer.stop_log_writer()
    deadline = time.monotonic() + 10
    while len(hook.bodies) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(b["event"] for b in hook.bodies) == ["budget.spent", "budget.warning"]
    assert {a.webhook_status for a in alerts(engine)} == {"sent"}
    [resumed] = [b for b in hook.bodies if b["target"].startswith("provider:")]
    assert (resumed["label"], resumed["metric"], "currency" in resumed) == (
        "the organisation's budget on OpenAI",
        "tokens",
        False,
    )


def test_a_bad_webhook_url_is_logged_once_and_not_used(
    engine: Engine, world: dict[str, uuid.UUID], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bad = f"http://alice:pa55word@127.0.0.1:9/hook/{uuid.uuid4()}"  # a value not seen before: checked anew
    monkeypatch.setenv(budget_alerts.WEBHOOK_URL_ENV, bad)
    config.get_settings.cache_clear()  # settings are read once per process
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=1, period="day")
    with caplog.at_level(logging.ERROR, logger="mindroute.budget_alerts"):
        write_call_log(engine, a_call(engine, world, NOON, cost=0.9))
        write_call_log(engine, a_call(engine, world, NOON, cost=0.9))
    assert [a.webhook_status for a in alerts(engine)] == [None, None]
    messages = [r.getMessage() for r in caplog.records if r.name == "mindroute.budget_alerts"]
    assert len(messages) == 1 and "credentials" in messages[0] and "pa55word" not in messages[0]


def test_admins_list_the_current_alerts_with_names(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    now = utcnow().replace(microsecond=0)
    set_budget(engine, lr.key_target(world["key"]), budget_usd=1, period="day", timezone="Asia/Kolkata")
    set_budget(engine, lr.provider_target(world["provider"]), budget_tokens=100, period="total")
    write_call_log(engine, a_call(engine, world, now, key=True, cost=0.9))
    write_call_log(engine, a_call(engine, world, now - timedelta(days=3), key=True, cost=0.9))  # an old period
    with Session(engine) as session:
        admin = _get(session, world["admin"])
        current = budget_alerts.list_alerts(session, admin)
        key_label = "the budget of API key 'ci' of ann (set by an administrator)"
        provider_label = "the organisation's budget on OpenAI"
        assert sorted((a.event, a.metric, a.label) for a in current) == [
            ("budget.spent", "tokens", provider_label),
            ("budget.warning", "tokens", provider_label),
            ("budget.warning", "usd", key_label),
        ]
        assert [a.created_at for a in current] == sorted((a.created_at for a in current), reverse=True)
        key_alert = next(a for a in current if a.metric == "usd")
        assert key_alert.period.startswith("the day of ") and key_alert.period.endswith("(Asia/Kolkata)")
        assert len(budget_alerts.list_alerts(session, admin, current_only=False)) == 4
        assert budget_alerts.list_alerts(session, admin, since=now + timedelta(hours=1)) == []
        assert len(budget_alerts.list_alerts(session, None, limit=1)) == 1  # the CLI
        with pytest.raises(PermissionDenied):
            budget_alerts.list_alerts(session, _get(session, world["ann"]))


def test_a_budget_lowered_under_its_spend_warns_at_the_next_call(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=10, period="day")
    write_call_log(engine, a_call(engine, world, NOON, cost=5.0))
    set_budget(engine, lr.user_target(world["ann"]), budget_usd=6, period="day")  # 83 % already, no call yet
    assert crossings(engine) == []
    write_call_log(engine, a_call(engine, world, NOON, cost=0.01))
    assert crossings(engine) == [("warning", "usd", DAY)]
