"""A user's Calls page and the admin Logs (row click to detail, ?call= in the URL, total, key names, times),
the "open a ticket about this call" link and the Support page honouring it, in AppTest."""

from __future__ import annotations

import csv
import io
from datetime import UTC, timedelta
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from mindroute import i18n
from mindroute.analytics.filter import UsageFilter
from mindroute.analytics.rollups import rebuild_rollups
from mindroute.db import transaction
from mindroute.models import ApiKey, Log, Provider, Ticket, User, utcnow
from mindroute.services import tickets
from mindroute.ui import calls_view, navigation
from tests.pages.helpers import add_user, app_for, click, sign_in, texts
from tests.test_analytics import insert_rows, log_row

CALLS = "pages/workspace/calls.py"
LOGS = "pages/admin/logs.py"
SUPPORT = "pages/workspace/support.py"


DELETED_KEY = "5f0c8a59-2c1e-4c43-9d3b-0d6a7f1e2b3c"  # a key id that no apikeys row has (any more)


@pytest.fixture
def world(engine: Engine):
    """alice: 3 calls (the newest failing, the middle one with her key "ci-runner"), one 40 days old;
    bob: 2 calls (one with a deleted key); the admin: 1 call."""
    admin = add_user(engine, "admin@example.com", role="admin")
    alice = add_user(engine, "alice@example.com")
    bob = add_user(engine, "bob@example.com")
    with transaction(engine) as session:
        provider = Provider(name="P1", settings={"models": ["m-big"], "default_model": None, "prices": {}})
        key = ApiKey(user_id=alice.id, name="ci-runner", key="0" * 64, prefix="mr-abc")
        session.add_all([provider, key])
    now = utcnow()
    rows = {
        "alice_new": log_row(now - timedelta(minutes=5), alice, provider, "m-big", status=502, error="upstream broke"),
        "alice_mid": log_row(
            now - timedelta(hours=3), alice, provider, "m-big", api_key=str(key.id), prompt=12_000, completion=345
        ),
        "alice_old": log_row(now - timedelta(days=40), alice, provider, "m-big"),
        "bob_1": log_row(now - timedelta(minutes=10), bob, provider, "m-big", error="bob's secret error"),
        "bob_2": log_row(now - timedelta(hours=1), bob, provider, "m-big", api_key=DELETED_KEY),
        "admin_1": log_row(now - timedelta(minutes=20), admin, provider, "m-big"),
    }
    insert_rows(engine, list(rows.values()))
    rebuild_rollups(engine, progress=False)
    return {name: row["id"] for name, row in rows.items()}


def open_page(engine: Engine, monkeypatch, email: str, path: str, query: dict | None = None):
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


# --- a user's own calls -------------------------------------------------------------------------


def table_key(at) -> str:
    return at.dataframe[0].key


def click_row(at, index: int):
    """What a click on a table row does: the table's selection state, then a rerun."""
    at.session_state[table_key(at)] = {"selection": {"rows": [index], "columns": [], "cells": []}}
    return at.run()


def summary(at) -> str | None:
    return next((t.value for t in at.text if t.value.startswith("Call ")), None)


def test_a_user_browses_only_their_own_calls(engine: Engine, monkeypatch, world) -> None:
    at = open_page(engine, monkeypatch, "alice@example.com", CALLS)
    shown = at.dataframe[0].value
    assert len(shown) == 2  # the last 7 days: the 40-day-old call is outside the default range
    assert "User" not in shown.columns  # only their own, so no user column
    assert shown["Error"].iloc[0] == "upstream broke"
    assert "2 calls match" in [c.value for c in at.caption]
    assert "bob" not in texts(at)
    assert "calls_user" not in {s.key for s in at.selectbox}  # no user filter for a user

    at.selectbox(key="calls_range").set_value("90d").run()
    assert len(at.dataframe[0].value) == 3
    assert "3 calls match" in [c.value for c in at.caption]
    at.text_input(key="calls_search").input("secret").run()  # bob's error text is not searchable by alice
    assert not at.dataframe
    assert "No calls match these filters." in texts(at)
    assert "0 calls match" in [c.value for c in at.caption]


def test_the_table_reads_as_people_read_it(engine: Engine, monkeypatch, world) -> None:
    at = open_page(engine, monkeypatch, "alice@example.com", CALLS)
    shown = at.dataframe[0].value
    assert list(shown.columns) == [
        "Time", "Provider", "Model", "Type", "Source", "API key", "Status", "Tokens", "Duration (ms)", "Error"
    ]  # fmt: skip
    mid = shown.iloc[1]
    assert mid["API key"] == "ci-runner"  # the key's name, not its id
    assert mid["Tokens"] == "12,345" and mid["Duration (ms)"] == "500" and mid["Source"] == "API"
    assert shown.iloc[0]["API key"] == ""  # no key used
    assert "None" not in shown.astype(str).to_numpy().ravel().tolist()
    assert "Times are in UTC." in [c.value for c in at.caption]


