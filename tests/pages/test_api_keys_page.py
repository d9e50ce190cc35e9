"""The API keys page in AppTest: a key shown once, digest-only storage, expiry, revoke, rotate, the admin's view."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text, update
from streamlit.testing.v1 import AppTest

from mindroute.db import transaction
from mindroute.models import ApiKey, User, utcnow
from mindroute.services import api_keys
from tests.pages.flow_helpers import open_tab
from tests.pages.helpers import add_user, app_for, click, error_under, markdown_texts, sign_in, texts

PAGE = "pages/workspace/api_keys.py"
HOSTILE = "![x](http://evil.example/a.png) <b>hi</b>"


def on_page(engine, monkeypatch, email: str) -> AppTest:
    at = sign_in(app_for(engine, monkeypatch).run(), email)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def load(engine, email: str) -> User:
    with transaction(engine) as session:
        return session.scalar(select(User).where(User.email == email))


def issue(engine, email: str, name: str, expires: datetime | None = None) -> api_keys.IssuedApiKey:
    owner = load(engine, email)
    with transaction(engine) as session:
        return api_keys.create_key(session, owner, owner.id, name, expires)


def table(at: AppTest, column: str):
    """The table showing this column (keys of read-only tables are not kept in the element tree)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def states(at: AppTest) -> dict[str, str]:
    mine = next(d.value for d in at.dataframe if "Owner" not in d.value.columns)
    return dict(zip(mine["Name"], mine["State"], strict=True))


def shown_keys(at: AppTest) -> list[str]:
    return [c.value for c in at.code]


def select_key(at: AppTest, key_id, widget: str = "my_key_selected") -> AppTest:
    at.selectbox(key=widget).set_value(str(key_id))
    return at.run()


def key_count(engine) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(ApiKey))


# --- creating ---------------------------------------------------------------------------------


