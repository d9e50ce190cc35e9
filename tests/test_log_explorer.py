"""The log explorer: keyset pages, filters and search, the total, key names, scoping, a call's detail, streamed CSV."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from mindroute.analytics.filter import UsageFilter
from mindroute.analytics.rollups import rebuild_rollups
from mindroute.db import transaction
from mindroute.errors import NotFound, PermissionDenied
from mindroute.models import ApiKey, Log, UsageRollup
from mindroute.services.log_explorer import (
    CSV_COLUMNS,
    RETENTION_DAYS_MAX,
    call_detail,
    count_calls,
    export_calls_csv,
    list_calls,
    oldest_call_at,
    plan_prune,
    prune_calls,
    retention_days,
)
from mindroute.validation import ValidationError
from tests.test_analytics import insert_rows, log_row, make_people

T0 = datetime(2026, 10, 1)
WINDOW = UsageFilter(T0, T0 + timedelta(days=2))


@pytest.fixture
def people_and_rows(engine: Engine):
    admin, alice, bob, p1, p2 = make_people(engine)
    same_moment = T0 + timedelta(hours=3)
    rows = []
    for i in range(120):
        # Many rows share a timestamp, so paging must break ties by id.
        when = same_moment if i % 4 == 0 else T0 + timedelta(minutes=7 * i)
        user = alice if i % 3 else bob
        failed = i % 10 == 0
        rows.append(
            log_row(
                when,
                user,
                p1,
                "m-big",
                status=429 if failed else 200,
                error=f"Rate limit exceeded ({i}) 100%_sure" if failed else None,
                source="playground" if i % 2 else "api",
            )
        )
    rows.append(log_row(T0 + timedelta(days=5), alice, p2, "m-free"))  # outside the window
    insert_rows(engine, rows)
    return admin, alice, bob, rows


def all_pages(session: Session, viewer, flt: UsageFilter, **kw) -> list:
    seen, after = [], None
    while True:
        page = list_calls(session, viewer, flt, after=after, page_size=7, **kw)
        seen.extend(page.rows)
        if page.next_cursor is None:
            return seen
        after = page.next_cursor


def test_keyset_pages_visit_every_call_once_newest_first(engine: Engine, people_and_rows) -> None:
    admin, _alice, _bob, _rows = people_and_rows
    with Session(engine) as session:
        seen = all_pages(session, admin, WINDOW)
    assert len(seen) == 120
    assert len({r.id for r in seen}) == 120
    keys = [(r.created_at, r.id) for r in seen]
    assert keys == sorted(keys, reverse=True)


def test_filters_and_error_search(engine: Engine, people_and_rows) -> None:
    admin, _alice, _bob, _rows = people_and_rows
    with Session(engine) as session:
        errors = all_pages(session, admin, UsageFilter(WINDOW.start, WINDOW.end, outcome="error"))
        found = all_pages(session, admin, WINDOW, search="rate LIMIT exceeded (1")
        literal = all_pages(session, admin, WINDOW, search="100%_sure")
        nothing = all_pages(session, admin, WINDOW, search="1%")
        playground = all_pages(session, admin, UsageFilter(WINDOW.start, WINDOW.end, source="playground"))
    assert len(errors) == 12 and all(r.status_code == 429 for r in errors)
    assert {r.error_message for r in found} == {"Rate limit exceeded (10) 100%_sure"} | {
        f"Rate limit exceeded ({i}) 100%_sure" for i in range(100, 120, 10)
    }
    assert len(literal) == 12
    assert nothing == []  # % is searched literally, not as a wildcard
    assert len(playground) == 60 and {r.source for r in playground} == {"playground"}


def test_a_user_sees_only_their_own_calls_and_details(engine: Engine, people_and_rows) -> None:
    _admin, alice, bob, rows = people_and_rows
    with Session(engine) as session:
        mine = all_pages(session, alice, UsageFilter(WINDOW.start, WINDOW.end, user_ids=(bob.id,)))
        assert mine and {r.user_id for r in mine} == {alice.id}
        bobs = next(r for r in rows if r["user_id"] == bob.id)
        with pytest.raises(NotFound):
            call_detail(session, alice, bobs["id"])
        with pytest.raises(NotFound):
            call_detail(session, alice, uuid.uuid4())
        own = call_detail(session, bob, bobs["id"])
    assert own.row.id == bobs["id"]
    assert '"model": "m-big"' in own.request_body
    assert own.request_type == "chat"


def test_csv_export_streams_every_filtered_call_in_pages(engine: Engine, people_and_rows) -> None:
    admin, alice, _bob, _rows = people_and_rows
    chunks = list(export_calls_csv(engine, admin, WINDOW, page_rows=25))
    assert len(chunks) == 1 + 5  # the header, then 120 rows in pages of 25
    parsed = list(csv.reader(io.StringIO("".join(chunks))))
    assert tuple(parsed[0]) == CSV_COLUMNS
    assert len(parsed) == 121
    assert len({line[0] for line in parsed[1:]}) == 120
    own = list(csv.reader(io.StringIO("".join(export_calls_csv(engine, alice, WINDOW)))))
    assert {line[2] for line in own[1:]} == {"alice@example.com"}
    assert {line[CSV_COLUMNS.index("request_type")] for line in parsed[1:]} == {"chat"}


def test_the_total_counts_what_the_pages_list(engine: Engine, people_and_rows) -> None:
    admin, alice, bob, _rows = people_and_rows
    with Session(engine) as session:
        assert count_calls(session, admin, WINDOW) == len(all_pages(session, admin, WINDOW)) == 120
        assert count_calls(session, alice, WINDOW) == len(all_pages(session, alice, WINDOW)) == 80
        assert count_calls(session, bob, WINDOW, search="100%_sure") == len(
            all_pages(session, bob, WINDOW, search="100%_sure")
        )
        assert count_calls(session, admin, WINDOW, search="100%_sure") == 12
        assert count_calls(session, admin, WINDOW, search="100x_sure") == 0  # % and _ are literal


def test_rows_carry_their_keys_name_or_say_it_was_deleted(engine: Engine) -> None:
    admin, alice, _bob, p1, _p2 = make_people(engine)
    with transaction(engine) as session:
        key = ApiKey(user_id=alice.id, name="laptop", key="1" * 64, prefix="mr-x")
        session.add(key)
    gone = str(uuid.uuid4())
    rows = [
        log_row(T0 + timedelta(minutes=3), alice, p1, "m-big", api_key=str(key.id)),
        log_row(T0 + timedelta(minutes=2), alice, p1, "m-big", api_key=gone),
        log_row(T0 + timedelta(minutes=1), alice, p1, "m-big", api_key="not-a-uuid"),
        log_row(T0, alice, p1, "m-big", source="playground"),
    ]
    insert_rows(engine, rows)
    with Session(engine) as session:
        page = list_calls(session, admin, WINDOW)
        assert [r.api_key_label for r in page.rows] == ["laptop", "deleted key", "deleted key", ""]
        assert call_detail(session, alice, rows[0]["id"]).row.api_key_label == "laptop"
        assert call_detail(session, alice, rows[1]["id"]).row.api_key_label == "deleted key"


def test_csv_times_are_iso_with_the_zones_offset(engine: Engine, people_and_rows) -> None:
    admin, _alice, _bob, rows = people_and_rows
    parsed = list(csv.reader(io.StringIO("".join(export_calls_csv(engine, admin, WINDOW)))))
    at = CSV_COLUMNS.index("created_at")
    assert all(line[at].endswith("+00:00") and "T" in line[at] for line in parsed[1:])
    seoul = list(csv.reader(io.StringIO("".join(export_calls_csv(engine, admin, WINDOW, zone=ZoneInfo("Asia/Seoul"))))))
    newest = max(r["created_at"] for r in rows if r["created_at"] < WINDOW.end)
    assert seoul[1][at] == (newest + timedelta(hours=9)).replace(microsecond=0).isoformat() + "+09:00"


def test_csv_cells_cannot_become_spreadsheet_formulas(engine: Engine) -> None:
    admin, alice, _bob, p1, _p2 = make_people(engine)
    insert_rows(engine, [log_row(T0, alice, p1, "m-big", status=500, error='=HYPERLINK("http://x")')])
    text = "".join(export_calls_csv(engine, admin, WINDOW))
    assert "'=HYPERLINK" in text


# --- retention ----------------------------------------------------------------------------------


def calls_left(engine: Engine) -> list[datetime]:
    with Session(engine) as session:
        return sorted(session.scalars(select(Log.created_at)))


def rollup_requests(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.coalesce(func.sum(UsageRollup.requests), 0)))


def test_retention_deletes_exactly_the_reviewed_calls_with_progress(engine: Engine) -> None:
    admin, alice, _bob, p1, _p2 = make_people(engine)
    now = T0 + timedelta(days=30)
    old = [log_row(now - timedelta(days=10, minutes=i), alice, p1, "m-big") for i in range(7)]
    recent = [log_row(now - timedelta(days=2, minutes=i), alice, p1, "m-big") for i in range(3)]
    insert_rows(engine, old + recent)
    rebuild_rollups(engine, progress=False)
    with Session(engine) as session:
        plan = plan_prune(session, admin, "5", now=now)
        assert oldest_call_at(session, admin) == min(r["created_at"] for r in old)
    assert (plan.days, plan.calls, plan.cutoff) == (5, 7, now - timedelta(days=5))

    seen: list[tuple[int, int]] = []
    deleted = prune_calls(engine, admin, plan, on_progress=lambda done, total: seen.append((done, total)), batch_rows=3)
    assert deleted == 7
    assert (3, 7) in seen and seen[-1] == (7, 7)  # reported batch by batch, ending at the total
    assert [done for done, _total in seen] == sorted(done for done, _total in seen)
    assert calls_left(engine) == sorted(r["created_at"] for r in recent)
    assert rollup_requests(engine) == 3  # the usage totals lost the deleted calls too


def test_retention_is_for_administrators_only(engine: Engine) -> None:
    admin, alice, _bob, p1, _p2 = make_people(engine)
    insert_rows(engine, [log_row(T0, alice, p1, "m-big")])
    with Session(engine) as session:
        plan = plan_prune(session, admin, 1, now=T0 + timedelta(days=3))
        for actor in (alice, None):
            with pytest.raises(PermissionDenied):
                plan_prune(session, actor, 1)
            with pytest.raises(PermissionDenied):
                oldest_call_at(session, actor)
    with pytest.raises(PermissionDenied):
        prune_calls(engine, alice, plan)  # a plan an admin reviewed does not let a user run it
    admin.is_active = False
    with pytest.raises(PermissionDenied):
        prune_calls(engine, admin, plan)
    assert len(calls_left(engine)) == 1


@pytest.mark.parametrize("value", [0, -3, RETENTION_DAYS_MAX + 1, 2.5, "", "ten", "1e3", True, None])
def test_retention_days_must_be_a_whole_number_from_one(value) -> None:
    with pytest.raises(ValidationError) as refused:
        retention_days(value)
    assert refused.value.field == "days"
    assert refused.value.message.startswith(f"Days must be a whole number from 1 to {RETENTION_DAYS_MAX:,}")


@pytest.mark.parametrize(
    ("value", "days"), [(1, 1), (30.0, 30), (" 90 ", 90), (RETENTION_DAYS_MAX, RETENTION_DAYS_MAX)]
)
def test_retention_days_accepts_whole_numbers(value, days: int) -> None:
    assert retention_days(value) == days
