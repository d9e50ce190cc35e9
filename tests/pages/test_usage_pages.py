"""The Usage and Logs pages in AppTest: empty state, scoped tiles, filters in the URL, paging, export."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine

from mindroute.analytics.filter import UsageFilter
from mindroute.analytics.rollups import rebuild_rollups
from mindroute.db import transaction
from mindroute.models import Provider, utcnow
from mindroute.services.log_explorer import export_calls_csv
from mindroute.ui import usage_view
from tests.pages.helpers import add_user, app_for, sign_in, texts
from tests.test_analytics import insert_rows, log_row

USAGE = "pages/workspace/usage.py"
LOGS = "pages/admin/logs.py"


@pytest.fixture
def people(engine: Engine):
    admin = add_user(engine, "admin@example.com", role="admin")
    alice = add_user(engine, "alice@example.com")
    bob = add_user(engine, "bob@example.com", name="=HYPERLINK(bob)")
    with transaction(engine) as session:
        p1 = Provider(name="P1", settings={"models": ["m-big"], "default_model": None, "prices": {}})
        p2 = Provider(name="P2", settings={"models": ["m-free"], "default_model": None, "prices": {}})
        session.add_all([p1, p2])
    return admin, alice, bob, p1, p2


@pytest.fixture
def calls(engine: Engine, people):
    """In the last two days: alice 6 calls on P1, bob 4 on P2 (one failing with a searchable error)."""
    _admin, alice, bob, p1, p2 = people
    now = utcnow()
    rows = [log_row(now - timedelta(hours=i + 1), alice, p1, "m-big", source="playground") for i in range(6)]
    rows += [
        log_row(
            now - timedelta(hours=i + 2, minutes=30),
            bob,
            p2,
            "m-free",
            status=500 if i == 0 else 200,
            error="upstream exploded" if i == 0 else None,
        )
        for i in range(4)
    ]
    insert_rows(engine, rows)
    rebuild_rollups(engine, progress=False)
    return rows


def open_page(engine: Engine, monkeypatch, email: str, path: str, query: dict | None = None):
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_empty_state_tells_how_to_get_data(engine: Engine, monkeypatch, people) -> None:
    at = open_page(engine, monkeypatch, "alice@example.com", USAGE)
    assert "seed-demo" in texts(at)
    assert "Playground" in texts(at)
    assert not at.metric


def test_tiles_are_scoped_to_the_viewer(engine: Engine, monkeypatch, calls) -> None:
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE)
    assert metric(at, "Requests") == "10"
    assert metric(at, "Error rate") == "10.0%"
    assert metric(at, "p95 latency").endswith(" ms")  # the unit once, in the value

    # Neither model has a price (the providers set none and they are not in the built-in table).
    assert "Cost excludes 2 unpriced models: m-big, m-free." in [c.value for c in at.caption]

    at = open_page(engine, monkeypatch, "alice@example.com", USAGE)
    assert metric(at, "Requests") == "6"
    assert "Cost excludes 1 unpriced model: m-big." in [c.value for c in at.caption]
    assert "usage_user" not in {s.key for s in at.selectbox}  # no user filter for a user
    shown = at.dataframe[-1].value
    assert list(shown["Provider"]) == ["P1"]  # bob's provider never appears
    assert "bob@example.com" not in texts(at)


def test_a_filter_change_changes_the_tiles_and_the_url(engine: Engine, monkeypatch, calls, people) -> None:
    p2 = people[4]
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE)
    at.selectbox(key="usage_provider").set_value(str(p2.id)).run()
    assert metric(at, "Requests") == "4"
    assert at.query_params["provider"] == [str(p2.id)] or at.query_params["provider"] == str(p2.id)
    at.selectbox(key="usage_outcome").set_value("error").run()
    assert metric(at, "Requests") == "1"


def test_query_params_restore_the_filters(engine: Engine, monkeypatch, calls, people) -> None:
    p1 = people[3]
    at = open_page(
        engine, monkeypatch, "admin@example.com", USAGE, {"range": "30d", "provider": str(p1.id), "tz": "Asia/Seoul"}
    )
    assert at.selectbox(key="usage_range").value == "30d"
    assert at.selectbox(key="usage_provider").value == str(p1.id)
    assert at.selectbox(key="usage_tz").value == "Asia/Seoul"
    assert metric(at, "Requests") == "6"


def test_custom_dates_from_the_url(engine: Engine, monkeypatch, calls) -> None:
    today = utcnow().date()
    query = {"range": "custom", "from": (today - timedelta(days=3)).isoformat(), "to": today.isoformat(), "tz": "UTC"}
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE, query)
    assert at.date_input(key="usage_days").value == (today - timedelta(days=3), today)
    assert metric(at, "Requests") == "10"
    query["from"] = query["to"] = (today - timedelta(days=20)).isoformat()
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE, query)
    assert metric(at, "Requests") == "0"
    assert "No calls match these filters" in texts(at)


def test_downloads_carry_the_data_shown(engine: Engine, monkeypatch, calls, people) -> None:
    admin = people[0]
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE)
    keys = {b.key for b in at.download_button}
    assert {"usage_breakdown_csv", "usage_csv_requests", "usage_raw_export"} <= keys
    at.radio(key="usage_breakdown_by").set_value("user").run()
    shown = at.dataframe[-1].value
    exported = pd.read_csv(io.BytesIO(usage_view.table_csv(shown)))
    assert exported["Requests"].sum() == 10
    assert any(str(u).startswith("'=") for u in exported["User"])  # formula cells are quoted
    now = utcnow()
    raw = list(
        csv.reader(io.StringIO("".join(export_calls_csv(engine, admin, UsageFilter(now - timedelta(days=3), now)))))
    )
    assert len(raw) == 1 + len(calls)


def test_logs_paginate_and_search(engine: Engine, monkeypatch, people) -> None:
    _admin, alice, _bob, p1, _p2 = people
    now = utcnow()
    rows = [
        log_row(
            now - timedelta(minutes=5 * i + 1),
            alice,
            p1,
            "m-big",
            status=500 if i % 12 == 0 else 200,
            error=f"needle {i}" if i % 12 == 0 else None,
        )
        for i in range(60)
    ]
    insert_rows(engine, rows)
    rebuild_rollups(engine, progress=False)
    at = open_page(engine, monkeypatch, "admin@example.com", LOGS)
    at.selectbox(key="logs_page_size").set_value(25).run()
    assert len(at.dataframe[0].value) == 25
    first = at.dataframe[0].value["Time"].tolist()
    assert first == sorted(first, reverse=True)
    at.button(key="logs_next").click().run()
    second = at.dataframe[0].value["Time"].tolist()
    assert len(second) == 25 and max(second) < min(first)
    at.button(key="logs_next").click().run()
    assert len(at.dataframe[0].value) == 10
    assert at.button(key="logs_next").disabled
    at.button(key="logs_previous").click().run()
    assert at.dataframe[0].value["Time"].tolist() == second

    at.text_input(key="logs_search").input("NEEDLE").run()
    shown = at.dataframe[0].value
    assert len(shown) == 5 and all(str(e).startswith("needle") for e in shown["Error"])
    # A call's detail opens on a click on its row: tests/pages/test_calls_pages.py.


def test_a_user_cannot_open_the_logs(engine: Engine, monkeypatch, calls) -> None:
    at = sign_in(app_for(engine, monkeypatch).run(), "alice@example.com")
    with pytest.raises(Exception):  # noqa: B017 - AppTest raises for a page outside the navigation
        at.switch_page(LOGS).run()


def warnings(at) -> list[str]:
    return [w.value for w in at.warning]


def test_the_page_says_when_rollups_are_behind_the_logs(engine: Engine, monkeypatch, calls, people) -> None:
    _admin, alice, _bob, p1, _p2 = people
    assert not warnings(open_page(engine, monkeypatch, "admin@example.com", USAGE))  # in step: nothing said
    # Three calls of alice's written straight into logs, as SQL by hand or an old bulk load would.
    now = utcnow()
    insert_rows(engine, [log_row(now - timedelta(hours=5, minutes=i), alice, p1, "m-big") for i in range(3)])

    at = open_page(engine, monkeypatch, "admin@example.com", USAGE)
    (warning,) = warnings(at)
    assert "behind the logs" in warning and "13 calls" in warning and "count 10" in warning
    assert "rebuild-rollups" in warning
    assert metric(at, "Requests") == "10"  # the numbers are still shown, with the warning above them

    (warning,) = warnings(open_page(engine, monkeypatch, "alice@example.com", USAGE))
    assert "9 of your calls" in warning and "count 6" in warning and "administrator" in warning
    assert not warnings(open_page(engine, monkeypatch, "bob@example.com", USAGE))  # his calls are in step

    rebuild_rollups(engine, progress=False)
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE)
    assert not warnings(at)
    assert metric(at, "Requests") == "13"


@pytest.fixture
def typed_calls(engine: Engine, people):
    """In the last day: alice 3 chat calls, 2 embeddings and 1 completion on P1; bob 2 embeddings on P2."""
    _admin, alice, bob, p1, p2 = people
    now = utcnow()
    kinds = [("chat", alice, p1)] * 3 + [("embedding", alice, p1)] * 2 + [("completion", alice, p1)]
    kinds += [("embedding", bob, p2)] * 2
    rows = []
    for number, (kind, who, provider) in enumerate(kinds):
        row = log_row(now - timedelta(hours=number + 1), who, provider, "m-big" if provider is p1 else "m-free")
        row["request_type"] = kind
        rows.append(row)
    insert_rows(engine, rows)
    rebuild_rollups(engine, progress=False)
    return rows


def test_the_request_type_filter_and_breakdown(engine: Engine, monkeypatch, typed_calls) -> None:
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE)
    choice = at.multiselect(key="usage_request_type")
    assert choice.label == "Request type" and choice.value == []  # all by default
    assert list(choice.options) == ["chat", "completion", "embedding"]
    assert metric(at, "Requests") == "8"
    assert at.radio(key="usage_breakdown_by").options == ["Provider × model", "User", "Request type"]
    at.radio(key="usage_breakdown_by").set_value("request_type").run()
    shown = at.dataframe[-1].value
    assert dict(zip(shown["Request type"], shown["Requests"], strict=True)) == {
        "chat": 3,
        "completion": 1,
        "embedding": 4,
    }
    exported = pd.read_csv(io.BytesIO(usage_view.table_csv(shown)))
    assert list(exported["Request type"]) == ["chat", "completion", "embedding"]

    at.multiselect(key="usage_request_type").set_value(["embedding"]).run()
    assert metric(at, "Requests") == "4"
    assert at.query_params["type"] in ("embedding", ["embedding"])
    shown = at.dataframe[-1].value
    assert list(shown["Request type"]) == ["embedding"] and shown["Requests"].sum() == 4


def test_the_request_type_comes_back_from_the_url_and_scopes_to_the_user(
    engine: Engine, monkeypatch, typed_calls
) -> None:
    at = open_page(engine, monkeypatch, "alice@example.com", USAGE, {"type": "embedding,completion,bogus"})
    assert at.multiselect(key="usage_request_type").value == ["completion", "embedding"]
    assert metric(at, "Requests") == "3"  # alice's own: 2 embeddings and 1 completion
    assert at.radio(key="usage_breakdown_by").options == ["Provider × model", "Request type"]  # no per-user rows
    at.radio(key="usage_breakdown_by").set_value("request_type").run()
    shown = at.dataframe[-1].value
    assert dict(zip(shown["Request type"], shown["Requests"], strict=True)) == {"completion": 1, "embedding": 2}


def download_keys(at) -> set[str]:
    return {b.key for b in at.download_button}


def test_each_chart_control_redraws_its_chart_with_the_right_data(engine: Engine, monkeypatch, calls) -> None:
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE)
    shown = download_keys(at)
    # The first view: tokens by provider, the first chart tab, the first top tab; other tabs drawn when opened.
    assert {"usage_csv_tokens_by_provider", "usage_csv_requests", "usage_csv_top_user_by_tokens"} <= shown
    assert not shown & {"usage_csv_status_codes", "usage_csv_latency", "usage_csv_top_model_by_tokens"}

    at.segmented_control(key="usage_stack_by").set_value("model").run()
    assert not at.exception
    assert "usage_csv_tokens_by_model" in download_keys(at) and "usage_csv_tokens_by_provider" not in download_keys(at)

    at.session_state["usage_chart_tab"] = "Latency per model"
    at.run()
    latency = next(d.value for d in at.dataframe if "Calls" in d.value.columns)
    assert dict(zip(latency["Model"], latency["Calls"], strict=True)) == {"m-big": 6, "m-free": 4}
    assert "usage_csv_requests" not in download_keys(at)  # the closed tab's chart is not drawn

    at.session_state["usage_chart_tab"] = "Status codes"
    at.run()
    assert "usage_csv_status_codes" in download_keys(at)

    at.segmented_control(key="usage_top_metric").set_value("cost").run()
    at.session_state["usage_top_tab"] = "Models"
    at.run()
    assert not at.exception
    assert "usage_csv_top_model_by_cost" in download_keys(at) and "usage_csv_top_user_by_cost" not in download_keys(at)
    # The rest of the page still agrees: the tiles and the breakdown count the same 10 calls.
    assert metric(at, "Requests") == "10"
    assert at.dataframe[-1].value["Requests"].sum() == 10


def test_the_caption_names_the_buckets_in_words(engine: Engine, monkeypatch, calls) -> None:
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE, {"range": "30d"})
    caption = " ".join(c.value for c in at.caption)
    assert "calls per day" in caption and "dayly" not in caption
    assert "Streamlit" not in caption  # no implementation notes on the page
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE, {"range": "24h"})
    assert "calls per hour" in " ".join(c.value for c in at.caption)


def test_tiles_show_whole_numbers_and_precise_cost(engine: Engine, monkeypatch, calls) -> None:
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE)
    assert metric(at, "Total tokens") == "150"  # 10 calls of 15 tokens, in full
    assert metric(at, "Estimated cost") == "$0.00"  # nothing priced here: said beside it, not hidden
    cost = next(m for m in at.metric if m.label == "Estimated cost")
    assert "unpriced" in (cost.help or "")
    assert all(not m.label.endswith(")") for m in at.metric)  # the unit is in the value, once
