"""Log lines, metrics and readiness as an operator reads them: JSON lines with request ids and no keys, counters
that match the calls made, a registry a client cannot grow, several workers added up, readiness that says why."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import URL

from mindroute.config import PROJECT_ROOT
from mindroute.db import downgrade, make_engine, upgrade
from mindroute.observability import health, logs, metrics
from mindroute.services.call_log import CallRecord

both = pytest.mark.parametrize("fresh_db_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    yield stream
    root.handlers[:] = before[0]
    root.setLevel(before[1])


def test_json_lines_carry_the_request_id_and_never_a_key(log_stream) -> None:
    logs.configure("json", "info", stream=log_stream)
    token = logs.set_request_id("req-123")
    try:
        logging.getLogger("mindroute.test").warning(
            "upstream said %s", "bad key sk-proj-abcdefghijklmnopqrstuvwxyz123456"
        )
    finally:
        logs.reset_request_id(token)
    logging.getLogger("mindroute.test").info("outside a request")
    first, second = (json.loads(line) for line in log_stream.getvalue().splitlines())
    assert first["level"] == "warning" and first["logger"] == "mindroute.test"
    assert first["request_id"] == "req-123"
    assert "sk-proj" not in first["message"] and "[redacted]" in first["message"]
    assert "request_id" not in second
    assert first["time"].endswith("+00:00")


def test_plain_lines_and_configure_twice_keeps_one_handler(log_stream) -> None:
    logs.configure("plain", "info", stream=log_stream)
    logs.configure("plain", "info", stream=log_stream)
    token = logs.set_request_id("abc")
    try:
        logging.getLogger("mindroute.x").info("hello")
    finally:
        logs.reset_request_id(token)
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("INFO mindroute.x [abc]: hello")


def test_a_bad_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError, match="plain, json"):
        logs.configure("xml")
    with pytest.raises(ValueError, match="debug, info"):
        logs.configure("plain", "loud")


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-123_x.y:z", True), ("", False), (None, False), ("a" * 129, False), ("bad id", False), ("x\r\ny", False)],
)
def test_a_client_request_id_is_kept_only_when_sane(sent, kept) -> None:
    got = logs.accept_request_id(sent)
    assert (got == sent) is kept
    if not kept:
        assert len(got) == 32 and int(got, 16) >= 0


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _record(**overrides) -> CallRecord:
    base = {
        "user_id": None,
        "provider_id": uuid.uuid4(),
        "model": "gpt-test",
        "request": None,
        "status_code": 200,
        "duration_ms": 42,
        "source": "api",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cost_usd": 0.002,
    }
    return CallRecord(**(base | overrides))


def test_calls_are_counted_from_their_records() -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    metrics.name_providers_with(lambda _id: "Prov")
    try:
        labels = {"source": "api", "request_type": "chat", "provider": "Prov", "model": model}
        metrics.observe_call(_record(model=model))
        metrics.observe_call(_record(model=model))
        metrics.observe_call(
            _record(
                model=model,
                status_code=502,
                prompt_tokens=None,
                completion_tokens=None,
                total_tokens=None,
                cost_usd=None,
            )
        )
        metrics.observe_call(_record(model=model, cost_usd=None))  # tokens but no price
    finally:
        metrics.name_providers_with(lambda _id: None)
    assert _sample("mindroute_requests_total", **labels, status="200") == 3
    assert _sample("mindroute_requests_total", **labels, status="502") == 1
    assert _sample("mindroute_errors_total", **labels, status="502") == 1
    assert _sample("mindroute_errors_total", **labels, status="200") == 0
    assert _sample("mindroute_tokens_total", provider="Prov", model=model, kind="prompt") == 30
    assert _sample("mindroute_tokens_total", provider="Prov", model=model, kind="completion") == 15
    assert _sample("mindroute_cost_usd_total", provider="Prov", model=model) == pytest.approx(0.004)
    assert _sample("mindroute_unpriced_calls_total", provider="Prov", model=model) == 1
    assert _sample("mindroute_request_duration_seconds_count", **labels) == 4
    assert _sample("mindroute_request_duration_seconds_bucket", **labels, le="0.05") == 4
    assert _sample("mindroute_request_duration_seconds_bucket", **labels, le="0.025") == 0
    text, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    assert f'model="{model}"'.encode() in text


def test_a_label_from_outside_cannot_grow_without_bound() -> None:
    label = metrics._BoundedLabel(limit=3)
    assert [label(f"m{i}") for i in range(5)] == ["m0", "m1", "m2", "other", "other"]
    assert label("m1") == "m1"
    assert label("x" * 500) == "other"


def test_limit_refusals_and_log_writer_gauges() -> None:
    before = _sample("mindroute_limit_refusals_total", kind="budget")
    metrics.count_limit_refusal("budget")
    assert _sample("mindroute_limit_refusals_total", kind="budget") == before + 1
    metrics.set_log_writer_state(7, 0.25)
    assert _sample("mindroute_log_writer_queue_rows") == 7
    assert _sample("mindroute_log_writer_lag_seconds") == 0.25


_WORKER = """
import sys, uuid
from mindroute.observability import metrics
from mindroute.services.call_log import CallRecord
for _ in range(int(sys.argv[1])):
    metrics.observe_call(CallRecord(user_id=None, provider_id=None, model="shared", request=None,
                                    status_code=200, duration_ms=5, source="api"))
"""


def test_multiprocess_mode_adds_up_every_worker(tmp_path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", _WORKER, str(count)], env=env, cwd=PROJECT_ROOT, check=True, timeout=60)
    reader = "from mindroute.observability import metrics; import sys; sys.stdout.buffer.write(metrics.render()[0])"
    out = subprocess.run(
        [sys.executable, "-c", reader], env=env, cwd=PROJECT_ROOT, check=True, capture_output=True, timeout=60
    ).stdout.decode()
    line = next(line for line in out.splitlines() if line.startswith("mindroute_requests_total{") and "shared" in line)
    assert line.endswith(" 7.0")


@both
def test_ready_names_what_is_wrong(fresh_db_url: URL) -> None:
    engine = make_engine(fresh_db_url)
    try:
        upgrade(engine, "head")
        ok = health.check_ready(engine, log_queue=(0, 1000))
        assert ok.ready and ok.body() == {"status": "ok", "database": "ok", "migrations": "ok", "log_writer": "ok"}

        behind = health.check_ready(engine, log_queue=(600, 1000))
        assert not behind.ready and behind.checks["log_writer"] == "behind: 600 rows waiting"

        downgrade(engine, "0008")
        old = health.check_ready(engine)
        assert not old.ready
        assert old.checks["migrations"].startswith("at 0008, code at ")
    finally:
        engine.dispose()


def test_ready_when_the_database_is_gone(tmp_path) -> None:
    engine = make_engine(URL.create("postgresql+psycopg", username="postgres", host="127.0.0.1", port=1, database="x"))
    try:
        down = health.check_ready(engine)
    finally:
        engine.dispose()
    assert not down.ready
    assert down.body() == {"status": "error", "database": "unreachable", "migrations": "unknown"}
