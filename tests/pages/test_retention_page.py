"""Log retention in AppTest: review, confirm or cancel, a progress bar, the result, bad numbers, admins only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select

from mindroute.analytics.rollups import rebuild_rollups
from mindroute.db import transaction
from mindroute.models import Log, Provider, User, utcnow
from mindroute.services import log_explorer
from mindroute.services.log_explorer import RETENTION_DAYS_MAX
from mindroute.ui import navigation
from tests.pages.helpers import add_user, app_for, click, error_under, sign_in, texts
from tests.test_analytics import insert_rows, log_row

RETENTION = "pages/admin/retention.py"


@pytest.fixture
def aged_calls(engine: Engine) -> dict[str, int]:
    """alice's calls: 5 made 100 days ago, 3 made 10 days ago, 2 made today."""
    add_user(engine, "admin@example.com", role="admin")
    alice = add_user(engine, "alice@example.com")
    with transaction(engine) as session:
        provider = Provider(name="P1", settings={"models": ["m-big"], "default_model": None, "prices": {}})
        session.add(provider)
    now = utcnow()
    ages = [timedelta(days=100)] * 5 + [timedelta(days=10)] * 3 + [timedelta(hours=1)] * 2
    insert_rows(
        engine, [log_row(now - age - timedelta(minutes=i), alice, provider, "m-big") for i, age in enumerate(ages)]
    )
    rebuild_rollups(engine, progress=False)
    return {"old": 5, "middle": 3, "recent": 2}


def call_count(engine: Engine) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(Log))


def on_retention(engine: Engine, monkeypatch, email: str = "admin@example.com"):
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    at.switch_page(RETENTION).run()
    assert not at.exception, at.exception
    return at


def review(at, days: int):
    at.number_input(key="retention_days").set_value(days)
    return click(at, "retention_review_submit")


def test_review_then_confirm_deletes_the_old_calls(engine: Engine, monkeypatch, aged_calls) -> None:
    at = on_retention(engine, monkeypatch)
    assert any(t.value.startswith("Oldest call in the logs: ") for t in at.text)
    at = review(at, 30)
    assert "This deletes 5 calls made before" in texts(at)
    assert call_count(engine) == 10  # nothing yet: reviewing only counts
    assert at.button(key="retention_confirm").label == "Delete 5 calls"

    at = click(at, "retention_confirm")
    assert not at.exception, at.exception
    assert "Deleted 5 calls made before" in " ".join(s.value for s in at.success)
    assert call_count(engine) == 5
    assert "This deletes" not in texts(at)  # the plan is done with

    at = review(at, 5)
    at = click(at, "retention_confirm")
    assert call_count(engine) == 2


def test_the_deletion_reports_its_progress_to_the_bar(engine: Engine, monkeypatch, aged_calls) -> None:
    reports: list[tuple[int, int]] = []
    real = log_explorer.prune_calls

    def in_small_batches(engine_, actor, plan, *, on_progress=None):
        def report(done: int, total: int) -> None:
            reports.append((done, total))
            on_progress(done, total)  # the page's callback, which moves its progress bar

        return real(engine_, actor, plan, on_progress=report, batch_rows=2)

    monkeypatch.setattr(log_explorer, "prune_calls", in_small_batches)
    at = click(review(on_retention(engine, monkeypatch), 30), "retention_confirm")
    assert not at.exception, at.exception
    assert reports[-1] == (5, 5) and len(reports) >= 3
    assert "Deleted 5 calls" in " ".join(s.value for s in at.success)


def test_cancel_deletes_nothing(engine: Engine, monkeypatch, aged_calls) -> None:
    at = review(on_retention(engine, monkeypatch), 1)
    assert "This deletes 8 calls" in texts(at)
    at = click(at, "retention_cancel")
    assert "This deletes" not in texts(at)
    assert not [b for b in at.button if b.key == "retention_confirm"]
    assert call_count(engine) == 10


def test_nothing_to_delete_says_so(engine: Engine, monkeypatch, aged_calls) -> None:
    at = review(on_retention(engine, monkeypatch), 365)
    assert "nothing to delete" in texts(at)
    assert not [b for b in at.button if b.key == "retention_confirm"]


@pytest.mark.parametrize("days", [0, -7, RETENTION_DAYS_MAX + 1])
def test_a_bad_number_of_days_is_refused_at_the_field(engine: Engine, monkeypatch, aged_calls, days: int) -> None:
    at = review(on_retention(engine, monkeypatch), days)
    assert error_under(at, "retention_days") == (
        f"Days must be a whole number from 1 to {RETENTION_DAYS_MAX:,} (got {days})"
    )
    assert not [b for b in at.button if b.key == "retention_confirm"]
    assert call_count(engine) == 10


def test_an_admin_demoted_after_reviewing_cannot_confirm(engine: Engine, monkeypatch, aged_calls) -> None:
    add_user(engine, "second@example.com", role="admin")
    at = review(on_retention(engine, monkeypatch, "second@example.com"), 30)
    with transaction(engine) as session:
        session.scalar(select(User).where(User.email == "second@example.com")).role = "user"
    at = click(at, "retention_confirm")
    assert "Overview" in texts(at)  # the page is gone from a user's navigation: back to the default page
    assert "Deleted" not in texts(at)
    assert call_count(engine) == 10


def test_retention_is_an_admin_page() -> None:
    spec = next(p for p in navigation.PAGES if p.path == RETENTION)
    assert spec.roles == ("admin",)
