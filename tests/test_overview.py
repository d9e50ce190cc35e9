"""The overview's figures: the viewer's today, usage sums, and providers failing in the last hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from mindroute.analytics.rollups import rebuild_rollups
from mindroute.db import transaction
from mindroute.models import Log, Provider, User, utcnow
from mindroute.services import overview
from tests.pages.helpers import add_user, app_for, sign_in, texts


def test_today_starts_at_the_viewers_midnight() -> None:
    now = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # already the 2nd in Seoul
    assert overview.start_of_viewer_day(overview.viewer_zone("Asia/Seoul"), now=now) == datetime(2026, 3, 1, 15, 0)
    assert overview.start_of_viewer_day(overview.viewer_zone("UTC"), now=now) == datetime(2026, 3, 1, 0, 0)
    assert overview.viewer_zone("Not/AZone").key == "UTC"


def _seed(engine) -> tuple[User, Provider, Provider]:
    with transaction(engine) as session:
        user = User(email="u@example.com", name="U", password="x")
        good, bad = Provider(name="Good"), Provider(name="Flaky")
        session.add_all([user, good, bad])
        session.flush()
        recent, old = utcnow() - timedelta(minutes=10), utcnow() - timedelta(hours=3)
        session.add_all(
            [
                Log(
                    user_id=user.id,
                    provider_id=good.id,
                    request_type="chat",
                    status_code=200,
                    tokens_used=10,
                    created_at=recent,
                ),
                Log(user_id=user.id, provider_id=bad.id, request_type="chat", status_code=502, created_at=recent),
                Log(
                    user_id=user.id,
                    provider_id=bad.id,
                    request_type="chat",
                    status_code=200,
                    tokens_used=5,
                    created_at=recent,
                ),
                Log(user_id=user.id, provider_id=good.id, request_type="chat", status_code=500, created_at=old),
            ]
        )
    return user, good, bad


def test_usage_and_failing_providers(engine) -> None:
    user, _, _ = _seed(engine)
    with transaction(engine) as session:
        mine = overview.usage_since(session, utcnow() - timedelta(hours=1), user.id)
        assert (mine.requests, mine.tokens, mine.errors) == (3, 15, 1)
        failing = overview.providers_with_recent_errors(session, utcnow() - timedelta(hours=1))
    assert failing == [overview.ProviderErrors(name="Flaky", errors=1, requests=2)]


def test_admin_overview_lists_failing_providers(engine, monkeypatch) -> None:
    _seed(engine)
    add_user(engine, "admin@example.com", role="admin")
    at = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com")
    assert "Providers with errors in the last hour" in [s.value for s in at.subheader]
    frame = at.dataframe[0].value
    assert list(frame["Provider"]) == ["Flaky"] and list(frame["Errors"]) == [1]


def test_plain_user_sees_only_their_own_usage(engine, monkeypatch) -> None:
    _seed(engine)
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "other@example.com")
    at = sign_in(app_for(engine, monkeypatch).run(), "other@example.com")
    assert "Whole organisation" not in texts(at) + " ".join(s.value for s in at.subheader)
    assert [m.value for m in at.metric][:1] == ["0"]


def _admin_overview(engine, monkeypatch):
    add_user(engine, "admin@example.com", role="admin")
    return sign_in(app_for(engine, monkeypatch).run(), "admin@example.com")


def test_admin_overview_says_when_there_were_no_calls_in_the_last_hour(engine, monkeypatch) -> None:
    """Issue 13, item 14: no calls is not "every call succeeded"; an old failure is not in the last hour."""
    with transaction(engine) as session:
        provider = Provider(name="Quiet")
        session.add(provider)
        session.flush()
        session.add(
            Log(provider_id=provider.id, request_type="chat", status_code=500, created_at=utcnow() - timedelta(hours=3))
        )
    at = _admin_overview(engine, monkeypatch)
    assert "No calls in the last hour." in texts(at)
    assert "succeeded" not in texts(at) and not at.dataframe


def test_admin_overview_counts_the_calls_that_all_succeeded(engine, monkeypatch) -> None:
    with transaction(engine) as session:
        provider = Provider(name="Fine")
        session.add(provider)
        session.flush()
        recent = utcnow() - timedelta(minutes=5)
        session.add_all(
            Log(provider_id=provider.id, request_type="chat", status_code=200, created_at=recent) for _ in range(2)
        )
    at = _admin_overview(engine, monkeypatch)
    assert "None: all 2 calls in the last hour succeeded." in texts(at)
    assert "No calls in the last hour." not in texts(at)


def test_the_last_7_days_are_the_viewers_days(engine) -> None:
    """One row per day of the viewer's zone, today last; an administrator's are everyone's calls, a user's their own."""
    user, good, _bad = _seed(engine)  # 4 calls of U's in the last 3 hours, 1 failing in the last hour, 1 earlier
    with transaction(engine) as session:
        other = User(email="o@example.com", name="O", password="x")
        session.add(other)
        session.flush()
        four_days_ago = utcnow() - timedelta(days=4)
        session.add_all(
            Log(user_id=other.id, provider_id=good.id, request_type="chat", status_code=200, tokens_used=7,
                created_at=four_days_ago)
            for _ in range(3)
        )  # fmt: skip
    rebuild_rollups(engine, progress=False)
    admin = SimpleNamespace(id=user.id, role="admin")
    days = overview.last_days(engine, admin, "Asia/Seoul")
    assert len(days) == 7 and days["start"].is_monotonic_increasing
    assert days["start"].iloc[-1].date() == datetime.now(UTC).astimezone(overview.viewer_zone("Asia/Seoul")).date()
    assert all(s.hour == 0 and s.minute == 0 for s in days["start"])  # local midnights
    assert int(days["requests"].sum()) == 7 and int(days["errors"].sum()) == 2 and int(days["tokens"].sum()) == 36
    mine = overview.last_days(engine, SimpleNamespace(id=user.id, role="user"), "UTC")
    assert int(mine["requests"].sum()) == 4 and int(mine["tokens"].sum()) == 15


def test_the_overview_links_onward_and_draws_the_week(engine, monkeypatch) -> None:
    _seed(engine)
    rebuild_rollups(engine, progress=False)
    at = _admin_overview(engine, monkeypatch)
    assert not at.exception
    links = {link.proto.label: link.proto.page for link in at.page_link}
    assert {"Usage", "Playground", "API keys", "Providers"} <= set(links), links  # onward, an administrator's too
    assert links["Usage"].strip("/") == "usage"
    assert "Last 7 days" in [s.value for s in at.subheader]
    assert "Budget alerts" in [s.value for s in at.subheader]
    assert any("Times are in" in c.value for c in at.caption)

    add_user(engine, "plain@example.com")
    at = sign_in(app_for(engine, monkeypatch).run(), "plain@example.com")
    links = {link.proto.label for link in at.page_link}
    assert "Usage" in links and "Providers" not in links  # never an admin page for a user
    assert "Budget alerts" not in [s.value for s in at.subheader]
