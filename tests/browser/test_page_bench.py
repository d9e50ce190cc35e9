"""`python -m bench page usage` with small numbers: it fills a SQLite file, signs its administrator in,
measures the first view and every chart control once, and returns one JSON-able result (its figures are
read, not judged). It broke unnoticed once (an email domain the sign-up refuses): this keeps it running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from bench import page as page_bench
from tests.browser.conftest import REQUIRE_BROWSER

pytestmark = pytest.mark.browser

ROWS = 3_000


@pytest.fixture
def chromium() -> None:
    """Skips (or fails under MINDROUTE_REQUIRE_BROWSER=1) without Chromium or playwright, as the browser tests do."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "the playwright package is not installed"
    if problem is None and not Path(page_bench.CHROMIUM).exists():
        problem = f"no Chromium at {page_bench.CHROMIUM} (apt-get install chromium)"
    if problem:
        if REQUIRE_BROWSER:
            pytest.fail(problem + " (MINDROUTE_REQUIRE_BROWSER=1)")
        pytest.skip(problem)


def test_the_usage_page_bench_measures_every_control(tmp_path: Path, chromium) -> None:
    url = URL.create("sqlite", database=str(tmp_path / "page.db")).render_as_string()
    said: list[str] = []
    result = page_bench.run_bench("usage", ROWS, url, runs=1, log=said.append)

    assert json.loads(json.dumps(result)) == result
    assert (result["page"], result["database"], result["rows"], result["runs"]) == ("usage", "sqlite", ROWS, 1)
    assert result["first_view_ms"] > 0
    assert len(result["first_view_runs_ms"]) == 1
    assert set(result["controls_ms"]) == set(page_bench.CONTROLS)
    assert all(ms > 0 for ms in result["controls_ms"].values()), result["controls_ms"]
    assert result["slowest_control_ms"] == max(result["controls_ms"].values())
    assert any("3,000 calls" in line for line in said), said
