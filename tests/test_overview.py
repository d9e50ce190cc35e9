"""The overview's figures: the viewer's today, usage sums, and providers failing in the last hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
    assert "None: all 2 call(s) in the last hour succeeded." in texts(at)
    assert "No calls in the last hour." not in texts(at)
