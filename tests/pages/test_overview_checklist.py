"""The first-run checklist on the Overview: shown to an administrator while steps are left, never to a user."""

from __future__ import annotations

from tests.pages.helpers import add_user, app_for, sign_in, texts


def test_an_admin_with_nothing_set_up_sees_the_checklist_first(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    at = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com")
    assert not at.exception
    assert "Getting started" in [s.value for s in at.subheader]
    assert "0 of 6 steps done." in [c.value for c in at.caption]
    assert "Overview" in texts(at)


def test_a_user_never_sees_the_checklist(engine, monkeypatch) -> None:
    add_user(engine, "admin@example.com", role="admin")
    add_user(engine, "user@example.com")
    at = sign_in(app_for(engine, monkeypatch).run(), "user@example.com")
    assert not at.exception
    assert "Getting started" not in [s.value for s in at.subheader]
