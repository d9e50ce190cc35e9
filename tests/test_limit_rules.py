"""Limit rules on SQLite and PostgreSQL: targets, validation at the field, who may set which rule, the audit row,
the rules a call meets (the default gives way to a user's own rule), and budget periods in any time zone."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from mindroute import security
from mindroute.db import transaction
from mindroute.errors import ConflictError, NotFound, PermissionDenied
from mindroute.models import AuditLog, Limit, Provider, User
from mindroute.services import api_keys, limit_admin
from mindroute.services import limit_rules as lr
from mindroute.validation import ValidationError

PASSWORD_HASH = security.hash_password("correct horse battery")


def _user(session: Session, email: str, role: str = "user") -> User:
    user = User(email=email, name=email.split("@")[0], role=role, is_active=True, password=PASSWORD_HASH)
    session.add(user)
    session.flush()
    return user


@pytest.fixture
def world(engine: Engine) -> dict[str, uuid.UUID]:
    with transaction(engine) as session:
        admin = _user(session, "admin@example.com", "admin")
        ann = _user(session, "ann@example.com")
        bob = _user(session, "bob@example.com")
        provider = Provider(name="OpenAI", protocol="openai")
        session.add(provider)
        session.flush()
        key = api_keys.create_key(session, ann, ann.id, "ci", None).key
        return {"admin": admin.id, "ann": ann.id, "bob": bob.id, "provider": provider.id, "key": key.id}


def _get(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    assert user is not None
    return user


def test_targets_parse_and_refuse_garbage() -> None:
    key = uuid.uuid4()
    assert lr.parse_target(lr.key_target(key, owner=True)) == lr.Target(f"key:{key}:owner", "key", "owner", key)
    assert lr.parse_target(lr.key_target(key)).counter_key == f"key:{key}"
    assert lr.parse_target(lr.DEFAULT_TARGET).counter_key is None
    for bad in ("users:1", f"user:{key}:owner", "provider:not-a-uuid", ""):
        with pytest.raises(ValidationError) as caught:
            lr.parse_target(bad)
        assert caught.value.field == "target"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"rpm": "ten"}, "rpm"),
        ({"rpm": 0}, "rpm"),
        ({"tpm": -5}, "tpm"),
        ({"budget_usd": "lots"}, "budget_usd"),
        ({"budget_usd": "0"}, "budget_usd"),
        ({"budget_usd": "nan"}, "budget_usd"),
        ({"budget_tokens": 1.5}, "budget_tokens"),
        ({"period": "year"}, "period"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"warn_percent": 101}, "warn_percent"),
        ({"warn_percent": ""}, "warn_percent"),
    ],
)
def test_validation_names_the_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        lr.validate_settings(**values)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_validation_reads_form_text() -> None:
    settings = lr.validate_settings(
        rpm="10", tpm="3000000000", budget_usd="$1,250.50", period="week", timezone="Asia/Kolkata"
    )
    assert settings == lr.LimitSettings(10, 3_000_000_000, 1250.5, None, "week", "Asia/Kolkata", 80)
    assert lr.validate_settings().empty


def test_admin_sets_changes_and_clears_with_audit_rows(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    target = lr.user_target(world["ann"])
    with transaction(engine) as session:
        limit_admin.set_limit(
            session, _get(session, world["admin"]), target, lr.validate_settings(rpm=10, budget_usd=5)
        )
    with transaction(engine) as session:
        limit_admin.set_limit(
            session, _get(session, world["admin"]), target, lr.validate_settings(rpm=20, budget_usd=5)
        )
    with Session(engine) as session:
        row = limit_admin.get_limit(session, target)
        assert row is not None and (row.rpm, row.budget_usd, row.scope, row.user_id) == (20, 5.0, "user", world["ann"])
        audit_rows = list(
            session.scalars(select(AuditLog).where(AuditLog.action == "limit.set").order_by(AuditLog.seq))
        )
        assert [r.target_id for r in audit_rows] == [target, target]
        assert audit_rows[-1].changes == {"rpm": [10, 20]}
        assert audit_rows[-1].actor_user_id == world["admin"]
    with transaction(engine) as session:
        assert limit_admin.set_limit(session, _get(session, world["admin"]), target, lr.LimitSettings()) is None
    with Session(engine) as session:
        assert limit_admin.get_limit(session, target) is None
        assert session.scalar(select(func.count()).where(AuditLog.action == "limit.clear")) == 1


def test_who_may_set_which_rule(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    tight = lr.validate_settings(rpm=1)
    with transaction(engine) as session:
        ann, bob = _get(session, world["ann"]), _get(session, world["bob"])
        for target in (lr.DEFAULT_TARGET, lr.user_target(ann.id), lr.key_target(world["key"])):
            with pytest.raises(PermissionDenied):
                limit_admin.set_limit(session, ann, target, tight)
        with pytest.raises(PermissionDenied):
            limit_admin.set_limit(session, bob, lr.key_target(world["key"], owner=True), tight)
        with pytest.raises(PermissionDenied):
            limit_admin.list_limits(session, ann)
        with pytest.raises(NotFound):
            limit_admin.set_limit(session, _get(session, world["admin"]), lr.user_target(uuid.uuid4()), tight)
        assert session.scalar(select(func.count()).select_from(Limit)) == 0
    with transaction(engine) as session:
        row = limit_admin.set_limit(
            session, _get(session, world["ann"]), lr.key_target(world["key"], owner=True), tight
        )
        assert row is not None and (row.set_by, row.user_id, row.api_key_id) == ("owner", world["ann"], world["key"])


def test_rules_for_call_default_gives_way_and_tightest_are_all_there(
    engine: Engine, world: dict[str, uuid.UUID]
) -> None:
    ann, bob, key, provider = world["ann"], world["bob"], world["key"], world["provider"]
    with transaction(engine) as session:
        admin = _get(session, world["admin"])
        limit_admin.set_limit(session, admin, lr.DEFAULT_TARGET, lr.validate_settings(rpm=100))
        limit_admin.set_limit(session, admin, lr.user_target(ann), lr.validate_settings(rpm=500))
        limit_admin.set_limit(session, admin, lr.key_target(key), lr.validate_settings(rpm=50))
        limit_admin.set_limit(session, _get(session, ann), lr.key_target(key, owner=True), lr.validate_settings(rpm=5))
        limit_admin.set_limit(session, admin, lr.provider_target(provider), lr.validate_settings(budget_usd=1000))
    with Session(engine) as session:
        rules = lr.rules_for_call(session, ann, key, provider)
        assert [(r.target, r.counter_key, r.rpm) for r in rules] == [
            (lr.user_target(ann), lr.user_target(ann), 500),
            (lr.key_target(key), lr.key_target(key), 50),
            (lr.key_target(key, owner=True), lr.key_target(key), 5),
            (lr.provider_target(provider), lr.provider_target(provider), None),
        ]
        assert lr.counted_targets(rules) == (lr.user_target(ann), lr.key_target(key), lr.provider_target(provider))
        assert "'ci'" in rules[2].label and "owner" in rules[2].label
        assert "OpenAI" in rules[3].label
        # Bob has no rule of his own: the default applies, counted on him; the playground has no key.
        bobs = lr.rules_for_call(session, bob, None, None)
        assert [(r.target, r.counter_key, r.rpm) for r in bobs] == [(lr.DEFAULT_TARGET, lr.user_target(bob), 100)]
        assert {r.target for r in lr.rules_of_user(session, ann)} == {
            lr.DEFAULT_TARGET,
            lr.user_target(ann),
            lr.key_target(key),
            lr.key_target(key, owner=True),
        }


def test_no_rules_means_nothing_to_meet(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    with Session(engine) as session:
        assert lr.rules_for_call(session, world["ann"], world["key"], world["provider"]) == ()


def test_deleting_the_key_takes_its_rules(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    with transaction(engine) as session:
        limit_admin.set_limit(
            session, _get(session, world["admin"]), lr.key_target(world["key"]), lr.validate_settings(rpm=3)
        )
    with transaction(engine) as session:
        api_keys.delete_key(session, _get(session, world["ann"]), world["key"])
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Limit)) == 0


@pytest.mark.parametrize(
    ("period", "zone", "now", "key", "start", "end"),
    [
        # Asia/Kolkata is UTC+05:30: its day starts at 18:30 UTC the evening before.
        ("day", "Asia/Kolkata", datetime(2026, 12, 2, 18, 29), "2026-12-02", (12, 1, 18, 30), (12, 2, 18, 30)),
        ("day", "Asia/Kolkata", datetime(2026, 12, 2, 18, 30), "2026-12-03", (12, 2, 18, 30), (12, 3, 18, 30)),
        # Australia/Adelaide is UTC+10:30 in December (summer time).
        ("month", "Australia/Adelaide", datetime(2026, 11, 30, 13, 30), "2026-12-01", (11, 30, 13, 30), (12, 31, 13, 30)),  # noqa: E501
        # Weeks start on Monday: Thursday 3 December 2026 is in the week of Monday 30 November.
        ("week", "UTC", datetime(2026, 12, 3, 12, 0), "2026-11-30", (11, 30, 0, 0), (12, 7, 0, 0)),
    ],
)  # fmt: skip
def test_periods_in_half_hour_zones(
    period: str, zone: str, now: datetime, key: str, start: tuple[int, ...], end: tuple[int, ...]
) -> None:
    window = lr.period_window(period, zone, now)
    assert window.key == f"{period}:{zone}:{key}"
    assert window.start == datetime(2026, *start)
    assert window.end == datetime(2026, *end)
    assert 0.0 <= (window.elapsed_fraction(now) or 0.0) < 1.0


def test_month_across_a_dst_change_and_total() -> None:
    # Europe/Berlin leaves summer time on 25 October 2026: October is an hour longer than 31 days.
    window = lr.period_window("month", "Europe/Berlin", datetime(2026, 10, 15))
    assert (window.start, window.end) == (datetime(2026, 9, 30, 22, 0), datetime(2026, 10, 31, 23, 0))
    total = lr.period_window("total", "Asia/Seoul", datetime(2026, 10, 15))
    assert (total.key, total.start, total.end, total.elapsed_fraction(datetime(2026, 10, 15))) == (
        "total",
        None,
        None,
        None,
    )


def test_minute_windows() -> None:
    assert lr.minute_window(datetime(1970, 1, 1, 0, 1, 59)) == 1
    assert lr.minute_window(datetime(2026, 12, 3, 0, 0, 0)) + 1 == lr.minute_window(datetime(2026, 12, 3, 0, 1, 0))


def test_a_save_from_a_stale_form_is_refused(engine: Engine, world: dict[str, uuid.UUID]) -> None:
    target = lr.user_target(world["ann"])
    with transaction(engine) as session:
        with pytest.raises(ConflictError):  # the form saw a rule that is not there
            limit_admin.set_limit(
                session, _get(session, world["admin"]), target, lr.validate_settings(rpm=1), datetime(2026, 1, 1)
            )
        row = limit_admin.set_limit(session, _get(session, world["admin"]), target, lr.validate_settings(rpm=1), None)
        assert row is not None
        opened = row.updated_at
    with transaction(engine) as session:  # someone else saves meanwhile
        limit_admin.set_limit(session, _get(session, world["admin"]), target, lr.validate_settings(rpm=2), opened)
    with transaction(engine) as session:
        with pytest.raises(ConflictError):
            limit_admin.set_limit(session, _get(session, world["admin"]), target, lr.validate_settings(rpm=3), opened)
        with pytest.raises(ConflictError):
            limit_admin.set_limit(session, _get(session, world["admin"]), target, lr.LimitSettings(), opened)
    with Session(engine) as session:
        stored = limit_admin.get_limit(session, target)
        assert stored is not None and stored.rpm == 2
