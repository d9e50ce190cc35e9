"""The command line, run in-process and as `python -m mindroute`, against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import io
import json
import os
import random
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import URL

import mindroute.db as db
from mindroute import config
from mindroute.cli.backup import row_counts
from mindroute.cli.demo_data import DEMO_EMAIL_DOMAIN, DEMO_PROVIDER_PREFIX, DemoModel
from mindroute.cli.main import main
from mindroute.cli.seed import _Route, generate_log_batches
from mindroute.config import PROJECT_ROOT
from mindroute.db import head_revision, make_engine, transaction, upgrade
from mindroute.models import ApiKey, Log, Provider, Ticket, User, UserProvider, utcnow
from mindroute.provider_settings import validate_settings
from mindroute.security import DecryptionError, SecretBox, verify_password
from tests.conftest import create_pg_database, drop_pg_database

both = pytest.mark.parametrize("fresh_db_url", ["sqlite", "postgresql"], indirect=True)
sqlite_only = pytest.mark.parametrize("fresh_db_url", ["sqlite"], indirect=True)
postgresql_only = pytest.mark.parametrize("fresh_db_url", ["postgresql"], indirect=True)

GOOD_PASSWORD = "correct horse battery"


def use_database(monkeypatch: pytest.MonkeyPatch, url: URL) -> None:
    """Point MINDROUTE_DATABASE_URL (and the process's engine) at `url`."""
    monkeypatch.setenv("MINDROUTE_DATABASE_URL", url.render_as_string(hide_password=False))
    config.get_settings.cache_clear()
    if db._engine is not None:
        db._engine.dispose()
    monkeypatch.setattr(db, "_engine", None)


@pytest.fixture
def cli_db(fresh_db_url: URL, monkeypatch: pytest.MonkeyPatch) -> Iterator[URL]:
    """An empty database that in-process CLI calls and subprocesses both use."""
    use_database(monkeypatch, fresh_db_url)
    yield fresh_db_url
    if db._engine is not None:
        db._engine.dispose()  # before the fixture drops the PostgreSQL database


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_module(*argv: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mindroute", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        timeout=120,
    )


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("error: "), err
    assert err.strip().count("\n") == 0, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def scalar(url: URL, sql: str) -> object:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


# --- db ---------------------------------------------------------------------------------------


@both
def test_db_upgrade_current_downgrade(cli_db, capsys) -> None:
    head = head_revision(make_engine(cli_db))
    code, out, _ = cli(capsys, "db", "current")
    assert (code, out.strip()) == (0, f"empty (no revision) (code is at {head})")

    code, out, _ = cli(capsys, "db", "upgrade")
    assert (code, out.strip()) == (0, f"database at revision {head}")
    code, out, _ = cli(capsys, "db", "current")
    assert (code, out.strip()) == (0, f"{head} (up to date)")

    code, out, _ = cli(capsys, "db", "downgrade")
    assert (code, out.strip()) == (0, "database at revision base (empty)")
    db._engine.dispose()
    engine = make_engine(cli_db)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()

    assert cli(capsys, "db", "upgrade")[0] == 0
    engine = make_engine(cli_db)
    assert {"users", "providers", "logs"} <= set(inspect(engine).get_table_names())
    engine.dispose()


# --- create-admin -----------------------------------------------------------------------------


@both
def test_create_admin_reads_the_password_from_stdin(cli_db) -> None:
    result = run_module("create-admin", "--email", "Admin@Example.com", "--name", "Ada", stdin=GOOD_PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "created administrator admin@example.com"
    engine = make_engine(cli_db)
    with transaction(engine) as session:
        user = session.scalar(select(User))
        assert (user.email, user.name, user.role, user.is_active) == ("admin@example.com", "Ada", "admin", True)
        assert verify_password(GOOD_PASSWORD, user.password)
    engine.dispose()


@sqlite_only
def test_create_admin_subprocess_refuses_a_short_password(cli_db) -> None:
    result = run_module("create-admin", "--email", "a@example.com", "--name", "A", stdin="short\n")
    assert result.returncode != 0
    assert_one_line_error(result.stderr, "password", "at least 8")
    assert scalar(cli_db, "SELECT count(*) FROM users") == 0


@both
def test_create_admin_refuses_bad_input_and_writes_nothing(cli_db, capsys, monkeypatch) -> None:
    def create(email: str, password: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
        return cli(capsys, "create-admin", "--email", email, "--name", "Admin")

    assert create("admin@example.com", GOOD_PASSWORD)[0] == 0
    cases = [
        ("other@example.com", "short", ("password", "at least 8 characters")),
        ("other@example.com", "é" * 37, ("password", "at most 72 bytes")),  # 37 characters, 74 bytes
        ("ADMIN@example.com", GOOD_PASSWORD, ("email", "already registered")),
        ("not-an-email", GOOD_PASSWORD, ("email", "email address")),
        ("other@example.com", "", ("password", "at least 8 characters")),
    ]
    for email, password, fragments in cases:
        code, out, err = create(email, password)
        assert code != 0, (email, password)
        assert out == ""
        assert_one_line_error(err, *fragments)
    assert scalar(cli_db, "SELECT count(*) FROM users") == 1


# --- seeding ----------------------------------------------------------------------------------


@both
def test_seed_providers_is_idempotent(cli_db, capsys) -> None:
    code, out, _ = cli(capsys, "seed-providers")
    assert code == 0 and "OpenAI, Anthropic, Google AI" in out
    code, out, _ = cli(capsys, "seed-providers")
    assert code == 0 and "already exist" in out
    assert scalar(cli_db, "SELECT count(*) FROM providers") == 3


@both
def test_seed_demo_writes_consistent_labelled_data(cli_db, capsys) -> None:
    before = utcnow()
    code, out, err = cli(capsys, "seed-demo", "--rows", "2000", "--days", "7", "--seed", "7")
    after = utcnow()
    assert code == 0, err
    assert "2,000 log rows" in out

    engine = make_engine(cli_db)
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Log)) == 2000
        inconsistent = select(func.count()).where(Log.tokens_used != Log.prompt_tokens + Log.completion_tokens)
        assert session.scalar(inconsistent) == 0
        first, last = session.execute(select(func.min(Log.created_at), func.max(Log.created_at))).one()
        assert before - timedelta(days=7) <= first and last <= after
        assert set(session.scalars(select(Log.request_type).distinct())) == {"chat"}
        by_status = select(Log.status_code, func.count()).group_by(Log.status_code)
        statuses = {code: n for code, n in session.execute(by_status)}
        assert set(statuses) <= {200, 400, 401, 429, 500, 502, 504}
        assert statuses[200] > 1600 and len(statuses) > 1
        assert session.scalar(select(func.count()).where(Log.status_code != 200, Log.error_message.is_(None))) == 0
        assert session.scalar(select(func.count()).where(Log.status_code == 200, Log.error_message.is_not(None))) == 0

        users = session.scalars(select(User)).all()
        assert 20 <= len(users) <= 50
        assert all(u.email.endswith("@" + DEMO_EMAIL_DOMAIN) and u.role == "user" for u in users)
        assert len({u.password for u in users}) == 1 and users[0].password.startswith("$2b$12$")
        providers = {p.id: p for p in session.scalars(select(Provider))}
        assert 3 <= len(providers) <= 5
        for provider in providers.values():
            assert provider.name.startswith(DEMO_PROVIDER_PREFIX) and provider.api_key is None
            assert validate_settings(provider.settings) == provider.settings  # the documented shape, nothing else
            assert provider.settings["default_model"] in provider.settings["models"]
            assert set(provider.settings["prices"]) == set(provider.settings["models"])
        grants = {tuple(row) for row in session.execute(select(UserProvider.user_id, UserProvider.provider_id))}

        # Rows written in bulk read back through the ORM like any other (UUIDs, timestamps, JSON).
        for log in session.scalars(select(Log).limit(300)):
            assert (log.user_id, log.provider_id) in grants
            assert log.model_id in providers[log.provider_id].settings["models"]
            assert log.request_body["demo"] is True and log.response_body["demo"] is True
            if log.status_code == 200:
                assert log.response_body["usage"]["total_tokens"] == log.tokens_used > 0
            assert log.duration > 0 and log.ip and log.user_agent

    code, out, _ = cli(capsys, "seed-demo", "--rows", "500", "--days", "7")
    assert code == 0
    assert "(0 new)" in out
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Log)) == 2500
        assert session.scalar(select(func.count()).select_from(User)) == len(users)
        assert session.scalar(select(func.count()).select_from(Provider)) == len(providers)
    engine.dispose()


