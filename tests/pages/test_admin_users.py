"""The Users and permissions page in AppTest: the paged list, account changes and their guards, provider access."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
import streamlit as st
from sqlalchemy import func, select, update
from streamlit.testing.v1 import AppTest

from mindroute import security
from mindroute.db import transaction
from mindroute.models import RefreshToken, User, UserProvider, utcnow
from mindroute.services import providers as provider_svc
from mindroute.services.auth import issue_session
from mindroute.ui.render import rows_height
from tests.pages.flow_helpers import open_tab
from tests.pages.helpers import PASSWORD, add_user, app_for, sign_in, texts

PAGE = "pages/admin/users.py"


# --- helpers ----------------------------------------------------------------------------------


def admin_on_page(engine, monkeypatch) -> AppTest:
    if user_id(engine, "admin@example.com") is None:
        add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    at = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com")
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def add_users(engine, emails: list[str]) -> None:
    """Many users in one transaction, sharing the admin's bcrypt hash (hashing each would dominate)."""
    with transaction(engine) as session:
        password = session.scalar(select(User.password).limit(1)) or security.hash_password(PASSWORD)
        session.add_all(User(email=e, name=e.split("@")[0].title(), role="user", password=password) for e in emails)


def add_provider(engine, name: str, models: tuple[str, ...] = (), max_tokens: int | None = None) -> uuid.UUID:
    with transaction(engine) as session:
        view = provider_svc.create_provider(
            session,
            None,
            name=name,
            protocol="openai-compatible",
            endpoint_url="http://127.0.0.1:9/v1",
            max_tokens=max_tokens,
            settings={"models": list(models)},
        )
    return view.id


def user_id(engine, email: str) -> uuid.UUID | None:
    with transaction(engine) as session:
        return session.scalar(select(User.id).where(User.email == email))


def load_user(engine, email: str) -> User | None:
    with transaction(engine) as session:
        return session.scalar(select(User).where(User.email == email))


def user_count(engine) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(User))


def select_user(at: AppTest, engine, email: str) -> AppTest:
    at.selectbox(key="users_selected").set_value(str(user_id(engine, email)))
    return at.run()


def page_summary(at: AppTest) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Page "))


def table(at: AppTest, column: str):
    """The table showing this column (keys of read-only tables are not kept in the element tree)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def listed_emails(at: AppTest) -> list[str]:
    return list(table(at, "Last login")["Email"])


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def error_under(at: AppTest, key: str) -> str | None:
    """The error shown right under the widget with this key: where the page puts that field's message."""
    nodes = list(_walk(at.main))
    for i, node in enumerate(nodes):
        if getattr(node, "key", None) == key:
            following = nodes[i + 1] if i + 1 < len(nodes) else None
            return following.value if getattr(following, "type", None) == "error" else None
    raise AssertionError(f"no widget with key {key!r}")


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click()
    return at.run()


# --- the list ---------------------------------------------------------------------------------


