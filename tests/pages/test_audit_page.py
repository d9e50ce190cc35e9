"""The Audit page in AppTest: an admin sees, filters and pages the rows and gets a CSV, times and days in their
zone; others are refused."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine

from mindroute.db import transaction
from mindroute.services import audit, auth
from mindroute.ui import audit_view, navigation
from tests.pages.helpers import add_user, app_for, click, markdown_texts, sign_in, texts

AUDIT = "pages/admin/audit.py"
HOSTILE = "<img src=x onerror=alert(1)> **bold**"


@pytest.fixture
def trail(engine: Engine) -> None:
    """Signing in writes rows too; these are 60 more: 59 test events and one with hostile text."""
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "alice@example.com")
    with transaction(engine) as session:
        for i in range(59):
            audit.record(session, "test.event", "thing", f"t{i}", {"i": i}, actor=audit.CLI)
        hostile = audit.AuditActor(None, HOSTILE, "192.0.2.1", HOSTILE)
        audit.record(session, "provider.create", "provider", HOSTILE, {"name": [None, HOSTILE]}, actor=hostile)


def on_audit(engine: Engine, monkeypatch, email: str = "admin@example.com"):
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    at.switch_page(AUDIT).run()
    assert not at.exception, at.exception
    return at


def table(at):
    return next(d.value for d in at.dataframe if "User agent" in d.value.columns)


def test_admin_sees_the_rows_newest_first_and_their_own_sign_in(engine: Engine, monkeypatch, trail) -> None:
    at = on_audit(engine, monkeypatch)
    frame = table(at)
    assert len(frame) == 50
    assert list(frame["#"])[:2] == sorted(frame["#"], reverse=True)[:2]
    # The stored action ids are shown by their labels (signin.success: "Signed in").
    assert frame.iloc[0]["Action"] == "Signed in" and frame.iloc[0]["Actor"] == "admin@example.com"
    assert frame.iloc[1]["Actor"] == HOSTILE  # shown as text in a cell
    assert not any("<img" in t for t in markdown_texts(at))  # never rendered as Markdown/HTML
    assert "of 61 matching rows" in " ".join(c.value for c in at.caption)
    assert "Times are in UTC." in [c.value for c in at.caption]


def test_next_and_previous_page_by_seq(engine: Engine, monkeypatch, trail) -> None:
    at = on_audit(engine, monkeypatch)
    first = list(table(at)["#"])
    at = click(at, "audit_next")
    second = list(table(at)["#"])
    assert len(second) == 11 and max(second) < min(first)
    assert at.button(key="audit_next").disabled
    at = click(at, "audit_previous")
    assert list(table(at)["#"]) == first


def test_filters_by_action_actor_and_target(engine: Engine, monkeypatch, trail) -> None:
    at = on_audit(engine, monkeypatch)
    at.selectbox(key="audit_action").select("provider.create").run()
    assert list(table(at)["Action"]) == ["Provider created"]  # an id without a label ("test.event") as it is
    at.selectbox(key="audit_action").select(audit_view_any()).run()
    at.text_input(key="audit_actor").input("cli").run()
    assert set(table(at)["Actor"]) == {"cli"} and len(table(at)) == 50
    at.text_input(key="audit_target_id").input("t7").run()
    frame = table(at)
    assert list(frame["Target"]) == ["thing t7"] and frame.iloc[0]["Changes"] == '{"i": 7}'
    at.text_input(key="audit_actor").input("nobody").run()
    assert "No audit rows match these filters." in texts(at)


def audit_view_any() -> str:
    from mindroute.ui.audit_view import ANY_ACTION

    return ANY_ACTION


def test_csv_of_the_filtered_rows(engine: Engine, monkeypatch, trail) -> None:
    at = on_audit(engine, monkeypatch)
    at.selectbox(key="audit_action").select("test.event").run()
    at = click(at, "audit_csv_prepare")
    assert not at.exception
    assert [b for b in at.get("download_button") if b.proto.label == "Download CSV"]
    flt = audit.AuditFilter(action="test.event")
    admin = next(u for u in _users(engine) if u.role == "admin")
    body = audit.to_csv(engine, admin, flt)
    assert len(body.splitlines()) == 60


def test_times_days_and_csv_follow_the_viewers_zone(engine: Engine, monkeypatch, trail) -> None:
    from sqlalchemy import select, update

    from mindroute.models import AuditLog, User

    with transaction(engine) as session:
        session.execute(update(User).where(User.email == "admin@example.com").values(timezone="Asia/Seoul"))
        # Three rows at known instants: 2026-03-01 14:30 and 15:30 UTC (the 1st and the 2nd in Seoul), and later.
        seqs = list(session.scalars(select(AuditLog.seq).where(AuditLog.action == "test.event").order_by(AuditLog.seq)))
    moments = {seqs[0]: datetime(2026, 3, 1, 14, 30), seqs[1]: datetime(2026, 3, 1, 15, 30)}
    with transaction(engine) as session:  # moved in time by hand: the hash chain is not verified in this test
        for seq, moment in moments.items():
            session.execute(update(AuditLog).where(AuditLog.seq == seq).values(created_at=moment))
    at = on_audit(engine, monkeypatch)
    assert "Times are in Asia/Seoul." in [c.value for c in at.caption]
    at.date_input(key="audit_since").set_value(date(2026, 3, 2)).run()
    at.date_input(key="audit_until").set_value(date(2026, 3, 2)).run()
    frame = table(at)
    assert list(frame["#"]) == [seqs[1]]  # 15:30 UTC is 00:30 on the 2nd in Seoul; 14:30 UTC is still the 1st
    shown = frame.iloc[0]["When"]
    assert shown.strftime("%Y-%m-%d %H:%M:%S") == "2026-03-02 00:30:00" and shown.utcoffset() == timedelta(hours=9)

    at = click(at, "audit_csv_prepare")
    body = at.session_state["audit_csv_data"][1].decode("utf-8")
    lines = list(csv.reader(io.StringIO(body)))
    assert lines[0] == list(audit.CSV_COLUMNS) and len(lines) == 2
    assert lines[1][audit.CSV_COLUMNS.index("created_at")] == "2026-03-02T00:30:00+09:00"


def days(since: date | None, until: date | None, zone: str = "UTC") -> audit.AuditFilter:
    from zoneinfo import ZoneInfo

    return audit_view.audit_filter("", audit_view.ANY_ACTION, "", "", since, until, ZoneInfo(zone))


def test_a_day_in_a_zone_is_its_own_midnight_to_midnight() -> None:
    flt = days(date(2026, 3, 2), date(2026, 3, 2), "Asia/Seoul")
    assert (flt.since, flt.until) == (datetime(2026, 3, 1, 15), datetime(2026, 3, 2, 15))
    fall = days(date(2026, 10, 25), date(2026, 10, 25), "Europe/Berlin")
    assert fall.until - fall.since == timedelta(hours=25)  # the day the clocks go back
    assert days(None, None).since is None and days(None, None).until is None


def _users(engine: Engine):
    from sqlalchemy import select

    from mindroute.models import User

    with transaction(engine) as session:
        found = list(session.scalars(select(User)))
        session.expunge_all()
        return found


def test_a_plain_user_is_refused(engine: Engine, monkeypatch, trail) -> None:
    assert AUDIT not in [p.path for p in navigation.pages_for("user")]
    assert next(p for p in navigation.PAGES if p.path == AUDIT).roles == ("admin",)
    at = sign_in(app_for(engine, monkeypatch).run(), "alice@example.com")
    with pytest.raises(Exception):  # noqa: B017 - AppTest raises for a page outside the navigation
        at.switch_page(AUDIT).run()
    at = app_for(engine, monkeypatch, page=AUDIT)  # run directly, with alice's session
    with transaction(engine) as session:
        alice = next(u for u in _users(engine) if u.email == "alice@example.com")
        at.session_state["mindroute_tab_session"] = auth.issue_session(session, session.merge(alice)).token
    at.run()
    assert "This page is for administrators." in texts(at)
    assert not list(at.dataframe) and HOSTILE not in texts(at)


def test_a_change_made_from_a_page_names_the_signed_in_user(engine: Engine, monkeypatch, trail) -> None:
    """The account page's "sign out everywhere" passes no actor: the one the page shell set for the run is used."""
    at = sign_in(app_for(engine, monkeypatch).run(), "alice@example.com")
    at.switch_page("pages/workspace/account.py").run()
    click(at, "sign_out_everywhere")
    admin = next(u for u in _users(engine) if u.role == "admin")
    (row,) = audit.list_rows(engine, admin, audit.AuditFilter(action="session.revoke_all"))
    alice = next(u for u in _users(engine) if u.email == "alice@example.com")
    assert (row.actor_label, row.actor_user_id, row.target_id) == ("alice@example.com", alice.id, str(alice.id))