def test_seed_demo_rows_are_repeatable_with_a_seed() -> None:
    model = DemoModel("m", 1.0, 2.0, 1.0, 500, 200, 300, 5.0)
    routes = [
        (_Route("u1", "p1", "m", '"m"', model, ("192.0.2.1", "192.0.2.2"), ("a", "b"), ((0.0, 3600.0),)), 1.0),
        (_Route("u2", "p1", "m", '"m"', model, ("192.0.2.3", "192.0.2.4"), ("a", "b"), ()), 3.0),
    ]
    start = utcnow() - timedelta(days=2)

    def rows(seed: int) -> list[tuple]:
        batches = generate_log_batches(
            routes,
            rows=1500,
            start=start,
            total_seconds=2 * 86400,
            rng=random.Random(seed),
            dashed=False,
            batch_rows=400,
        )
        # Everything but the ids (always random, so re-runs never collide) comes from the seed;
        # the response body quotes the row id, so it is compared without it.
        return [(*row[1:6], without_id(row[6]), *row[7:]) for batch in batches for row in batch]

    def without_id(body: str) -> dict:
        parsed = json.loads(body)
        parsed.pop("id", None)
        return parsed

    first = rows(1)
    assert len(first) == 1500
    assert first == rows(1)
    assert first != rows(2)


