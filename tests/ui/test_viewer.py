"""viewer: which zone a page's times are in, and how a stored naive-UTC time reads there."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from mindroute import i18n
from mindroute.ui import format as ui_format
from mindroute.ui import viewer


@pytest.fixture(autouse=True)
def _no_choice() -> Iterator[None]:
    # Bare mode (no script run) keeps one session state for the process: leave it as found.
    viewer.remember_choice(None)
    yield
    viewer.remember_choice(None)


def _browser(monkeypatch: pytest.MonkeyPatch, name: str | None) -> None:
    monkeypatch.setattr(viewer.st, "context", SimpleNamespace(timezone=name))


def test_the_choice_wins_over_the_browser(monkeypatch) -> None:
    _browser(monkeypatch, "America/New_York")
    viewer.remember_choice("Asia/Seoul")
    assert viewer.zone().key == "Asia/Seoul"
    viewer.remember_choice(None)
    assert viewer.zone().key == "America/New_York"


@pytest.mark.parametrize("browser", [None, "", "Not/AZone", "../etc/passwd", 3])
def test_no_usable_zone_is_utc(monkeypatch, browser) -> None:
    _browser(monkeypatch, browser)
    assert viewer.zone().key == "UTC"


def test_a_stale_choice_is_utc_not_an_error(monkeypatch) -> None:
    _browser(monkeypatch, None)
    viewer.remember_choice("Mars/Olympus_Mons")
    assert viewer.zone().key == "UTC"


@pytest.mark.parametrize(
    ("zone", "stored", "shown", "with_offset"),
    [
        ("Asia/Seoul", datetime(2026, 12, 4, 1, 31, 5), "Dec 4, 2026, 10:31 AM", "2026-12-04T10:31:05+09:00"),
        # Half-hour and quarter-hour zones.
        ("Asia/Kolkata", datetime(2026, 12, 3, 18, 45, 0), "Dec 4, 2026, 12:15 AM", "2026-12-04T00:15:00+05:30"),
        ("Asia/Kathmandu", datetime(2026, 12, 3, 18, 15, 0), "Dec 4, 2026, 12:00 AM", "2026-12-04T00:00:00+05:45"),
        # Either side of the European change to summer time (01:00 UTC on 29 March 2026).
        ("Europe/Berlin", datetime(2026, 3, 29, 0, 59, 0), "Mar 29, 2026, 1:59 AM", "2026-03-29T01:59:00+01:00"),
        ("Europe/Berlin", datetime(2026, 3, 29, 1, 0, 0), "Mar 29, 2026, 3:00 AM", "2026-03-29T03:00:00+02:00"),
        # Adelaide in its summer: +10:30.
        ("Australia/Adelaide", datetime(2026, 12, 4, 0, 0, 0), "Dec 4, 2026, 10:30 AM", "2026-12-04T10:30:00+10:30"),
        ("UTC", datetime(2026, 12, 4, 1, 31, 5, 999_999), "Dec 4, 2026, 1:31 AM", "2026-12-04T01:31:05+00:00"),
    ],
)
def test_a_stored_time_in_the_zone(zone: str, stored: datetime, shown: str, with_offset: str) -> None:
    viewer.remember_choice(zone)
    assert viewer.when(stored) == shown
    assert viewer.iso(stored) == with_offset
    assert ui_format.timestamp(stored) == shown
    [aware] = viewer.localize([stored])
    assert aware is not None and aware.utcoffset() == datetime.fromisoformat(with_offset).utcoffset()
    assert aware.replace(microsecond=0) == datetime.fromisoformat(with_offset)


def test_the_same_wall_clock_hour_twice_in_autumn() -> None:
    # Berlin goes back at 01:00 UTC on 25 October 2026: 02:30 happens at 00:30 and at 01:30 UTC.
    viewer.remember_choice("Europe/Berlin")
    assert viewer.iso(datetime(2026, 10, 25, 0, 30)) == "2026-10-25T02:30:00+02:00"
    assert viewer.iso(datetime(2026, 10, 25, 1, 30)) == "2026-10-25T02:30:00+01:00"


def test_seconds_none_and_aware_values() -> None:
    viewer.remember_choice("Asia/Seoul")
    assert viewer.when(datetime(2026, 12, 4, 1, 31, 5), seconds=True) == "Dec 4, 2026, 10:31:05 AM"
    assert viewer.when(None) == "never"
    assert viewer.when(None, never="—") == "—"
    assert viewer.iso(None) == ""
    assert viewer.localize([None, datetime(2026, 1, 1)])[0] is None
    # An aware value is a moment already: shown in the zone, not read as UTC twice.
    assert viewer.when(datetime(2026, 12, 4, 10, 31, tzinfo=viewer.zone())) == "Dec 4, 2026, 10:31 AM"
    assert viewer.when(datetime(2026, 12, 4, 1, 31, tzinfo=UTC)) == "Dec 4, 2026, 10:31 AM"


def _note_page() -> None:
    from mindroute.ui import viewer

    viewer.zone_note()


def test_apptest_has_no_browser_zone_so_the_note_says_utc() -> None:
    at = AppTest.from_function(_note_page).run()
    assert not at.exception
    assert [c.value for c in at.caption] == ["Times are in UTC."]


def test_times_in_the_viewers_language() -> None:
    viewer.remember_choice("Asia/Seoul")
    with i18n.using("ko"):
        assert viewer.when(datetime(2026, 12, 2, 6, 4)) == "2026. 12. 2. 오후 3:04"
        assert viewer.when(None) == "없음"
        assert viewer.ago(datetime.now(UTC) - timedelta(minutes=3)) == "3분 전"
    assert viewer.ago(datetime.now(UTC) - timedelta(minutes=3)) == "3 minutes ago"
