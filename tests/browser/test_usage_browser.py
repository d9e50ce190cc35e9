"""The Usage page on demo data in a real browser: the tiles show numbers, the plotly charts are drawn, a chart
control redraws its chart, and the charts take the light or the dark palette with the theme."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from mindroute.analytics.filter import preset_range
from mindroute.analytics.rollups import rebuild_rollups
from mindroute.cli.seed import seed_demo
from mindroute.db import transaction
from mindroute.models import Log
from mindroute.services.users import create_user
from mindroute.ui import charts
from tests.browser.test_auth_browser import ADMIN_EMAIL, ADMIN_PASSWORD, settle, sign_in

pytestmark = pytest.mark.browser

DEMO_ROWS = 3_000
DEMO_DAYS = 14
# Charts on the page at its defaults: tokens over time, the open chart tab (requests and errors) and the
# open "Top" tab; the other tabs draw theirs when opened.
CHARTS_DRAWN_MIN = 3

# A chart counts as drawn when plotly put its SVG on the page with at least one trace that has marks.
DRAWN_CHARTS_JS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot')).filter(plot => {
    if (!plot.offsetParent) return false;  // in a hidden tab
    const marks = plot.querySelectorAll('.main-svg g.trace path, .main-svg g.trace .point');
    return Array.from(marks).some(m => (m.getAttribute('d') || '').length > 3);
}).length
"""


def test_usage_page_draws_the_charts_on_demo_data(server, browser_context) -> None:
    summary = seed_demo(server.engine, rows=DEMO_ROWS, days=DEMO_DAYS, seed=20261129, progress=False)
    assert summary.logs == DEMO_ROWS
    rebuild_rollups(server.engine, progress=False)
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")

    page = browser_context.new_page()
    sign_in(page, server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto(f"{server.base_url}/usage")
    settle(page)
    page.get_by_role("heading", name="Usage").first.wait_for()

    # The tiles: numbers, and the request count is that of the default range (the last 7 of the browser's days).
    zone = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    start, _end = preset_range("7d", zone)
    with transaction(server.engine) as session:
        expected = session.scalar(select(func.count()).select_from(Log).where(Log.created_at >= start))
    assert 0 < expected < DEMO_ROWS
    metrics = page.locator("[data-testid='stMetric']")
    metrics.first.wait_for()
    values = {
        metrics.nth(i).locator("[data-testid='stMetricLabel']").inner_text().strip(): metrics.nth(i)
        .locator("[data-testid='stMetricValue']")
        .inner_text()
        .strip()
        for i in range(metrics.count())
    }
    assert values["Requests"] == f"{expected:,}"
    assert re.fullmatch(r"[\d,]+ ms", values["p95 latency"]), values
    assert re.fullmatch(r"[\d,]+", values["Total tokens"]), values  # in full, with separators
    assert re.fullmatch(r"\d+\.\d%", values["Error rate"]), values
    numbered = [v for v in values.values() if re.search(r"\d", v)]
    assert len(numbered) >= 5, values

    # The charts: plotly drew each one (lazily loaded, so wait for them).
    page.wait_for_function(f"({DRAWN_CHARTS_JS})() >= {CHARTS_DRAWN_MIN}", timeout=60_000)
    assert page.evaluate(DRAWN_CHARTS_JS) >= CHARTS_DRAWN_MIN
    assert page.locator(".js-plotly-plot .main-svg").count() >= CHARTS_DRAWN_MIN
    bars = page.locator(".js-plotly-plot g.trace.bars path")
    lines = page.locator(".js-plotly-plot g.trace.scatter path.js-line")
    assert bars.count() > 20 and lines.count() >= 2  # stacked bars over 7 days, requests and errors
    # No value cut off with an ellipsis at 1400 px.
    assert not any(v.endswith("…") for v in values.values()), values

    # A chart tab opens its chart: the status codes, by class.
    page.get_by_role("tab", name="Status codes").click()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot .legendtext')).some(t => t.textContent === '5xx')"
    )
    settle(page)
    # The request-type filter beside the others, and the breakdown by request type.
    request_type = page.locator("[data-testid='stMultiSelect']").filter(has_text="Request type")
    assert request_type.count() == 1 and request_type.is_visible()
    assert page.get_by_role("radio", name="Request type").count() == 1
    assert "Traceback" not in server.log()


FIRST_BAR_FILL_JS = """
() => {
    const bar = document.querySelector('.js-plotly-plot g.trace.bars path');
    return bar ? getComputedStyle(bar).fill : null;
}
"""


def rgb(hex_colour: str) -> str:
    value = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(value[i : i + 2], 16) for i in (0, 2, 4)))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_usage_charts_follow_the_theme(server, browser_context, scheme: str) -> None:
    seed_demo(server.engine, rows=600, days=DEMO_DAYS, seed=20261204, progress=False)
    rebuild_rollups(server.engine, progress=False)
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
    context = browser_context.browser.new_context(color_scheme=scheme, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(60_000)
    try:
        page = context.new_page()
        sign_in(page, server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
        page.goto(f"{server.base_url}/usage")
        settle(page)
        page.wait_for_function(f"({DRAWN_CHARTS_JS})() >= {CHARTS_DRAWN_MIN}", timeout=60_000)
        background = page.evaluate(
            "getComputedStyle(document.querySelector(\"[data-testid='stApp']\")).backgroundColor"
        )
        dark_page = sum(int(v) for v in re.findall(r"\d+", background)[:3]) < 3 * 128
        assert dark_page == (scheme == "dark"), background
        # The first provider's bars in the theme's first palette colour: never dark blue on black.
        assert page.evaluate(FIRST_BAR_FILL_JS) == rgb(charts.PALETTES[scheme][0])
        assert "Traceback" not in server.log()
    finally:
        context.close()