def test_a_deleted_key_is_named_as_such(engine: Engine, monkeypatch, world) -> None:
    at = open_page(engine, monkeypatch, "admin@example.com", LOGS)
    shown = at.dataframe[0].value
    bobs = shown[shown["User"] == "bob@example.com"]
    assert sorted(bobs["API key"]) == ["", "deleted key"]
    assert DELETED_KEY not in shown.astype(str).to_numpy().ravel().tolist()


def test_times_follow_the_users_zone(engine: Engine, monkeypatch, world) -> None:
    with transaction(engine) as session:
        alice = session.scalar(select(User).where(User.email == "alice@example.com"))
        alice.timezone = "Asia/Seoul"
        created = next(r for r in session.scalars(select(Log).where(Log.id == world["alice_new"])))
        created_at = created.created_at
    at = open_page(engine, monkeypatch, "alice@example.com", CALLS, {"call": str(world["alice_new"])})
    assert "Times are in Asia/Seoul." in [c.value for c in at.caption]
    seoul = (created_at + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
    shown = i18n.moment(created_at.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Seoul")), seconds=True)
    assert f"Time: {shown}" in summary(at)  # as the reader's language writes it (Babel), in their zone
    first = at.dataframe[0].value["Time"].iloc[0]
    assert first.strftime("%Y-%m-%d %H:%M:%S") == seoul and first.utcoffset() == timedelta(hours=9)


def test_clicking_a_row_opens_its_detail_and_puts_it_in_the_url(engine: Engine, monkeypatch, world) -> None:
    at = open_page(engine, monkeypatch, "alice@example.com", CALLS)
    assert summary(at) is None
    assert "Click a row to see the call's detail." in [c.value for c in at.caption]
    at = click_row(at, 1)
    assert at.query_params["call"] == str(world["alice_mid"])
    assert str(world["alice_mid"]) in summary(at) and "API key: ci-runner" in summary(at)
    assert "Tokens: 12,345 (input 12,000, output 345)" in summary(at)
    at = click_row(at, 0)
    assert at.query_params["call"] == str(world["alice_new"])
    assert "Status: 502" in summary(at)
    assert "upstream broke" in [c.value for c in at.code]
    at.session_state[table_key(at)] = {"selection": {"rows": [], "columns": [], "cells": []}}
    at.run()  # the row clicked again: unselected, the detail closes
    assert "call" not in at.query_params and summary(at) is None


def test_the_url_opens_the_users_own_call_even_off_the_page(engine: Engine, monkeypatch, world) -> None:
    at = open_page(engine, monkeypatch, "alice@example.com", CALLS, {"call": str(world["alice_old"])})
    assert len(at.dataframe[0].value) == 2  # 40 days old: not in the table of the last 7 days
    assert str(world["alice_old"]) in summary(at)
    assert at.query_params["call"] == str(world["alice_old"])  # kept, so a reload opens it again
    at.button(key="calls_next").run()  # any rerun keeps it
    assert str(world["alice_old"]) in summary(at)


@pytest.mark.parametrize("which", ["someone else's", "unknown", "malformed"])
def test_a_call_in_the_url_that_is_not_mine_is_not_found(engine: Engine, monkeypatch, world, which: str) -> None:
    value = {"someone else's": str(world["bob_1"]), "unknown": "00000000-0000-0000-0000-000000000000"}.get(
        which, "not-a-uuid"
    )
    at = open_page(engine, monkeypatch, "alice@example.com", CALLS, {"call": value})
    assert summary(at) is None
    assert "Call not found" in " ".join(w.value for w in at.warning)
    assert "bob's secret error" not in texts(at) + " ".join(c.value for c in at.code)


def test_an_admin_opens_anyones_call_by_url(engine: Engine, monkeypatch, world) -> None:
    at = open_page(engine, monkeypatch, "admin@example.com", LOGS, {"call": str(world["bob_1"])})
    assert str(world["bob_1"]) in summary(at) and "User: bob@example.com" in summary(at)
    assert "bob's secret error" in [c.value for c in at.code]


def test_the_csv_has_the_tables_columns_and_times_with_offset(engine: Engine, monkeypatch, world) -> None:
    with transaction(engine) as session:
        alice = session.scalar(select(User).where(User.email == "alice@example.com"))
        rows = {r.id: r for r in session.scalars(select(Log).where(Log.user_id == alice.id))}
    flt = UsageFilter(utcnow() - timedelta(days=90), utcnow() + timedelta(minutes=1))
    data = calls_view.calls_csv(engine, alice, flt, "", with_user=False, zone=ZoneInfo("Asia/Seoul"))
    parsed = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert parsed[0] == list(calls_view.call_columns([], with_user=False))
    assert len(parsed) == 1 + 3
    newest = rows[world["alice_new"]].created_at
    assert parsed[1][0] == (newest + timedelta(hours=9)).replace(microsecond=0).isoformat() + "+09:00"
    assert parsed[2][parsed[0].index("Tokens")] == "12345" and parsed[2][parsed[0].index("API key")] == "ci-runner"


def test_a_calls_detail_links_to_a_ticket_about_it(engine: Engine, monkeypatch, world) -> None:
    at = open_page(engine, monkeypatch, "alice@example.com", CALLS, {"call": str(world["alice_new"])})
    assert str(world["alice_new"]) in summary(at) and "Status: 502" in summary(at)
    assert "upstream broke" in [c.value for c in at.code]
    links = [link for link in at.page_link if link.proto.query_string]
    assert [(link.value, link.proto.page) for link in links] == [("Open a support ticket about this call", "support")]
    assert parse_qs(links[0].proto.query_string) == {"call": [str(world["alice_new"])]}


def test_only_users_have_the_calls_page(engine: Engine, monkeypatch, world) -> None:
    spec = next(p for p in navigation.PAGES if p.path == CALLS)
    assert spec.roles == ("user",)  # administrators read every call on the Logs page
    at = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com")
    with pytest.raises(Exception):  # noqa: B017 - AppTest raises for a page outside the navigation
        at.switch_page(CALLS).run()


def test_the_admin_logs_offer_a_ticket_link_only_for_the_admins_own_calls(engine: Engine, monkeypatch, world) -> None:
    at = open_page(engine, monkeypatch, "admin@example.com", LOGS)
    assert "User" in at.dataframe[0].value.columns
    assert "5 calls match" in [c.value for c in at.caption]
    at = click_row(at, 0)
    assert str(world["alice_new"]) in summary(at)
    assert not [link for link in at.page_link if link.proto.query_string]
    assert "Only the person who made this call can open a support ticket about it." in [c.value for c in at.caption]

    emails = at.dataframe[0].value["User"].tolist()
    at = click_row(at, emails.index("admin@example.com"))
    links = [parse_qs(link.proto.query_string) for link in at.page_link if link.proto.query_string]
    assert links == [{"call": [str(world["admin_1"])]}]


# --- the Support page honours the link ----------------------------------------------------------


def test_the_link_opens_support_with_the_call_chosen(engine: Engine, monkeypatch, world) -> None:
    at = open_page(engine, monkeypatch, "alice@example.com", SUPPORT, {"call": str(world["alice_new"])})
    assert at.selectbox(key="support_call").value == str(world["alice_new"])
    assert "call" not in at.query_params  # used once, then dropped
    at.text_input(key="support_subject").input("This call failed")
    at.text_area(key="support_message").set_value("It answered 502.")
    at = click(at, "support_submit")
    assert "Ticket opened." in texts(at)
    with transaction(engine) as session:
        ticket = session.scalar(select(Ticket))
    assert ticket.log_id == world["alice_new"]
    assert at.selectbox(key="support_call").value is None  # the next ticket starts without a call


def test_the_link_reaches_a_call_older_than_the_recent_ones(engine: Engine, monkeypatch, world) -> None:
    with transaction(engine) as session:
        alice = session.scalar(select(User).where(User.email == "alice@example.com"))
    now = utcnow()
    insert_rows(engine, [log_row(now - timedelta(seconds=i + 1), alice, None, "m-x") for i in range(60)])
    with transaction(engine) as session:
        recent = {c.id for c in tickets.my_recent_calls(session, alice)}
    assert world["alice_old"] not in recent

    at = open_page(engine, monkeypatch, "alice@example.com", SUPPORT, {"call": str(world["alice_old"])})
    picker = at.selectbox(key="support_call")
    assert picker.value == str(world["alice_old"])
    at.text_input(key="support_subject").input("An old call")
    at.text_area(key="support_message").set_value("From last month.")
    at = click(at, "support_submit")
    assert "Ticket opened." in texts(at)


@pytest.mark.parametrize("which", ["someone else's", "unknown", "malformed"])
def test_a_link_to_a_call_that_is_not_mine_chooses_nothing(engine: Engine, monkeypatch, world, which: str) -> None:
    value = {"someone else's": str(world["bob_1"]), "unknown": "00000000-0000-0000-0000-000000000000"}.get(
        which, "not-a-uuid"
    )
    at = open_page(engine, monkeypatch, "alice@example.com", SUPPORT, {"call": value})
    assert at.selectbox(key="support_call").value is None
    assert str(world["bob_1"]) not in at.selectbox(key="support_call").options
    assert "The linked call is not one of your calls" in " ".join(w.value for w in at.warning)
    assert "bob's secret error" not in texts(at)


def test_my_call_is_the_users_own_call_or_nothing(engine: Engine, world) -> None:
    with transaction(engine) as session:
        alice = session.scalar(select(User).where(User.email == "alice@example.com"))
        admin = session.scalar(select(User).where(User.email == "admin@example.com"))
        assert tickets.my_call(session, alice, world["alice_old"]).id == world["alice_old"]
        assert tickets.my_call(session, alice, str(world["alice_new"])).status_code == 502
        assert tickets.my_call(session, alice, world["bob_1"]) is None
        assert tickets.my_call(session, alice, "nonsense") is None
        assert tickets.my_call(session, admin, world["alice_new"]) is None  # an admin's tickets are about their calls


def test_the_support_page_is_where_the_links_point() -> None:
    assert calls_view.SUPPORT_PAGE in {p.path for p in navigation.PAGES if "user" in p.roles and "admin" in p.roles}