def test_seed_demo_refuses_bad_arguments(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["seed-demo", "--days", "0"])
    assert exc.value.code == 2
    assert "--days" in capsys.readouterr().err


# --- backup and restore -----------------------------------------------------------------------


def _fill(capsys: pytest.CaptureFixture[str], url: URL) -> None:
    assert cli(capsys, "seed-providers")[0] == 0
    assert cli(capsys, "seed-demo", "--rows", "300", "--days", "3")[0] == 0
    engine = make_engine(url)
    with transaction(engine) as session:
        user = session.scalar(select(User).limit(1))
        session.add(Ticket(user_id=user.id, subject="Ünïcode ✓", message="line one\nline\ttwo \\ back"))
        session.add(ApiKey(user_id=user.id, name="k", key="d" * 64, prefix="mr-abc"))
    engine.dispose()


def _fingerprint(url: URL) -> tuple:
    engine = make_engine(url)
    with transaction(engine) as session:
        result = (
            sorted(session.scalars(select(User.email))),
            session.scalar(select(func.sum(Log.tokens_used))),
            session.scalar(select(func.max(Log.created_at))),
            session.scalar(select(Ticket.message)),
            sorted(str(p) for p in session.scalars(select(Provider.settings))),
        )
    engine.dispose()
    return result


@both
def test_backup_then_restore_into_an_empty_database(cli_db, capsys, monkeypatch, tmp_path) -> None:
    _fill(capsys, cli_db)
    backup = tmp_path / "backups" / "mindroute.backup"
    backup.parent.mkdir()
    code, out, err = cli(capsys, "backup", str(backup))
    assert code == 0, err
    assert "logs 300" in out and "users 40" in out
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600  # password hashes and encrypted keys inside
    assert [p.name for p in backup.parent.iterdir()] == ["mindroute.backup"]  # no temporary left behind
    source_engine = make_engine(cli_db)
    source_counts = row_counts(source_engine)
    source_engine.dispose()
    expected = _fingerprint(cli_db)

    code, _, err = cli(capsys, "backup", str(backup))
    assert code != 0
    assert_one_line_error(err, "already exists", "--force")

    if cli_db.get_backend_name() == "sqlite":
        target = URL.create("sqlite", database=str(tmp_path / "restored.db"))
    else:
        target = create_pg_database("mindroute_restore")
    try:
        use_database(monkeypatch, target)
        assert cli(capsys, "db", "upgrade")[0] == 0  # as the app leaves it: migrated, empty
        code, out, err = cli(capsys, "restore", str(backup))
        assert code == 0, err
        assert "logs 300" in out
        db._engine.dispose()
        target_engine = make_engine(target)
        assert row_counts(target_engine) == source_counts
        target_engine.dispose()
        assert _fingerprint(target) == expected

        code, _, err = cli(capsys, "restore", str(backup))
        assert code != 0
        assert_one_line_error(err, "not empty", "--force")

        code, _, err = cli(capsys, "restore", str(backup), "--force")
        assert code == 0, err
        db._engine.dispose()
        target_engine = make_engine(target)
        assert row_counts(target_engine) == source_counts  # replaced, not added to
        target_engine.dispose()
        assert _fingerprint(target) == expected
    finally:
        if db._engine is not None:
            db._engine.dispose()
        if target.get_backend_name() == "postgresql":
            drop_pg_database(target)


@both
def test_restore_refuses_a_missing_or_foreign_file(cli_db, capsys, tmp_path) -> None:
    code, _, err = cli(capsys, "restore", str(tmp_path / "nope.sql"))
    assert code != 0
    assert_one_line_error(err, "does not exist")

    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    code, _, err = cli(capsys, "restore", str(other))
    assert code != 0
    assert_one_line_error(err, "is not a", "backup")


