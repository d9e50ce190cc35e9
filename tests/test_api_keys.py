"""API keys on SQLite and PostgreSQL: issuing, digest-only storage, verification, rotation, use, who sees what."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text, update

from mindroute import security
from mindroute.db import transaction
from mindroute.errors import NotFound, PermissionDenied
from mindroute.models import ApiKey, User, utcnow
from mindroute.services import api_keys
from mindroute.services.api_keys import KeyRefusal, KeyState, RotationGrace, VerifiedKey
from mindroute.validation import ValidationError

# bcrypt costs ~0.25 s a hash: users are inserted with this one precomputed hash.
PASSWORD_HASH = security.hash_password("correct horse battery")


def add_user(engine, email: str, role: str = "user", active: bool = True) -> User:
    with transaction(engine) as session:
        user = User(email=email, name=email.split("@")[0].title(), role=role, password=PASSWORD_HASH, is_active=active)
        session.add(user)
    return user


def create(engine, actor: User, owner: User | None = None, name: str = "CI", expires: datetime | None = None):
    with transaction(engine) as session:
        return api_keys.create_key(session, actor, (owner or actor).id, name, expires)


def verify(engine, presented: str | None):
    with transaction(engine) as session:
        return api_keys.verify_key(session, presented)


def set_key(engine, key_id: uuid.UUID, **values) -> None:
    with transaction(engine) as session:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(**values))


def key_count(engine) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(ApiKey)) or 0


# --- issuing --------------------------------------------------------------------------------


def test_a_new_key_is_returned_once_and_only_its_digest_and_prefix_are_stored(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    key, plaintext = create(engine, alice, expires=utcnow() + timedelta(days=30))
    assert plaintext.startswith("mr-") and len(plaintext) > 40
    assert plaintext not in repr(api_keys.IssuedApiKey(key, plaintext))
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM apikeys")).mappings().one()
    assert row["key"] == security.digest(plaintext) and row["prefix"] == plaintext[:10]
    secret_part = plaintext[len(row["prefix"]) :]
    for column, value in row.items():
        assert plaintext not in str(value) and secret_part not in str(value), column
    [listed] = _mine(engine, alice)
    assert (listed.name, listed.prefix, listed.state, listed.last_used_at) == ("CI", key.prefix, KeyState.ACTIVE, None)


def _mine(engine, actor: User, state: str | None = None) -> list[api_keys.ApiKeyRow]:
    with transaction(engine) as session:
        return api_keys.list_my_keys(session, actor, state)


def test_expiry_presets_and_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0)
    assert api_keys.expiry_from_preset("30 days", now) == datetime(2026, 1, 31, 12, 0)
    assert api_keys.expiry_from_preset("90 days", now) == now + timedelta(days=90)
    assert api_keys.expiry_from_preset("365 days", now) == now + timedelta(days=365)
    assert api_keys.expiry_from_preset("Never", now) is None
    with pytest.raises(ValidationError) as unknown:
        api_keys.expiry_from_preset("forever", now)
    assert unknown.value.field == "expires_at"
    # A key expiring on 1 March in Seoul works through that day there: until 15:00 UTC.
    assert api_keys.expiry_from_date(date(2026, 3, 1), ZoneInfo("Asia/Seoul")) == datetime(2026, 3, 1, 15, 0)
    assert api_keys.expiry_from_date(date(2026, 3, 1)) == datetime(2026, 3, 2, 0, 0)


@pytest.mark.parametrize(
    "name,expires,field",
    [
        ("CI", utcnow() - timedelta(days=1), "expires_at"),
        ("CI", datetime.now(UTC) - timedelta(seconds=5), "expires_at"),
        ("", None, "name"),
        ("   ", None, "name"),
        ("k" * 256, None, "name"),
    ],
)
def test_bad_name_or_past_expiry_is_refused_and_nothing_written(engine, name, expires, field) -> None:
    alice = add_user(engine, "alice@example.com")
    with pytest.raises(ValidationError) as refused:
        create(engine, alice, name=name, expires=expires)
    assert refused.value.field == field
    assert key_count(engine) == 0


def test_an_aware_expiry_is_stored_as_naive_utc(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    seoul_noon = datetime(2099, 6, 1, 12, 0, tzinfo=ZoneInfo("Asia/Seoul"))
    key, _ = create(engine, alice, expires=seoul_noon)
    assert _mine(engine, alice)[0].expires_at == datetime(2099, 6, 1, 3, 0) == key.expires_at


def test_admins_create_keys_for_others_but_users_only_for_themselves(engine) -> None:
    admin, alice = add_user(engine, "admin@example.com", role="admin"), add_user(engine, "alice@example.com")
    bob = add_user(engine, "bob@example.com")
    key, plaintext = create(engine, admin, owner=alice)
    verified = verify(engine, plaintext)
    assert verified.key_id == key.id and verified.user.id == alice.id
    with pytest.raises(PermissionDenied):
        create(engine, bob, owner=alice)
    off = add_user(engine, "off@example.com", active=False)
    with pytest.raises(ValidationError) as deactivated:
        create(engine, admin, owner=off)
    assert deactivated.value.field == "owner_id"
    with pytest.raises(PermissionDenied):
        create(engine, off)
    assert key_count(engine) == 1


# --- verification ---------------------------------------------------------------------------


def test_a_valid_key_verifies_to_its_owner_and_writes_nothing(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    key, plaintext = create(engine, alice)
    verified = verify(engine, plaintext)
    assert isinstance(verified, VerifiedKey) and verified.key_id == key.id and verified.user.email == alice.email
    assert _mine(engine, alice)[0].last_used_at is None


@pytest.mark.parametrize(
    "presented",
    [None, "", "mr-", "sk-notours0123456789012345678901234567890", "mr-" + "A" * 43, "mr-" + "x" * 5000, 42],
)
def test_unknown_or_malformed_keys_are_refused_as_unknown(engine, presented) -> None:
    alice = add_user(engine, "alice@example.com")
    create(engine, alice)
    assert verify(engine, presented) is KeyRefusal.UNKNOWN


def test_a_key_with_one_character_changed_is_unknown(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    _, plaintext = create(engine, alice)
    tampered = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    assert verify(engine, tampered) is KeyRefusal.UNKNOWN


def test_an_expired_key_is_refused_as_expired(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    key, plaintext = create(engine, alice, expires=utcnow() + timedelta(days=1))
    set_key(engine, key.id, expires_at=utcnow() - timedelta(seconds=1))
    assert verify(engine, plaintext) is KeyRefusal.EXPIRED
    assert _mine(engine, alice)[0].state is KeyState.EXPIRED
    assert KeyRefusal.EXPIRED.message == "This API key has expired"


def test_a_revoked_key_is_refused_at_once_even_if_also_expired(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    key, plaintext = create(engine, alice)
    with transaction(engine) as session:
        row = api_keys.revoke_key(session, alice, key.id)
    assert row.state is KeyState.REVOKED and row.stops_at is None
    assert verify(engine, plaintext) is KeyRefusal.REVOKED
    set_key(engine, key.id, expires_at=utcnow() - timedelta(days=1))
    assert verify(engine, plaintext) is KeyRefusal.REVOKED


def test_a_deactivated_owners_key_is_refused(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    _, plaintext = create(engine, alice)
    with transaction(engine) as session:
        session.execute(update(User).where(User.id == alice.id).values(is_active=False))
    assert verify(engine, plaintext) is KeyRefusal.OWNER_DEACTIVATED


# --- rotation -------------------------------------------------------------------------------


def rotate(engine, actor: User, key_id: uuid.UUID, grace: RotationGrace | str) -> api_keys.IssuedApiKey:
    with transaction(engine) as session:
        return api_keys.rotate_key(session, actor, key_id, grace)


def test_rotation_without_grace_stops_the_old_key_now(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    old, old_plaintext = create(engine, alice, name="deploy", expires=utcnow() + timedelta(days=90))
    new, new_plaintext = rotate(engine, alice, old.id, RotationGrace.NONE)
    assert new_plaintext != old_plaintext and new.name == "deploy"
    # Same expiry policy: a 90-day key is replaced by a 90-day key.
    lifetime = new.expires_at - new.created_at
    assert lifetime == old.expires_at - old.created_at and timedelta(days=89, hours=23) < lifetime <= timedelta(days=90)
    assert verify(engine, old_plaintext) is KeyRefusal.REVOKED
    assert isinstance(verify(engine, new_plaintext), VerifiedKey)
    states = {row.id: row.state for row in _mine(engine, alice)}
    assert states == {old.id: KeyState.REVOKED, new.id: KeyState.ACTIVE}


def test_rotation_with_grace_keeps_both_keys_working_until_the_grace_ends(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    old, old_plaintext = create(engine, alice, name="deploy")
    before = utcnow()
    new, new_plaintext = rotate(engine, alice, old.id, "1 hour")
    assert new.expires_at is None  # a key that never expires is replaced by one that never expires
    assert isinstance(verify(engine, old_plaintext), VerifiedKey)
    assert isinstance(verify(engine, new_plaintext), VerifiedKey)
    rows = {row.id: row for row in _mine(engine, alice)}
    assert rows[old.id].state is KeyState.ACTIVE and rows[old.id].rotating_out
    assert before + timedelta(hours=1) <= rows[old.id].stops_at <= utcnow() + timedelta(hours=1)
    assert not rows[new.id].rotating_out and rows[new.id].stops_at is None
    # An hour later (moved back rather than waited for) only the replacement works.
    set_key(engine, old.id, revoked_at=utcnow() - timedelta(seconds=1))
    assert verify(engine, old_plaintext) is KeyRefusal.REVOKED
    assert isinstance(verify(engine, new_plaintext), VerifiedKey)


def test_a_24_hour_grace_and_revoking_during_it(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    old, old_plaintext = create(engine, alice)
    rotate(engine, alice, old.id, RotationGrace.ONE_DAY)
    row = _mine(engine, alice)[-1]
    assert row.id == old.id and timedelta(hours=23, minutes=59) < row.stops_at - utcnow() <= timedelta(hours=24)
    with transaction(engine) as session:  # revoking ends the grace now
        api_keys.revoke_key(session, alice, old.id)
    assert verify(engine, old_plaintext) is KeyRefusal.REVOKED


def test_the_old_keys_own_expiry_still_applies_during_the_grace(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    old, old_plaintext = create(engine, alice, expires=utcnow() + timedelta(days=30))
    rotate(engine, alice, old.id, RotationGrace.ONE_DAY)
    set_key(engine, old.id, expires_at=utcnow() - timedelta(seconds=1))
    assert verify(engine, old_plaintext) is KeyRefusal.EXPIRED


def test_a_key_is_rotated_once_and_bad_grace_is_refused(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    old, _ = create(engine, alice)
    with pytest.raises(ValidationError) as bad_grace:
        rotate(engine, alice, old.id, "1 week")
    assert bad_grace.value.field == "grace" and key_count(engine) == 1
    rotate(engine, alice, old.id, RotationGrace.ONE_HOUR)
    with pytest.raises(ValidationError) as again:
        rotate(engine, alice, old.id, RotationGrace.NONE)
    assert again.value.field == "key" and key_count(engine) == 2


# --- lastUsedAt -----------------------------------------------------------------------------


def touch(engine, key_id: uuid.UUID, now: datetime) -> bool:
    with transaction(engine) as session:
        return api_keys.touch_last_used(session, key_id, now)


def test_last_used_is_written_at_most_once_a_minute(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    key, _ = create(engine, alice)
    with transaction(engine) as session:
        updated_at = session.get(ApiKey, key.id).updated_at
    now = utcnow()
    assert touch(engine, key.id, now) is True
    assert touch(engine, key.id, now + timedelta(seconds=30)) is False
    assert _mine(engine, alice)[0].last_used_at == now
    assert touch(engine, key.id, now + timedelta(seconds=61)) is True
    assert _mine(engine, alice)[0].last_used_at == now + timedelta(seconds=61)
    with transaction(engine) as session:  # a use is not an edit
        assert session.get(ApiKey, key.id).updated_at == updated_at


def test_two_processes_touching_one_key_at_once_write_once(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    key, _ = create(engine, alice)
    now = utcnow()
    second: list[bool] = []
    with transaction(engine) as first:
        assert api_keys.touch_last_used(first, key.id, now) is True
        # The other process touches while the first has not committed: it waits, then finds the fresh value.
        other = threading.Thread(target=lambda: second.append(touch(engine, key.id, now + timedelta(seconds=1))))
        other.start()
        other.join(timeout=0.5)
        assert other.is_alive()  # blocked behind the first writer
    other.join(timeout=15)
    assert second == [False]
    assert _mine(engine, alice)[0].last_used_at == now


# --- who may do what ------------------------------------------------------------------------


def test_a_user_cannot_see_or_change_another_users_keys(engine) -> None:
    alice, bob = add_user(engine, "alice@example.com"), add_user(engine, "bob@example.com")
    key, plaintext = create(engine, alice)
    create(engine, bob, name="bob's")
    for action in (
        lambda s: api_keys.get_key(s, bob, key.id),
        lambda s: api_keys.revoke_key(s, bob, key.id),
        lambda s: api_keys.delete_key(s, bob, key.id),
        lambda s: api_keys.rotate_key(s, bob, key.id, RotationGrace.NONE),
    ):
        with pytest.raises(NotFound) as hidden:
            with transaction(engine) as session:
                action(session)
        # The same answer as for a key that does not exist.
        with pytest.raises(NotFound) as missing:
            with transaction(engine) as session:
                api_keys.get_key(session, bob, uuid.uuid4())
        assert str(hidden.value) == str(missing.value)
    with pytest.raises(PermissionDenied):
        with transaction(engine) as session:
            api_keys.list_all_keys(session, bob)
    assert [row.name for row in _mine(engine, bob)] == ["bob's"]
    assert isinstance(verify(engine, plaintext), VerifiedKey) and key_count(engine) == 2


def test_admins_list_every_key_with_its_owner_filter_it_and_revoke_any(engine) -> None:
    admin = add_user(engine, "admin@example.com", role="admin")
    alice, bob = add_user(engine, "alice@example.com"), add_user(engine, "bob@example.com")
    a1, a1_plaintext = create(engine, alice, name="a1")
    a2, _ = create(engine, alice, name="a2")
    b1, _ = create(engine, bob, name="b1")
    set_key(engine, a2.id, expires_at=utcnow() - timedelta(minutes=1))

    def listing(**filters) -> list[tuple[str, str]]:
        with transaction(engine) as session:
            page = api_keys.list_all_keys(session, admin, **filters)
        return sorted((row.name, row.owner_email) for row in page.rows)

    assert listing() == [("a1", "alice@example.com"), ("a2", "alice@example.com"), ("b1", "bob@example.com")]
    assert listing(user_id=alice.id) == [("a1", "alice@example.com"), ("a2", "alice@example.com")]
    assert listing(state="expired") == [("a2", "alice@example.com")]
    assert listing(user_id=alice.id, state=KeyState.ACTIVE) == [("a1", "alice@example.com")]
    with transaction(engine) as session:
        assert api_keys.revoke_key(session, admin, a1.id).state is KeyState.REVOKED
    assert verify(engine, a1_plaintext) is KeyRefusal.REVOKED
    assert listing(state="revoked") == [("a1", "alice@example.com")]
    with transaction(engine) as session:
        page = api_keys.list_all_keys(session, admin, page=2, page_size=2)
    assert (page.total, page.pages, page.page, len(page.rows)) == (3, 2, 2, 1)
    with pytest.raises(ValidationError) as bad_state:
        listing(state="lost")
    assert bad_state.value.field == "state"
    with transaction(engine) as session:
        api_keys.delete_key(session, admin, b1.id)
    assert key_count(engine) == 2


def test_a_deleted_key_stops_working(engine) -> None:
    alice = add_user(engine, "alice@example.com")
    key, plaintext = create(engine, alice)
    with transaction(engine) as session:
        api_keys.delete_key(session, alice, key.id)
    assert verify(engine, plaintext) is KeyRefusal.UNKNOWN and _mine(engine, alice) == []
    with pytest.raises(NotFound):
        with transaction(engine) as session:
            api_keys.delete_key(session, alice, key.id)
