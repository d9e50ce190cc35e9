"""`python -m bench api` end to end on a small load: its own upstream and a real API process."""

from __future__ import annotations

import json

from bench import api as bench


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
    for name in ("cpu_ms_per_request", "upstream_cpu_ms_per_request", "load_cpu_ms_per_request"):
        assert figures[name] > 0, name
    assert 0 < figures["machine_busy_cores"] <= 64


def test_the_api_bench_serves_app_py_as_readme_says_with_entry_app(capsys) -> None:
    assert bench.main(["api", "--requests", "40", "--concurrency", "4", "--delay-ms", "5", "--entry", "app"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["entry"] == "app" and figures["requests"] == 40
    assert figures["failures"] == 0
    assert figures["log_rows"] == 40  # app.py's lifespan runs the log writer; SIGTERM writes what is queued
    assert 5 <= figures["mindroute"]["p50_ms"] <= figures["mindroute"]["p99_ms"]
    assert figures["header_overhead_ms"]["p50"] >= 0  # answered by the API itself, not a Streamlit page