def test_list_is_paged_searchable_and_sorted_in_the_database(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_users(engine, [f"person{i:02d}@example.com" for i in range(60)])
    at = admin_on_page(engine, monkeypatch)
    at.selectbox(key="users_page_size").set_value(25).run()
    assert page_summary(at) == "Page 1 of 3 · 61 users"
    assert len(listed_emails(at)) == 25

    at.pagination(key="users_page").select(3).run()
    assert page_summary(at) == "Page 3 of 3 · 61 users"
    assert len(listed_emails(at)) == 11

    at.selectbox(key="users_sort").set_value("email")
    at.selectbox(key="users_descending").set_value(False)
    at.run()
    assert page_summary(at).startswith("Page 1 of 3")  # a new order starts again at page 1
    assert listed_emails(at)[:2] == ["admin@example.com", "person00@example.com"]

    at.text_input(key="users_search").input("PERSON1").run()
    assert page_summary(at) == "Page 1 of 1 · 10 users"
    assert listed_emails(at) == [f"person1{i}@example.com" for i in range(10)]

    at.text_input(key="users_search").input("").run()
    at.selectbox(key="users_role").set_value("admin").run()
    assert listed_emails(at) == ["admin@example.com"]

    at.selectbox(key="users_role").set_value("any")
    at.text_input(key="users_search").input("nobody-like-this").run()
    assert "No users match these filters." in texts(at)
    assert page_summary(at) == "Page 1 of 1 · 0 users"


# --- creating -----------------------------------------------------------------------------------


def fill_create_form(at: AppTest, email: str, name: str, password: str, role: str = "user") -> AppTest:
    at.text_input(key="create_user_email").input(email)
    at.text_input(key="create_user_name").input(name)
    at.text_input(key="create_user_password").input(password)
    at.selectbox(key="create_user_role").set_value(role)
    return click(at, "create_user_submit")


def test_create_user_and_refusals_at_the_field(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = fill_create_form(at, "New.Person@Example.com", "New Person", "a fine password", role="admin")
    assert "User created." in texts(at)
    created = load_user(engine, "new.person@example.com")
    assert (created.name, created.role, created.is_active) == ("New Person", "admin", True)
    assert security.verify_password("a fine password", created.password)
    assert at.text_input(key="create_user_email").value == ""  # the form starts empty again

    at = fill_create_form(at, "new.person@example.com", "Twin", "another fine password")
    assert error_under(at, "create_user_email") == "Email is already registered"
    at = fill_create_form(at, "third@example.com", "Third", "short")
    assert error_under(at, "create_user_password") == "Password must be at least 8 characters"
    at = fill_create_form(at, "not an email", "Fourth", "a fine password")
    assert "Enter an email address" in error_under(at, "create_user_email")
    at = fill_create_form(at, "fifth@example.com", "", "a fine password")
    assert error_under(at, "create_user_name") == "Name is required"
    assert user_count(engine) == 2  # nothing written by a refused form


# --- editing --------------------------------------------------------------------------------------


def test_edit_name_and_role(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_user(engine, "bob@example.com", name="Bob")
    at = select_user(admin_on_page(engine, monkeypatch), engine, "bob@example.com")
    assert at.text_input(key="user_edit_name").value == "Bob"
    at.text_input(key="user_edit_name").input("Robert")
    at.selectbox(key="user_edit_role").set_value("admin")
    at = click(at, "user_edit_save")
    assert "Name and role saved." in texts(at)
    bob = load_user(engine, "bob@example.com")
    assert (bob.name, bob.role) == ("Robert", "admin")
    assert at.text_input(key="user_edit_name").value == "Robert"
    assert "changed by someone else" not in texts(at)  # our own save is not someone else's change

    at.text_input(key="user_edit_name").input("")
    at = click(at, "user_edit_save")
    assert error_under(at, "user_edit_name") == "Name is required"
    assert load_user(engine, "bob@example.com").name == "Robert"


def test_a_concurrent_edit_is_not_overwritten(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_user(engine, "bob@example.com", name="Bob")
    at = select_user(admin_on_page(engine, monkeypatch), engine, "bob@example.com")
    with transaction(engine) as session:  # another admin renames Bob while this form is open
        session.execute(
            update(User)
            .where(User.email == "bob@example.com")
            .values(name="Bobby", updated_at=utcnow() + timedelta(seconds=5))
        )
    at.selectbox(key="user_edit_role").set_value("admin")
    at = click(at, "user_edit_save")
    assert "changed by someone else since you opened it" in texts(at)
    bob = load_user(engine, "bob@example.com")
    assert (bob.name, bob.role) == ("Bobby", "user")
    at = click(at, "user_edit_reload")
    assert at.text_input(key="user_edit_name").value == "Bobby"


def test_an_admin_cannot_demote_deactivate_or_delete_themselves(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = select_user(at, engine, "admin@example.com")
    at.selectbox(key="user_edit_role").set_value("user")
    at = click(at, "user_edit_save")
    assert "You cannot remove your own administrator role" in error_under(at, "user_edit_role")

    at = click(at, "user_deactivate")
    assert "You cannot deactivate your own account" in texts(at)

    at = click(at, "user_delete")
    at = click(at, "user_delete_confirm")
    assert "You cannot delete your own account" in texts(at)
    admin = load_user(engine, "admin@example.com")
    assert (admin.role, admin.is_active) == ("admin", True)


def test_deactivate_signs_the_user_out_and_activate_restores(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_user(engine, "bob@example.com", name="Bob")
    with transaction(engine) as session:
        issue_session(session, session.scalar(select(User).where(User.email == "bob@example.com")))
    at = select_user(admin_on_page(engine, monkeypatch), engine, "bob@example.com")
    at = click(at, "user_deactivate")
    assert "User deactivated and signed out everywhere." in texts(at)
    bob_id = user_id(engine, "bob@example.com")
    with transaction(engine) as session:
        assert session.scalar(select(User.is_active).where(User.id == bob_id)) is False
        assert session.scalar(select(func.count()).where(RefreshToken.user_id == bob_id, ~RefreshToken.is_revoked)) == 0
    at.selectbox(key="users_status").set_value("inactive").run()
    assert listed_emails(at) == ["bob@example.com"]
    at = click(at, "user_activate")
    assert load_user(engine, "bob@example.com").is_active is True


def test_set_a_new_password(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_user(engine, "bob@example.com", name="Bob")
    at = select_user(admin_on_page(engine, monkeypatch), engine, "bob@example.com")
    at.text_input(key="user_new_password").input("tiny")
    at = click(at, "user_password_save")
    assert error_under(at, "user_new_password") == "Password must be at least 8 characters"
    at.text_input(key="user_new_password").input("a brand new secret")
    at = click(at, "user_password_save")
    assert "Password set." in texts(at)
    assert security.verify_password("a brand new secret", load_user(engine, "bob@example.com").password)


def test_delete_asks_first_with_what_goes_along(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_user(engine, "bob@example.com", name="Bob")
    provider = add_provider(engine, "Local")
    with transaction(engine) as session:
        session.add(UserProvider(user_id=user_id(engine, "bob@example.com"), provider_id=provider, allowed=True))
    at = select_user(admin_on_page(engine, monkeypatch), engine, "bob@example.com")
    at = click(at, "user_delete")
    assert "deletes 0 API keys, 0 tickets and 1 provider permission. 0 logged calls stay" in texts(at)
    at = click(at, "user_delete_cancel")
    assert user_id(engine, "bob@example.com") is not None
    at = click(at, "user_delete")
    at = click(at, "user_delete_confirm")
    assert "User deleted." in texts(at)
    assert user_id(engine, "bob@example.com") is None
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(UserProvider)) == 0
    assert listed_emails(at) == ["admin@example.com"]


# --- permissions ----------------------------------------------------------------------------------


def test_grant_a_provider_with_a_token_limit_and_models(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_user(engine, "bob@example.com", name="Bob")
    pid = add_provider(engine, "Local", models=("m-large", "m-small"), max_tokens=8000)
    at = select_user(admin_on_page(engine, monkeypatch), engine, "bob@example.com")
    assert at.toggle(key=f"grant_allowed_{pid}").value is False

    at.toggle(key=f"grant_allowed_{pid}").set_value(True)
    at.text_input(key=f"grant_max_{pid}").input("-5")
    at = click(at, f"grant_{pid}_save")
    assert error_under(at, f"grant_max_{pid}") == "Token limit must be greater than 0"
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(UserProvider)) == 0

    at.text_input(key=f"grant_max_{pid}").input("4096")
    at.multiselect(key=f"grant_models_{pid}").set_value(["m-small"])
    at = click(at, f"grant_{pid}_save")
    assert "Access saved." in texts(at)
    with transaction(engine) as session:
        grant = session.scalar(select(UserProvider))
        assert (grant.user_id, grant.allowed, grant.max_tokens_override) == (
            user_id(engine, "bob@example.com"),
            True,
            4096,
        )
        assert grant.settings["models"] == ["m-small"]
    matrix = table(at, "Local")  # each provider's column is headed by its name
    bob_row = matrix[matrix["Email"] == "bob@example.com"].iloc[0]
    assert bob_row["Local"] == "allowed · ≤ 4,096 tokens · 1 model"
    assert at.text_input(key=f"grant_max_{pid}").value == "4096"


def test_bulk_grant_to_every_matching_user_then_revoke_for_chosen_ones(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_users(engine, [f"team{i:02d}@example.com" for i in range(30)] + ["outsider@example.com"])
    pid = add_provider(engine, "Local")
    at = admin_on_page(engine, monkeypatch)
    at.text_input(key="users_search").input("team").run()
    at.selectbox(key="bulk_provider").set_value(str(pid))
    at.selectbox(key="bulk_allowed").set_value(True)
    at.radio(key="bulk_scope").set_value("matching")
    at = click(at, "bulk_review")
    assert "This will grant access to the provider below for 30 users" in texts(at)
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(UserProvider)) == 0  # nothing before confirming
    at = click(at, "bulk_confirm")
    assert "Access granted for 30 users." in texts(at)
    with transaction(engine) as session:
        granted = set(
            session.scalars(
                select(User.email).join(UserProvider, UserProvider.user_id == User.id).where(UserProvider.allowed)
            )
        )
    assert granted == {f"team{i:02d}@example.com" for i in range(30)}

    chosen = [str(user_id(engine, e)) for e in ("team00@example.com", "team01@example.com")]
    at.selectbox(key="users_sort").set_value("email")
    at.selectbox(key="users_descending").set_value(False)
    at.selectbox(key="bulk_allowed").set_value(False)
    at.radio(key="bulk_scope").set_value("selected")
    at.run()
    at.multiselect(key="bulk_users").set_value(chosen)
    at = click(at, "bulk_review")
    assert "This will revoke access to the provider below for 2 users" in texts(at)
    at = click(at, "bulk_confirm")
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).where(UserProvider.allowed)) == 28
    matrix = table(at, "Local")
    assert list(matrix["Local"][:3]) == ["off", "off", "allowed"]


def test_bulk_change_needs_a_user(engine, monkeypatch) -> None:
    add_provider(engine, "Local")
    at = admin_on_page(engine, monkeypatch)
    at = click(at, "bulk_review")
    assert "Select at least one user" in texts(at)
    assert "bulk_confirm" not in [b.key for b in at.button]


# --- refusals -------------------------------------------------------------------------------------


def test_a_user_cannot_open_the_page(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    at = sign_in(app_for(engine, monkeypatch).run(), "user@example.com")
    with pytest.raises(Exception):  # noqa: B017 - AppTest raises for a page outside the navigation
        at.switch_page(PAGE).run()


# --- everyday flow (issue 17) -------------------------------------------------------------------


def dataframe_proto(at: AppTest, column: str):
    """The arrow table element whose data has this column, with its height and column settings."""
    return next(d for d in at.dataframe if column in d.value.columns).proto


def age_users(engine, emails_oldest_first: list[str]) -> None:
    """Give each user a distinct creation time, the first the oldest."""
    start = utcnow() - timedelta(days=len(emails_oldest_first) + 1)
    with transaction(engine) as session:
        for i, email in enumerate(emails_oldest_first):
            session.execute(update(User).where(User.email == email).values(created_at=start + timedelta(days=i)))


def test_the_list_opens_newest_first(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_users(engine, ["carol@example.com", "alice@example.com", "bob@example.com"])
    age_users(engine, ["admin@example.com", "carol@example.com", "alice@example.com", "bob@example.com"])
    at = admin_on_page(engine, monkeypatch)
    assert at.selectbox(key="users_sort").value == "created_at"
    assert at.selectbox(key="users_descending").value is True
    assert at.selectbox(key="users_descending").options == ["Newest first", "Oldest first"]
    assert listed_emails(at) == ["bob@example.com", "alice@example.com", "carol@example.com", "admin@example.com"]
    at.selectbox(key="users_sort").set_value("email").run()
    assert at.selectbox(key="users_descending").options == ["Z to A", "A to Z"]


def test_the_page_size_chosen_is_the_number_of_rows_seen(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_users(engine, [f"person{i:02d}@example.com" for i in range(60)])
    add_provider(engine, "Local")
    # The element tree keeps no table height: read what the page asks st.dataframe for.
    heights: dict[str, int | str] = {}
    draw = st.dataframe

    def recording(*args, **kwargs):
        heights[kwargs.get("key")] = kwargs.get("height", "auto")
        return draw(*args, **kwargs)

    monkeypatch.setattr(st, "dataframe", recording)
    at = admin_on_page(engine, monkeypatch)
    assert at.selectbox(key="users_page_size").value == 25
    for size in (10, 50, 25):
        at.selectbox(key="users_page_size").set_value(size).run()
        assert len(listed_emails(at)) == size
        assert len(table(at, "Local")) == size
        # Tall enough for every row and the header ("auto" shows about 10 and scrolls the rest).
        assert heights["users_table"] == heights["users_matrix"] == rows_height(size) >= (size + 1) * 35


def test_the_permissions_matrix_keeps_the_email_in_view(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    for i in range(12):
        add_provider(engine, f"Provider number {i:02d}")
    at = admin_on_page(engine, monkeypatch)
    config = json.loads(dataframe_proto(at, "Provider number 00").columns)
    assert config["Email"]["pinned"] is True
    names = [f"Provider number {i:02d}" for i in range(12)]
    assert all("width" not in config[name] for name in names)  # as wide as the name: never cut
    assert config["Provider number 03"]["label"] == "Provider number 03"


def test_the_user_being_edited_is_in_the_url_and_survives_a_reload(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_users(engine, [f"person{i:02d}@example.com" for i in range(30)])
    age_users(engine, ["admin@example.com", *[f"person{i:02d}@example.com" for i in range(30)]])
    at = admin_on_page(engine, monkeypatch)
    newest = str(user_id(engine, "person29@example.com"))
    assert at.query_params["user"] == newest  # the first on the page
    at = select_user(at, engine, "person20@example.com")
    assert at.query_params["user"] == str(user_id(engine, "person20@example.com"))

    # A reload, or a shared link, to a user on another page of the list (the admin is the oldest).
    admin_id = str(user_id(engine, "admin@example.com"))
    again = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com").switch_page(PAGE)
    again.query_params["user"] = admin_id
    again.run()
    assert not again.exception, again.exception
    assert "admin@example.com" not in listed_emails(again)
    assert again.selectbox(key="users_selected").value == admin_id
    assert at.text_input(key="user_edit_name").value == "Person20"
    assert again.text_input(key="user_edit_name").value == "Ada Admin"

    fresh = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com").switch_page(PAGE)
    fresh.query_params["user"] = str(uuid.uuid4())
    fresh.run()
    assert "The user in the link was not found." in texts(fresh)
    assert fresh.selectbox(key="users_selected").value == newest
    assert fresh.query_params["user"] == newest


def test_the_edit_form_shows_every_problem_at_once(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    at = admin_on_page(engine, monkeypatch)  # the admin is the only user: editing themselves
    at.text_input(key="user_edit_name").input("")
    at.selectbox(key="user_edit_role").set_value("user")
    at = click(at, "user_edit_save")
    assert error_under(at, "user_edit_name") == "Name is required"
    assert "cannot remove your own administrator role" in error_under(at, "user_edit_role")


def test_times_are_in_the_viewers_zone(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    with transaction(engine) as session:
        session.execute(update(User).values(timezone="Asia/Seoul", created_at=datetime(2026, 12, 3, 23, 30)))
    at = admin_on_page(engine, monkeypatch)
    assert "Times are in Asia/Seoul." in [c.value for c in at.caption]
    assert list(table(at, "Last login")["Created"]) == ["Dec 4, 2026, 8:30 AM"]  # Babel, in English


def test_saving_access_keeps_the_admin_on_the_access_tab(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin", name="Ada Admin")
    add_user(engine, "bob@example.com", name="Bob")
    pid = add_provider(engine, "Local")
    at = select_user(admin_on_page(engine, monkeypatch), engine, "bob@example.com")
    assert open_tab(at, "Name and role") == "Name and role"
    at.session_state["user_tab"] = "Provider access"  # what clicking the tab sends
    at.run()
    at.toggle(key=f"grant_allowed_{pid}").set_value(True)
    at = click(at, f"grant_{pid}_save")
    assert "Access saved." in texts(at)
    assert open_tab(at, "Name and role") == "Provider access"


def test_the_create_form_shows_every_problem_at_once_and_is_emptied_after_a_save(engine, monkeypatch) -> None:
    at = admin_on_page(engine, monkeypatch)
    at = fill_create_form(at, "not an email", "", "short", role="admin")
    assert "Enter an email address" in error_under(at, "create_user_email")
    assert error_under(at, "create_user_name") == "Name is required"
    assert error_under(at, "create_user_password") == "Password must be at least 8 characters"
    assert at.text_input(key="create_user_email").value == "not an email"  # kept, to be corrected
    assert user_count(engine) == 1

    at = fill_create_form(at, "new@example.com", "New", "a fine password", role="admin")
    assert "User created." in texts(at)
    for key in ("create_user_email", "create_user_name", "create_user_password"):
        assert at.text_input(key=key).value == "", key
    assert at.selectbox(key="create_user_role").value == "user"