def test_a_new_key_is_shown_once_and_only_its_digest_is_stored(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    at = on_page(engine, monkeypatch, "user@example.com")
    assert "You have no API keys yet." in texts(at)
    at.text_input(key="api_key_name").input("ci deploy")
    at.selectbox(key="api_key_expiry").set_value("30 days")
    at = click(at, "api_key_create")
    assert not at.exception, at.exception

    [plaintext] = shown_keys(at)
    assert plaintext.startswith("mr-")
    assert "it is shown only this once" in texts(at)
    assert states(at) == {"ci deploy": "active"}
    assert at.text_input(key="api_key_name").value == ""  # the form is ready for the next key
    assert plaintext not in repr(at.session_state)  # shown from a one-shot value, already dropped

    with engine.connect() as conn:  # the raw columns, as they are on disk
        row = conn.execute(text("SELECT key, prefix, name FROM apikeys")).one()
    assert row.key == hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext not in (row.key, row.prefix, row.name)
    assert plaintext.startswith(row.prefix) and len(row.prefix) < len(plaintext)
    with transaction(engine) as session:
        expires = session.scalar(select(ApiKey.expires_at))
    assert abs(expires - (utcnow() + timedelta(days=30))) < timedelta(minutes=5)

    at.run()  # any later run: the key is gone from the page and from the session
    assert shown_keys(at) == []
    assert plaintext not in texts(at)
    assert plaintext not in repr(at.session_state)


def test_a_key_that_never_expires_and_one_until_a_chosen_day(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = on_page(engine, monkeypatch, "admin@example.com")
    at.text_input(key="api_key_name").input("forever")
    at.selectbox(key="api_key_expiry").set_value("Never")
    at = click(at, "api_key_create")
    at.selectbox(key="api_key_expiry").set_value("On a date…").run()
    day = datetime.now(UTC).date() + timedelta(days=10)
    at.date_input(key="api_key_date").set_value(day)
    at.text_input(key="api_key_name").input("ten days")
    at = click(at, "api_key_create")
    assert not at.exception, at.exception
    with transaction(engine) as session:
        expiries = {name: expires for name, expires in session.execute(select(ApiKey.name, ApiKey.expires_at))}
    assert expiries == {"forever": None, "ten days": api_keys.expiry_from_date(day)}  # AppTest's zone is UTC


def test_a_past_date_or_no_name_is_refused_at_the_field_and_nothing_is_written(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    at = on_page(engine, monkeypatch, "user@example.com")
    at = click(at, "api_key_create")
    assert error_under(at, "api_key_name") == "Key name is required"

    at.selectbox(key="api_key_expiry").set_value("On a date…").run()
    at.date_input(key="api_key_date").set_value(datetime.now(UTC).date() - timedelta(days=1))
    at.text_input(key="api_key_name").input("too late")
    at = click(at, "api_key_create")
    assert error_under(at, "api_key_date") == "The expiry date must be in the future"
    assert error_under(at, "api_key_name") is None
    assert shown_keys(at) == []
    assert key_count(engine) == 0


# --- revoking, rotating, deleting -------------------------------------------------------------


def test_revoke_rotate_with_grace_and_delete_change_the_table(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    old = issue(engine, "user@example.com", "build server", utcnow() + timedelta(days=90))
    spare = issue(engine, "user@example.com", "laptop")
    at = on_page(engine, monkeypatch, "user@example.com")
    assert states(at) == {"laptop": "active", "build server": "active"}
    assert shown_keys(at) == []  # an existing key is never shown again

    at = select_key(at, old.key.id)
    at.selectbox(key="my_key_grace").set_value(api_keys.RotationGrace.ONE_HOUR)
    at = click(at, "my_key_rotate")
    assert not at.exception, at.exception
    [replacement] = shown_keys(at)
    assert replacement != old.plaintext
    build_states = sorted(table(at, "State").query("Name == 'build server'")["State"])
    assert build_states[0] == "active"
    assert build_states[1].startswith("rotating out until ")
    with transaction(engine) as session:
        assert isinstance(api_keys.verify_key(session, old.plaintext), api_keys.VerifiedKey)  # still in its grace
        assert isinstance(api_keys.verify_key(session, replacement), api_keys.VerifiedKey)
        digest = hashlib.sha256(replacement.encode()).hexdigest()
        new_expiry = session.scalar(select(ApiKey.expires_at).where(ApiKey.key == digest))
    assert abs(new_expiry - (utcnow() + timedelta(days=90))) < timedelta(minutes=5)  # same 90-day policy
    assert at.button(key="my_key_rotate").disabled is False  # the replacement is selected, not the old key

    at = select_key(at, old.key.id)
    assert at.button(key="my_key_rotate").disabled is True  # already rotated
    at = click(at, "my_key_revoke")  # ends the grace early
    assert "Key revoked" in texts(at)
    with transaction(engine) as session:
        assert api_keys.verify_key(session, old.plaintext) is api_keys.KeyRefusal.REVOKED

    at = select_key(at, spare.key.id)
    at = click(at, "my_key_revoke")
    assert states(at)["laptop"] == "revoked"
    assert at.button(key="my_key_revoke").disabled is True

    at = click(at, "my_key_delete")
    assert key_count(engine) == 3  # nothing before confirming
    at = click(at, "my_key_delete_cancel")
    at = click(at, "my_key_delete")
    at = click(at, "my_key_delete_confirm")
    assert "Key deleted." in texts(at)
    assert key_count(engine) == 2
    assert "laptop" not in states(at)


# --- who sees what ----------------------------------------------------------------------------


def test_a_user_sees_only_their_own_keys_and_no_admin_section(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    add_user(engine, "other@example.com")
    issue(engine, "user@example.com", "mine")
    issue(engine, "other@example.com", "someone else's")
    issue(engine, "admin@example.com", "the admin's")
    at = on_page(engine, monkeypatch, "user@example.com")
    assert states(at) == {"mine": "active"}
    assert len(at.dataframe) == 1
    assert len(at.tabs) == 0
    assert "all_keys_owner" not in [w.key for w in at.selectbox]
    assert "someone else's" not in texts(at)
    assert all("someone else's" not in option for option in at.selectbox(key="my_key_selected").options)


def test_admin_sees_every_key_filters_by_owner_and_state_and_revokes_any(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "alice@example.com")
    add_user(engine, "bob@example.com")
    alice_old = issue(engine, "alice@example.com", "alice old")
    issue(engine, "alice@example.com", "alice new")
    bob_keys = [issue(engine, "bob@example.com", f"bob {i:02d}") for i in range(11)]
    with transaction(engine) as session:
        api_keys.revoke_key(session, load(engine, "alice@example.com"), alice_old.key.id)
    at = on_page(engine, monkeypatch, "admin@example.com")
    assert [t.label for t in at.tabs] == ["My keys", "All keys"]
    assert "You have no API keys yet." in texts(at)  # the admin's own list is their own

    at.selectbox(key="all_keys_page_size").set_value(10).run()
    assert "Page 1 of 2 · 13 keys" in [c.value for c in at.caption]
    assert len(table(at, "Owner")) == 10

    alice = load(engine, "alice@example.com")
    at.selectbox(key="all_keys_owner").set_value(str(alice.id)).run()
    everyone = table(at, "Owner")
    assert set(everyone["Owner"]) == {"alice@example.com"}
    assert dict(zip(everyone["Name"], everyone["State"], strict=True)) == {
        "alice new": "active",
        "alice old": "revoked",
    }

    at.selectbox(key="all_keys_state").set_value("revoked").run()
    assert list(table(at, "Owner")["Name"]) == ["alice old"]

    at.selectbox(key="all_keys_owner").set_value("any")
    at.selectbox(key="all_keys_state").set_value("active")
    at.text_input(key="all_keys_owner_search").input("bob").run()
    assert [o for o in at.selectbox(key="all_keys_owner").options if "@" in o] == ["bob@example.com — bob"]
    at = select_key(at, bob_keys[-1].key.id, "all_keys_selected")
    at = click(at, "all_keys_revoke")
    assert "Key revoked" in texts(at)
    with transaction(engine) as session:
        assert api_keys.verify_key(session, bob_keys[-1].plaintext) is api_keys.KeyRefusal.REVOKED
    assert "bob 10" not in list(table(at, "Owner")["Name"])  # the state filter is still "active"


def test_a_key_name_with_markdown_is_shown_literally(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = on_page(engine, monkeypatch, "admin@example.com")
    at.text_input(key="api_key_name").input(HOSTILE)
    at = click(at, "api_key_create")
    assert HOSTILE in [t.value for t in at.text]  # the name above the new key
    assert HOSTILE in list(table(at, "State")["Name"])
    assert HOSTILE in list(table(at, "Owner")["Name"])
    assert all("evil.example" not in value for value in markdown_texts(at))


# --- everyday flow (issue 17) -------------------------------------------------------------------


def test_after_a_key_is_created_the_form_is_empty_again(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = on_page(engine, monkeypatch, "admin@example.com")
    at.text_input(key="api_key_name").input("nightly job")
    at.selectbox(key="api_key_expiry").set_value("30 days")
    at = click(at, "api_key_create")
    assert "Key created." in texts(at)
    assert at.text_input(key="api_key_name").value == ""
    assert at.selectbox(key="api_key_expiry").value == "90 days"
    at = at.run()  # the next run keeps it empty and shows the key no more
    assert at.text_input(key="api_key_name").value == ""
    assert shown_keys(at) == []


def test_key_times_are_in_the_viewers_zone(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    with transaction(engine) as session:
        session.execute(update(User).values(timezone="Asia/Seoul"))
    issue(engine, "admin@example.com", "dated", datetime(2027, 1, 31, 15, 0))
    with transaction(engine) as session:
        session.execute(update(ApiKey).values(last_used_at=datetime(2026, 12, 3, 23, 30)))
    at = on_page(engine, monkeypatch, "admin@example.com")
    assert "Times are in Asia/Seoul." in [c.value for c in at.caption]
    mine = table(at, "Last used")
    assert (mine["Expires"][0], mine["Last used"][0]) == ("Feb 1, 2027, 12:00 AM", "Dec 4, 2026, 8:30 AM")


def test_revoking_on_all_keys_stays_on_all_keys(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "bob@example.com")
    issue(engine, "bob@example.com", "bob's")
    at = on_page(engine, monkeypatch, "admin@example.com")
    assert open_tab(at, "My keys") == "My keys"
    at.session_state["api_keys_tab"] = "All keys"  # what clicking the tab sends
    at.run()
    at = click(at, "all_keys_revoke")
    assert "Key revoked" in texts(at)
    assert open_tab(at, "My keys") == "All keys"