@postgresql_only
def test_backup_never_shows_the_database_password(cli_db, capsys, tmp_path, monkeypatch) -> None:
    password = "s3cret-Pa55word"  # the test server trusts local connections and ignores it
    use_database(monkeypatch, cli_db.set(password=password))
    assert cli(capsys, "db", "upgrade")[0] == 0
    code, out, err = cli(capsys, "backup", str(tmp_path / "ok.sql"))
    assert code == 0, err
    assert password not in out + err

    use_database(monkeypatch, cli_db.set(password=password, database="mindroute_no_such_database"))
    code, out, err = cli(capsys, "backup", str(tmp_path / "fails.sql"))
    assert code != 0
    assert_one_line_error(err, "pg_dump failed")
    assert password not in out + err
    assert not (tmp_path / "fails.sql").exists()


# --- secrets ----------------------------------------------------------------------------------


@both
def test_rotate_secret_re_encrypts_under_the_newest_key(cli_db, capsys, monkeypatch) -> None:
    key_a, key_b, key_c = (Fernet.generate_key().decode() for _ in range(3))
    engine = make_engine(cli_db)
    upgrade(engine)
    with transaction(engine) as session:
        session.add(Provider(name="P", protocol="openai", api_key=SecretBox([key_a]).encrypt("sk-live-1234567890")))

    def stored_key() -> str:
        with transaction(engine) as session:
            return session.scalar(select(Provider.api_key))

    monkeypatch.setenv("MINDROUTE_SECRET_KEY", f"{key_b},{key_a}")
    config.get_settings.cache_clear()
    code, out, err = cli(capsys, "rotate-secret")
    assert code == 0, err
    assert "re-encrypted 1 provider key(s)" in out
    assert SecretBox([key_b]).decrypt(stored_key()) == "sk-live-1234567890"
    with pytest.raises(DecryptionError):
        SecretBox([key_a]).decrypt(stored_key())

    before = stored_key()
    monkeypatch.setenv("MINDROUTE_SECRET_KEY", key_c)
    config.get_settings.cache_clear()
    code, out, err = cli(capsys, "rotate-secret")
    assert code != 0
    assert_one_line_error(err, "could not be decrypted")
    assert "sk-live" not in out + err
    assert stored_key() == before  # all or nothing
    engine.dispose()


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("MINDROUTE_DATABASE_URL", "not a database url", "not a database URL"),
        ("MINDROUTE_DATABASE_URL", "mysql://root@localhost/mindroute", "unsupported database"),
        ("MINDROUTE_SECRET_KEY", "not-a-fernet-key", "not a Fernet key"),
        ("MINDROUTE_API_MAX_BODY_BYTES", "lots", "expected a whole number"),
        ("MINDROUTE_API_ROUTE_CACHE_S", "-1", "0 or more seconds"),
        ("MINDROUTE_LOG_QUEUE_MAX", "0", "at least 1"),
        ("MINDROUTE_LOG_FORMAT", "xml", "expected one of plain, json"),
        ("MINDROUTE_LOG_LEVEL", "loud", "expected one of debug"),
        ("MINDROUTE_LOG_RETENTION_DAYS", "0", "at least 1"),
        ("MINDROUTE_METRICS_TOKEN", "short", "at least 16 characters"),
        ("MINDROUTE_REDIS_URL", "http://cache:6379", "redis://"),
        ("MINDROUTE_PASSWORD_SIGNIN", "maybe", "expected true or false"),
        ("MINDROUTE_OIDC_CREATE_USERS", "sometimes", "expected true or false"),
    ],
)
def test_malformed_settings_are_named_in_one_line(capsys, monkeypatch, tmp_path, name, value, fragment) -> None:
    monkeypatch.setenv("MINDROUTE_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv(name, value)
    config.get_settings.cache_clear()
    code, out, err = cli(capsys, "db", "current")
    assert code != 0 and out == ""
    assert_one_line_error(err, name, fragment)


def test_malformed_database_url_in_a_real_process() -> None:
    result = run_module("seed-demo", "--rows", "10", MINDROUTE_DATABASE_URL="postgres-ish:/user:pw@host/db")
    assert result.returncode != 0
    assert_one_line_error(result.stderr, "MINDROUTE_DATABASE_URL")
    assert ":pw@" not in result.stderr


def test_database_url_with_a_bad_port_is_named_in_one_line() -> None:
    result = run_module("db", "current", MINDROUTE_DATABASE_URL="postgresql://user:pw@host:notaport/db")
    assert result.returncode != 0
    assert_one_line_error(result.stderr, "MINDROUTE_DATABASE_URL")
    assert ":pw@" not in result.stderr
