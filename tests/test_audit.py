"""The audit trail on SQLite and PostgreSQL: one row per covered action in the change's transaction, no secrets,
the hash chain (verify, tamper, prune and re-anchor, concurrent writers) and `python -m mindroute audit verify`."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session

import mindroute.db as db
from mindroute import config, security
from mindroute.cli.main import main
from mindroute.db import make_engine, transaction
from mindroute.errors import PermissionDenied
from mindroute.models import AuditLog, Log, Ticket, User
from mindroute.services import admin_users, api_keys, audit, auth, log_explorer, permissions, providers, tickets
from mindroute.services.users import create_user, sign_up
from mindroute.validation import ValidationError

PASSWORD = "correct horse battery"
PASSWORD_HASH = security.hash_password(PASSWORD)
PROVIDER_KEY = "sk-proj-AUDITsecret0123456789abcdWXYZ"
NEW_PROVIDER_KEY = "sk-proj-AUDITreplaced987654321zyxwQRST"
NEW_PASSWORD = "another long passphrase"


def add_user(session: Session, email: str, role: str = "user") -> User:
    user = User(email=email, name=email.split("@")[0], role=role, is_active=True, password=PASSWORD_HASH)
    session.add(user)
    session.flush()
    return user


def rows(engine: Engine) -> list[AuditLog]:
    with Session(engine) as session:
        found = list(session.scalars(select(AuditLog).order_by(AuditLog.seq)).all())
        session.expunge_all()
        return found


def count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(AuditLog)) or 0


@pytest.fixture
def world(engine: Engine) -> dict[str, Any]:
    """An admin, a user, a provider with a key, an API key and a ticket; the audit table then emptied."""
    with transaction(engine) as session:
        admin = add_user(session, "admin@example.com", "admin")
        user = add_user(session, "user@example.com")
    provider = providers.create_provider(engine, admin, name="OpenAI", protocol="openai", api_key=PROVIDER_KEY)
    issued = api_keys.create_key(engine, user, user.id, "laptop", None)
    ticket = tickets.open_ticket(engine, user, "Help", "It broke")
    with engine.begin() as conn:
        conn.execute(AuditLog.__table__.delete())
    return {"admin": admin, "user": user, "provider": provider, "key": issued, "ticket": ticket, "engine": engine}


def _fresh_provider(w: dict[str, Any]) -> providers.ProviderView:
    return providers.get_provider(w["engine"], w["admin"], w["provider"].id)


def _update_provider(w: dict[str, Any], **changes: Any) -> None:
    view = _fresh_provider(w)
    fields = {
        "name": view.name,
        "protocol": view.protocol,
        "endpoint_url": view.endpoint_url,
        "allow_images": view.allow_images,
        "allow_videos": view.allow_videos,
        "allow_files": view.allow_files,
        "max_tokens": view.max_tokens,
        "is_active": view.is_active,
    }
    fields.update(changes)
    providers.update_provider(w["engine"], w["admin"], view.id, expected_updated_at=view.updated_at, **fields)


def _prune_logs(w: dict[str, Any]) -> None:
    engine = w["engine"]
    with transaction(engine) as session:
        session.add(Log(user_id=w["user"].id, model_id="m", request_type="chat", created_at=log_explorer.utcnow()))
    plan = log_explorer.plan_prune(engine, w["admin"], 1, now=log_explorer.utcnow() + timedelta(days=3))
    assert log_explorer.prune_calls(engine, w["admin"], plan) == 1


ACTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "provider.create": (
        "provider.create",
        lambda w: providers.create_provider(w["engine"], w["admin"], name="Other", protocol="openai", api_key="sk-x1"),
    ),
    "provider.update": ("provider.update", lambda w: _update_provider(w, name="OpenAI EU", max_tokens=100)),
    "provider.key_replaced": ("provider.key_replaced", lambda w: _update_provider(w, api_key=NEW_PROVIDER_KEY)),
    "provider.deactivate": (
        "provider.deactivate",
        lambda w: providers.set_provider_active(w["engine"], w["admin"], w["provider"].id, False),
    ),
    "provider.delete": (
        "provider.delete",
        lambda w: providers.delete_provider(w["engine"], w["admin"], w["provider"].id),
    ),
    "grant.set": (
        "grant.set",
        lambda w: permissions.set_grant(w["engine"], w["admin"], w["user"].id, w["provider"].id, allowed=True),
    ),
    "grant.bulk_set": (
        "grant.bulk_set",
        lambda w: permissions.set_provider_access(
            w["engine"], w["admin"], w["provider"].id, allowed=True, user_ids=[w["user"].id]
        ),
    ),
    "user.create": (
        "user.create",
        lambda w: create_user(w["engine"], w["admin"], email="new@example.com", name="New", password=PASSWORD),
    ),
    "user.sign_up": (
        "user.sign_up",
        lambda w: sign_up(w["engine"], email="self@example.com", name="Self", password=PASSWORD),
    ),
    "user.update": ("user.update", lambda w: admin_users.update_user(w["engine"], w["admin"], w["user"].id, name="N")),
    "user.role": ("user.role", lambda w: admin_users.update_user(w["engine"], w["admin"], w["user"].id, role="admin")),
    "user.deactivate": (
        "user.deactivate",
        lambda w: admin_users.set_user_active(w["engine"], w["admin"], w["user"].id, False),
    ),
    "user.password_set": (
        "user.password_set",
        lambda w: admin_users.set_user_password(w["engine"], w["admin"], w["user"].id, NEW_PASSWORD),
    ),
    "user.password_change": (
        "user.password_change",
        lambda w: auth.change_password(w["engine"], w["user"], PASSWORD, NEW_PASSWORD, None),
    ),
    "user.delete": ("user.delete", lambda w: admin_users.delete_user(w["engine"], w["admin"], w["user"].id)),
    "apikey.create": ("apikey.create", lambda w: api_keys.create_key(w["engine"], w["user"], w["user"].id, "ci", None)),
    "apikey.rotate": ("apikey.rotate", lambda w: api_keys.rotate_key(w["engine"], w["user"], w["key"].key.id)),
    "apikey.revoke": ("apikey.revoke", lambda w: api_keys.revoke_key(w["engine"], w["admin"], w["key"].key.id)),
    "apikey.delete": ("apikey.delete", lambda w: api_keys.delete_key(w["engine"], w["user"], w["key"].key.id)),
    "ticket.status": (
        "ticket.status",
        lambda w: tickets.set_status(w["engine"], w["admin"], w["ticket"].id, "in_progress"),
    ),
    "ticket.answer": ("ticket.answer", lambda w: tickets.respond(w["engine"], w["admin"], w["ticket"].id, "Try again")),
    "logs.retention_run": ("logs.retention_run", _prune_logs),
    "signin.success": ("signin.success", lambda w: auth.sign_in_and_issue(w["engine"], "user@example.com", PASSWORD)),
    "signin.failure": ("signin.failure", lambda w: auth.sign_in_and_issue(w["engine"], "user@example.com", "wrong")),
    "session.revoke_all": ("session.revoke_all", lambda w: auth.revoke_user_sessions(w["engine"], w["user"].id)),
}


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_each_covered_action_writes_exactly_one_row(world, name) -> None:
    action, run = ACTIONS[name]
    run(world)
    found = rows(world["engine"])
    assert [r.action for r in found] == [action]
    assert audit.verify(world["engine"]).broken is None


def test_rows_name_the_actor_target_and_changes(world) -> None:
    engine, admin, user = world["engine"], world["admin"], world["user"]
    with audit.acting_as(audit.AuditActor(admin.id, admin.email, "203.0.113.9", "Firefox/140")):
        admin_users.update_user(engine, admin, user.id, role="admin")
    (row,) = rows(engine)
    assert (row.actor_user_id, row.actor_label, row.ip, row.user_agent) == (
        admin.id,
        "admin@example.com",
        "203.0.113.9",
        "Firefox/140",
    )
    assert (row.target_type, row.target_id, row.changes) == ("user", str(user.id), {"role": ["user", "admin"]})


def test_sign_in_rows_carry_the_address_and_throttling_is_recorded(world) -> None:
    engine = world["engine"]
    for _ in range(auth.MAX_FAILURES_PER_ACCOUNT):
        result, _issued = auth.sign_in_and_issue(engine, "user@example.com", "wrong", "198.51.100.7", "curl/8")
        assert result.error == auth.SIGN_IN_FAILED
    result, _issued = auth.sign_in_and_issue(engine, "user@example.com", PASSWORD, "198.51.100.7", "curl/8")
    assert result.throttled
    found = rows(engine)
    assert [r.action for r in found] == ["signin.failure"] * auth.MAX_FAILURES_PER_ACCOUNT + ["signin.throttled"]
    assert {(r.actor_user_id, r.actor_label, r.ip, r.user_agent) for r in found} == {
        (None, "user@example.com", "198.51.100.7", "curl/8")
    }


def test_a_failing_change_writes_no_row(world) -> None:
    engine, admin = world["engine"], world["admin"]
    with pytest.raises(ValidationError):
        providers.create_provider(engine, admin, name="openai", protocol="openai", api_key="sk-dup")
    with pytest.raises(ValidationError):
        tickets.set_status(engine, admin, world["ticket"].id, "bogus")
    with pytest.raises(ValidationError):
        admin_users.set_user_active(engine, admin, admin.id, False)
    assert count(engine) == 0


def test_the_row_rolls_back_with_its_transaction(world) -> None:
    engine, admin = world["engine"], world["admin"]
    with pytest.raises(RuntimeError), transaction(engine) as session:
        providers.set_provider_active(session, admin, world["provider"].id, False)
        assert session.scalar(select(func.count()).select_from(AuditLog)) == 1
        raise RuntimeError("the page failed after the change")
    assert count(engine) == 0
    assert _fresh_provider(world).is_active


def test_no_secret_reaches_any_row(world) -> None:
    engine, admin, user = world["engine"], world["admin"], world["user"]
    providers.create_provider(engine, admin, name="Anthropic", protocol="anthropic", api_key=PROVIDER_KEY + "2")
    _update_provider(world, api_key=NEW_PROVIDER_KEY)
    admin_users.set_user_password(engine, admin, user.id, NEW_PASSWORD)
    create_user(engine, admin, email="third@example.com", name="Third", password=PASSWORD)
    issued = api_keys.create_key(engine, user, user.id, "ci", None)
    rotated = api_keys.rotate_key(engine, user, issued.key.id)
    auth.sign_in_and_issue(engine, "user@example.com", NEW_PASSWORD)
    auth.sign_in_and_issue(engine, "user@example.com", PASSWORD)
    with engine.connect() as conn:
        dump = json.dumps([list(map(str, r)) for r in conn.execute(text("SELECT * FROM auditlog")).all()])
    for secret in (PROVIDER_KEY, NEW_PROVIDER_KEY, PASSWORD, NEW_PASSWORD, issued.plaintext, rotated.plaintext):
        assert secret not in dump
    assert issued.key.key not in dump  # not even the key's digest
    key_rows = [r for r in rows(engine) if r.action == "provider.key_replaced"]
    assert [r.changes for r in key_rows] == [{"api_key": audit.KEY_REPLACED}]


# --- the chain ------------------------------------------------------------------------------------------


def _write(engine: Engine, n: int, label: str = "t") -> None:
    for i in range(n):
        with transaction(engine) as session:
            audit.record(session, "test.event", "thing", f"{label}{i}", {"i": i}, actor=audit.CLI)


def test_verify_passes_an_intact_chain_and_names_a_tampered_row(engine) -> None:
    assert audit.verify(engine) == audit.Verified(0, None)
    _write(engine, 5)
    assert audit.verify(engine) == audit.Verified(5, None)
    found = rows(engine)
    assert [r.seq for r in found] == [1, 2, 3, 4, 5]
    assert found[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(found))
    with engine.begin() as conn:
        conn.execute(text("UPDATE auditlog SET actorlabel = 'someone else' WHERE seq = 3"))
    broken = audit.verify(engine).broken
    assert broken is not None and (broken.seq, broken.id) == (3, found[2].id)
    assert "content" in broken.reason


def test_verify_names_a_row_rehashed_after_editing_and_a_deleted_row(engine) -> None:
    _write(engine, 4)
    # An editor who recomputes the edited row's own hash still breaks the next row's link.
    with Session(engine) as session, session.begin():
        row = session.scalars(select(AuditLog).where(AuditLog.seq == 2)).one()
        row.changes = {"i": 99}
        row.hash = audit.row_hash(row)
    broken = audit.verify(engine).broken
    assert broken is not None and broken.seq == 3 and "prev_hash" in broken.reason
    with engine.begin() as conn:
        conn.execute(AuditLog.__table__.delete())
    _write(engine, 4)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM auditlog WHERE seq = 2"))
    broken = audit.verify(engine).broken
    assert broken is not None and broken.seq == 3 and "missing" in broken.reason


def test_verify_reports_progress_in_batches(engine) -> None:
    _write(engine, 7)
    seen: list[tuple[int, int]] = []
    assert audit.verify(engine, progress=lambda done, total: seen.append((done, total)), batch=3).broken is None
    assert seen == [(3, 7), (6, 7), (7, 7)]


def test_prune_re_anchors_the_chain(engine) -> None:
    _write(engine, 3, "old")
    with engine.begin() as conn:
        conn.execute(update(AuditLog).values(created_at=AuditLog.created_at - timedelta(days=100)))
    _write(engine, 2, "new")
    # Moving the old rows' time broke their hashes, but they are the ones pruned.
    assert audit.prune(engine, 30) == 3
    found = rows(engine)
    assert [r.seq for r in found] == [4, 5, 6] and found[-1].action == audit.PRUNED_ACTION
    assert found[-1].changes["first_kept"] == {"seq": 4, "prev_hash": found[0].prev_hash}
    assert audit.verify(engine) == audit.Verified(3, None)
    with engine.begin() as conn:  # a kept first row whose link was rewritten no longer matches its anchor
        conn.execute(text("UPDATE auditlog SET prevhash = :h WHERE seq = 4"), {"h": "f" * 64})
    broken = audit.verify(engine).broken
    assert broken is not None and broken.seq == 4


def test_prune_with_nothing_old_deletes_nothing(engine) -> None:
    _write(engine, 2)
    assert audit.prune(engine, 30) == 0
    assert count(engine) == 2 and audit.verify(engine).broken is None


def test_two_engines_writing_at_once_keep_one_chain(engine) -> None:
    """Two pools (as two processes have): PostgreSQL's advisory lock, SQLite's write lock taken first."""
    engines = [make_engine(engine.url) for _ in range(2)]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def writer(eng: Engine, label: str) -> None:
        try:
            start.wait()
            _write(eng, 25, label)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(e, f"w{i}-")) for i, e in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for eng in engines:
        eng.dispose()
    assert errors == []
    found = rows(engine)
    assert [r.seq for r in found] == list(range(1, 51))
    assert {r.target_id[:3] for r in found} == {"w0-", "w1-"}
    assert audit.verify(engine) == audit.Verified(50, None)


def test_writers_without_the_lock_would_fork(engine) -> None:
    """The lock is what keeps the chain whole: two rows given the same seq are refused by the unique key."""
    _write(engine, 1)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), transaction(engine) as session:
        last = session.scalars(select(AuditLog)).one()
        session.add(
            AuditLog(
                id=uuid.uuid4(),
                seq=last.seq,
                created_at=last.created_at,
                actor_label="x",
                action="fork",
                prev_hash=last.prev_hash,
                hash="0" * 64,
            )
        )
        session.flush()


# --- reading --------------------------------------------------------------------------------------------


def test_filters_keyset_pages_and_csv(engine) -> None:
    with transaction(engine) as session:
        admin = add_user(session, "admin@example.com", "admin")
        plain = add_user(session, "plain@example.com")
    _write(engine, 5, "a")
    with transaction(engine) as session:
        audit.record(session, "provider.create", "provider", "=HYPERLINK(1)", {"name": [None, "P"]}, actor=audit.CLI)
    every = audit.AuditFilter()
    first = audit.list_rows(engine, admin, every, limit=4)
    assert [r.seq for r in first] == [6, 5, 4, 3]
    assert [r.seq for r in audit.list_rows(engine, admin, every, before_seq=first[-1].seq, limit=4)] == [2, 1]
    assert [r.seq for r in audit.list_rows(engine, admin, audit.AuditFilter(action="provider."))] == [6]
    by_target = audit.AuditFilter(target_type="thing", target_id="a2")
    assert [r.seq for r in audit.list_rows(engine, admin, by_target)] == [3]
    assert audit.count_rows(engine, admin, audit.AuditFilter(actor="CL")) == 6
    assert audit.count_rows(engine, admin, audit.AuditFilter(actor="nobody")) == 0
    now = audit.utcnow()
    day = timedelta(days=1)
    assert audit.count_rows(engine, admin, audit.AuditFilter(since=now - day, until=now + day)) == 6
    assert audit.count_rows(engine, admin, audit.AuditFilter(since=now + day)) == 0
    assert audit.count_rows(engine, admin, audit.AuditFilter(until=now - day)) == 0
    assert audit.actions(engine, admin) == ["provider.create", "test.event"]
    body = audit.to_csv(engine, admin, every)
    assert body.splitlines()[0] == ",".join(audit.CSV_COLUMNS)
    assert len(body.splitlines()) == 7
    assert ",'=HYPERLINK(1)," in body  # a spreadsheet shows it as text, never runs it
    first_time = body.splitlines()[1].split(",")[1]
    assert first_time.endswith("+00:00") and "T" in first_time  # ISO-8601 with its offset
    kolkata = audit.to_csv(engine, admin, every, zone=ZoneInfo("Asia/Kolkata")).splitlines()[1].split(",")[1]
    assert kolkata.endswith("+05:30")
    for reader in (plain, None):
        with pytest.raises(PermissionDenied):
            audit.list_rows(engine, reader, every)
        with pytest.raises(PermissionDenied):
            audit.to_csv(engine, reader, every)


# --- the CLI --------------------------------------------------------------------------------------------


def _use(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    monkeypatch.setenv("MINDROUTE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    config.get_settings.cache_clear()
    monkeypatch.setattr(db, "_engine", None)


def test_cli_audit_verify_prints_ok_or_names_the_broken_row(engine, capsys, monkeypatch) -> None:
    _use(monkeypatch, engine)
    _write(engine, 3)
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "(3 rows)" in out
    with engine.begin() as conn:
        conn.execute(text("UPDATE auditlog SET changes = NULL WHERE seq = 2"))
    assert main(["audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert "BROKEN at row seq=2" in out
    if db._engine is not None:
        db._engine.dispose()


def test_cli_prune_audit_and_rotate_secret_are_recorded_as_cli(engine, capsys, monkeypatch) -> None:
    _use(monkeypatch, engine)
    _write(engine, 2)
    assert main(["prune-audit", "--older-than-days", "30"]) == 0
    assert "deleted 0 audit rows" in capsys.readouterr().out
    assert main(["rotate-secret"]) == 0
    last = rows(engine)[-1]
    assert (last.action, last.actor_label, last.actor_user_id) == ("secret.rotate", "cli", None)
    assert main(["prune-audit", "--older-than-days", "0"]) == 1
    assert main(["audit", "verify"]) == 0
    if db._engine is not None:
        db._engine.dispose()


def test_the_ticket_owner_reopening_is_recorded(world) -> None:
    engine, admin, user = world["engine"], world["admin"], world["user"]
    tickets.set_status(engine, admin, world["ticket"].id, "resolved")
    tickets.reopen(engine, user, world["ticket"].id, "still broken")
    assert [(r.action, r.actor_label) for r in rows(engine)] == [
        ("ticket.status", "admin@example.com"),
        ("ticket.reopen", "user@example.com"),
    ]
    with Session(engine) as session:
        assert session.get(Ticket, world["ticket"].id).status == "open"
