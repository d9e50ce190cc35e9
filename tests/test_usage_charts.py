"""The Usage page's chart shapes on both databases: status classes, top groups and "other", unpriced models,
and the tables' one format for the page and the CSV; the numbers agree between tiles, charts and breakdowns."""

from __future__ import annotations

import io
from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine

from mindroute.analytics.filter import UsageFilter
from mindroute.analytics.shapes import OTHER, status_class, with_other
from mindroute.services.usage import usage_page
from mindroute.ui import charts, usage_view
from tests import test_analytics
from tests.test_analytics import T0, World, expected, tiles

world = test_analytics.world  # the fixture: ~3000 calls over 12 days, rollups rebuilt

WINDOW = UsageFilter(T0, T0 + timedelta(days=12), timezone="Asia/Seoul")


def test_status_codes_come_by_class_with_their_share(world: World, engine: Engine) -> None:
    page = usage_page(engine, world.admin, WINDOW)
    want = expected(world.rows, WINDOW.start, WINDOW.end)
    codes = page.status_codes
    assert set(codes["status_class"]) == {"2xx", "4xx", "5xx", "unknown"}
    by_code = dict(zip(codes["status_label"], codes["requests"], strict=True))
    for label, status in (("200", 200), ("429", 429), ("499", 499), ("500", 500), ("unknown", None)):
        assert by_code[label] == sum(1 for r in want["rows"] if r["status_code"] == status), label
    assert codes["share"].sum() == pytest.approx(1.0)
    errors = int(codes.loc[codes["status_class"].isin(["4xx", "5xx"]), "requests"].sum())
    assert errors == want["errors"] == round(tiles(page)["error_rate"] * want["requests"])
    # The figure: one trace per class, so a class keeps one colour, and the error classes never the 2xx one.
    fig = charts.status_classes(codes, "dark")
    colours = {trace.name: trace.marker.color for trace in fig.data}
    assert colours["5xx"] == charts.STATUS_CLASS_COLOURS["dark"]["5xx"] != colours["2xx"]
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.title.text == "requests (log scale)"


def test_status_class_names() -> None:
    assert [status_class(s) for s in (200, 204, 404, 429, 503, None)] == ["2xx", "2xx", "4xx", "4xx", "5xx", "unknown"]


def test_the_top_groups_and_the_rest_as_other_keep_the_total() -> None:
    frame = pd.DataFrame(
        {
            "start": [1, 1, 1, 1, 2, 2, 2, 2],
            "group": ["a", "b", "c", "d", "a", "b", "c", "d"],
            "tokens": [100, 50, 5, 1, 100, 60, 4, 2],
        }
    )
    out = with_other(frame, "group", "tokens", 2, keep=["start"])
    assert list(dict.fromkeys(out["group"])) == ["a", "b", OTHER]  # largest first, "other" last
    assert out.loc[out["group"] == OTHER, "tokens"].tolist() == [6, 6]
    assert out["tokens"].sum() == frame["tokens"].sum()
    # One group too many is shown by its name, never as an "other" of one.
    assert OTHER not in set(with_other(frame, "group", "tokens", 3, keep=["start"])["group"])


def test_the_latency_distribution_never_repeats_a_colour(world: World, engine: Engine) -> None:
    page = usage_page(engine, world.admin, WINDOW)
    want = expected(world.rows, WINDOW.start, WINDOW.end)
    fig, shown = charts.latency_distribution(page.latency_histogram, "light")
    assert shown["calls"].sum() == len(want["durations"])  # every call with a duration, binned
    colours = [trace.line.color for trace in fig.data]
    assert len(colours) == len(set(colours))
    assert fig.layout.xaxis.type == "log" and "1 s" in fig.layout.xaxis.ticktext
    many = pd.DataFrame({"model": [f"m{i}" for i in range(15)], "latency_ms": [100.0] * 15, "calls": range(1, 16)})
    fig, shown = charts.latency_distribution(many, "dark")
    names = [trace.name for trace in fig.data]
    assert len(names) == charts.CHART_GROUPS + 1 and names[-1] == OTHER
    assert len({trace.line.color for trace in fig.data}) == len(names)
    assert shown["calls"].sum() == sum(range(1, 16))


def test_every_chart_titles_its_axes_with_units(world: World, engine: Engine) -> None:
    page = usage_page(engine, world.admin, WINDOW)
    fig, _ = charts.stacked_tokens(page.tokens_by_model, "light")
    assert fig.layout.yaxis.title.text == "tokens"
    assert charts.requests_and_errors(page.requests, "light").layout.yaxis.title.text == "requests"
    assert charts.latency_lines(page.latency, "light").layout.yaxis.title.text == "latency (ms)"
    assert charts.top_bars(page.top["model_by_cost"], "cost", "light").layout.xaxis.title.text == "USD"
    errors = next(t for t in charts.requests_and_errors(page.requests, "dark").data if t.name == "errors")
    assert errors.line.color == charts.ERROR["dark"]


def test_unpriced_models_are_named_not_counted_as_zero(world: World, engine: Engine) -> None:
    page = usage_page(engine, world.admin, WINDOW)
    assert page.unpriced_models  # the world's providers price only some of their models
    note = usage_view.cost_note(page.unpriced_models)
    count = len(page.unpriced_models)
    assert note.startswith(f"Cost excludes {count} unpriced model{'s' * (count != 1)}")


def test_money_keeps_its_precision_below_a_cent() -> None:
    assert usage_view.usd(0.000008) == "$0.0000080"
    assert usage_view.usd(0.00012345) == "$0.00012"
    assert usage_view.usd(0.5) == "$0.5000"
    assert usage_view.usd(1234.5) == "$1,234.50"
    assert usage_view.usd(0) == "$0.00" and usage_view.usd(None) == "—"
    assert usage_view.milliseconds(29947.6) == "29,948 ms"
    assert usage_view.calls_text(1) == "1 call" and usage_view.calls_text(1200) == "1,200 calls"


def test_tables_and_their_csv_read_alike(world: World, engine: Engine) -> None:
    page = usage_page(engine, world.admin, WINDOW)
    shown = usage_view.table(page.breakdown_provider_model, WINDOW.timezone)
    assert "prompt_tokens" not in shown.columns and {"Input tokens", "Error rate (%)", "Cost (USD)"} <= set(shown)
    assert str(shown["Requests"].dtype) == "Int64" and str(shown["Avg latency (ms)"].dtype) == "Int64"
    exported = pd.read_csv(io.BytesIO(usage_view.table_csv(shown)))
    assert list(exported.columns) == list(shown.columns)
    assert exported["Requests"].sum() == shown["Requests"].sum() == tiles(page)["requests"]
    assert exported["Total tokens"].sum() == page.tokens_by_model["tokens"].sum() == tiles(page)["tokens"]
    assert exported["Cost (USD)"].round(6).tolist() == shown["Cost (USD)"].round(6).tolist()
    # Bucket starts: zone-aware on the page, ISO-8601 with their offset in the CSV.
    series = usage_view.table(page.requests, WINDOW.timezone)
    assert str(series["Start"].dt.tz) == "Asia/Seoul"
    first = pd.read_csv(io.BytesIO(usage_view.table_csv(series)))["Start"].iloc[0]
    assert first.endswith("+09:00")
