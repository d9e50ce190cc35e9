"""`python -m bench api` end to end on a small load: its own upstream and a real API process."""

from __future__ import annotations

import json

import pytest

from bench import api as bench
from bench import wrk


def test_the_api_bench_prints_its_figures_and_every_call_is_logged(capsys) -> None:
    assert bench.main(["api", "--requests", "60", "--concurrency", "4", "--delay-ms", "5"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["requests"] == 60 and figures["concurrency"] == 4 and figures["database"] == "sqlite"
    assert figures["failures"] == 0
    assert figures["log_rows"] == 60  # written behind the answers, all in after the graceful stop
    assert figures["rps"] > 0 and figures["direct_rps"] > 0
    for side in ("mindroute", "direct"):
        p50, p95, p99 = (figures[side][f"p{q}_ms"] for q in (50, 95, 99))
        assert 5 <= p50 <= p95 <= p99  # the upstream's delay is in every call
    assert figures["p50_overhead_ms"] == round(figures["mindroute"]["p50_ms"] - figures["direct"]["p50_ms"], 2)
    assert 0 <= figures["header_overhead_ms"]["p50"] <= figures["header_overhead_ms"]["p99"]
    for name in ("cpu_ms_per_request", "load_cpu_ms_per_request"):
        assert figures[name] > 0, name
    # /proc counts in 10 ms ticks: 60 calls to the upstream (~0.06 ms each) may not reach one.
    assert figures["upstream_cpu_ms_per_request"] >= 0
    assert 0 < figures["machine_busy_cores"] <= 64


def test_the_api_bench_serves_app_py_as_readme_says_with_entry_app(capsys) -> None:
    assert bench.main(["api", "--requests", "40", "--concurrency", "4", "--delay-ms", "5", "--entry", "app"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["entry"] == "app" and figures["requests"] == 40
    assert figures["failures"] == 0
    assert figures["log_rows"] == 40  # app.py's lifespan runs the log writer; SIGTERM writes what is queued
    assert 5 <= figures["mindroute"]["p50_ms"] <= figures["mindroute"]["p99_ms"]
    assert figures["header_overhead_ms"]["p50"] >= 0  # answered by the API itself, not a Streamlit page


def test_the_stream_bench_measures_the_time_to_the_first_byte_and_logs_every_stream(capsys) -> None:
    assert bench.main(["api", "--requests", "40", "--concurrency", "4", "--delay-ms", "5", "--stream"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["stream"] is True and figures["requests"] == 40
    assert figures["failures"] == 0  # every stream, both ways, ended with data: [DONE]
    assert figures["log_rows"] == 40
    for side in ("mindroute", "direct"):
        first, whole = figures["ttfb"][side], figures[side]
        assert 5 <= first["p50_ms"] <= first["p99_ms"]  # the first event comes after the upstream's delay
        assert first["p50_ms"] < whole["p50_ms"]  # the other events come a gap apart after it
    overhead = figures["ttfb"]["mindroute"]["p50_ms"] - figures["ttfb"]["direct"]["p50_ms"]
    assert figures["ttfb_p50_overhead_ms"] == round(overhead, 2)
    for name in ("ttfb_p99_overhead_ms", "p50_overhead_ms", "p99_overhead_ms", "rps", "cpu_ms_per_request"):
        assert isinstance(figures[name], float), name
    assert figures["upstream_gap_ms"] == bench.DEFAULT_GAP_MS


def test_the_upstream_streams_its_pieces_then_finish_usage_and_done() -> None:
    writes = bench._stream_events("bench-model")
    assert len(writes) == len(bench.STREAM_PIECES)  # one write per piece, the ending rides on the last
    events = [e for w in writes for e in w.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == bench.STREAM_TEXT
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["total_tokens"] == 16


def test_the_limits_bench_runs_without_and_with_limits_side_by_side(capsys) -> None:
    argv = ["api", "--requests", "40", "--concurrency", "4", "--delay-ms", "5", "--limits"]
    assert bench.main(argv) == 0
    figures = json.loads(capsys.readouterr().out)
    without, with_ = figures["without_limits"], figures["with_limits"]
    assert (without["limits"], without["limit_rules"]) == (False, 0)
    assert (with_["limits"], with_["limit_rules"]) == (True, 2)  # the user's rule and the key's
    for run in (without, with_):
        assert run["failures"] == 0 and run["log_rows"] == 40  # limits that never refuse
        assert run["runs"] == 1 and len(run["rps_runs"]) == 1
    side = figures["side_by_side"]
    names = {"rps", "p50_overhead_ms", "p99_overhead_ms", "cpu_ms_per_request", "failures", "requests_sent", "log_rows"}
    assert set(side) == names
    assert side["rps"] == [without["rps"], with_["rps"]] and side["log_rows"] == [40, 40]
    assert side["requests_sent"] == [40, 40] and without["load"] == "python"


needs_wrk = pytest.mark.skipif(not wrk.available(), reason="wrk is not installed (apt-get install wrk)")


@needs_wrk
def test_the_wrk_load_sends_the_calls_from_wrk_and_every_call_sent_is_logged(capsys) -> None:
    argv = ["api", "--requests", "120", "--concurrency", "8", "--delay-ms", "5", "--load", "wrk", "--stream"]
    assert bench.main(argv) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["load"] == "wrk" and figures["requests"] == 120 and figures["failures"] == 0
    # wrk stops after 120 answers; the calls still in flight then, and the probe's, are logged too.
    calls = figures["probe_calls"]
    assert calls["mindroute"] >= 1 and calls["direct"] >= 1
    assert 120 + calls["mindroute"] <= figures["requests_sent"] <= 120 + 8 + calls["mindroute"]
    assert figures["log_rows"] == figures["requests_sent"]
    for side in ("mindroute", "direct"):
        assert 5 <= figures[side]["p50_ms"] <= figures[side]["p99_ms"]  # from wrk's distribution
        assert 5 <= figures["ttfb"][side]["p50_ms"] < figures[side]["p99_ms"]  # from the probe
    assert figures["rps"] > 0 and figures["load_cpu_ms_per_request"] > 0  # wrk's CPU counts as the load's


@needs_wrk
def test_the_wrk_script_sends_the_headers_and_checks_the_status_and_the_stream_end() -> None:
    script = wrk.script("/v1/chat/completions", b'{"model": "m"}', {"authorization": "Bearer k"}, 10, True)
    assert '["authorization"] = "Bearer k"' in script and '["content-type"] = "application/json"' in script
    assert "local share, stream = 10, true" in script and "status ~= 200" in script
    assert 'string.sub(answer, -14) ~= "data: [DONE]\\n\\n"' in script


def test_streams_with_limits_on_postgresql_set_the_rules_in_its_database(pg_server, capsys) -> None:
    from sqlalchemy import select

    from mindroute.db import make_engine, transaction
    from mindroute.models import Limit
    from tests.conftest import create_pg_database, drop_pg_database

    url = create_pg_database("mindroute_bench")
    try:
        argv = ["api", "--requests", "30", "--concurrency", "4", "--delay-ms", "5", "--stream", "--limits"]
        assert bench.main([*argv, "--database-url", url.render_as_string(hide_password=False)]) == 0
        figures = json.loads(capsys.readouterr().out)
        assert figures["with_limits"]["database"] == "postgresql" and figures["with_limits"]["stream"] is True
        assert figures["side_by_side"]["failures"] == [0, 0] and figures["side_by_side"]["log_rows"] == [30, 30]
        assert len(figures["side_by_side"]["ttfb_p50_overhead_ms"]) == 2
        engine = make_engine(url)
        with transaction(engine) as session:
            rules = list(session.scalars(select(Limit)))
        engine.dispose()
        assert sorted(rule.scope for rule in rules) == ["key", "user"]
        for rule in rules:
            assert (rule.rpm, rule.tpm, rule.budget_usd) == (10**8, 10**12, 10**6)
            assert (rule.period, rule.timezone) == ("month", "Asia/Kolkata")
    finally:
        drop_pg_database(url)


def test_runs_are_repeated_and_reported_as_medians() -> None:
    runs = [{"rps": 10.0, "name": "a", "inner": {"p50": 1}}, {"rps": 30.0, "name": "b", "inner": {"p50": 5}}]
    runs.append({"rps": 20.0, "name": "c", "inner": {"p50": 2}})
    assert bench._median(runs) == {"rps": 20.0, "name": "a", "inner": {"p50": 2}}
