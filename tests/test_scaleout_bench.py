"""The scale-out script with small numbers: two app processes and two API workers on one PostgreSQL agree on
sessions, revocations, limits, rollups and the audit trail (its throughput figures are read, not judged)."""

from __future__ import annotations

import json
import subprocess
import sys

from mindroute.config import PROJECT_ROOT


def test_two_apps_and_two_workers_agree(pg_server) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "scaleout",  # the command docs/deploy.md gives
            "--requests",
            "100",
            "--concurrency",
            "8",
            "--runs",
            "1",
            "--load",
            "python",  # the bench's own client: wrk's figures are for the measured runs, not this check
            "--database-url",
            pg_server,
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = json.loads(done.stdout)
    assert done.returncode == 0, result
    assert result["sessions"] == {"ok": True, "signed_in_on_a": True, "signed_out_on_b": True}
    assert (result["limits"]["admitted"], result["limits"]["refused_429"]) == (10, 30)
    assert result["revocation"]["answered_after_revocation"] == 0 or result["revocation"]["last_answer_after_s"] <= 1.0
    assert result["rollups"]["logs_rows"] == result["rollups"]["calls"] == result["rollups"]["hourly_rollup_requests"]
    assert result["audit"]["verify"].startswith("OK")
    assert result["throughput"]["workers_1"]["failures"] == result["throughput"]["workers_2"]["failures"] == 0
