"""The command line as an operator meets it: a quick --help and --version, pg_dump's custom format, and no
database password on the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

import mindroute.db as db
from mindroute import __version__
from mindroute.cli.backup import row_counts
from mindroute.config import PROJECT_ROOT
from mindroute.db import make_engine, transaction
from mindroute.models import User
from tests.conftest import create_pg_database, drop_pg_database
from tests.test_cli import _fill, _fingerprint, assert_one_line_error, cli, cli_db, run_module, use_database

__all__ = ["cli_db"]  # a fixture, used by name

postgresql_only = pytest.mark.parametrize("fresh_db_url", ["postgresql"], indirect=True)
sqlite_only = pytest.mark.parametrize("fresh_db_url", ["sqlite"], indirect=True)

HEAVY_MODULES = ("sqlalchemy", "pandas", "alembic", "bcrypt", "cryptography", "mindroute.db")


def test_help_and_version_import_nothing_heavy() -> None:
    probe = (
        "import json, sys\n"
        "from mindroute.cli.main import main\n"
        "for argv in (['--help'], ['--version'], ['backup', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(json.dumps([m for m in {list(HEAVY_MODULES)!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60, check=True
    )
    assert "usage: mindroute" in done.stdout
    assert f"mindroute {__version__}" in done.stdout
    assert "--format {plain,custom}" in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def test_version_in_a_real_process() -> None:
    done = run_module("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"mindroute {__version__}"


def test_unknown_command_is_one_usage_line_and_exit_2() -> None:
    done = run_module("no-such-command")
    assert done.returncode == 2
    assert "invalid choice: 'no-such-command'" in done.stderr
    assert "Traceback" not in done.stderr


@postgresql_only
def test_custom_format_backup_restores_in_parallel(cli_db, capsys, monkeypatch, tmp_path) -> None:
    _fill(capsys, cli_db)
    backup = tmp_path / "mindroute.dump"
    code, out, err = cli(capsys, "backup", str(backup), "--format", "custom")
    assert code == 0, err
    assert "logs 300" in out and "users 40" in out
    assert backup.read_bytes().startswith(b"PGDMP")
    source_engine = make_engine(cli_db)
    source_counts = row_counts(source_engine)
    source_engine.dispose()
    expected = _fingerprint(cli_db)

    target = create_pg_database("mindroute_restore_fc")
    try:
        use_database(monkeypatch, target)
        code, out, err = cli(capsys, "restore", str(backup), "--jobs", "2")
        assert code == 0, err
        assert "logs 300" in out
        db._engine.dispose()
        target_engine = make_engine(target)
        assert row_counts(target_engine) == source_counts
        target_engine.dispose()
        assert _fingerprint(target) == expected

        # A cut dump is refused before anything is dropped: the database keeps every row.
        cut = tmp_path / "cut.dump"
        cut.write_bytes(backup.read_bytes()[: backup.stat().st_size // 2])
        code, _, err = cli(capsys, "restore", str(cut), "--force")
        assert code != 0
        assert_one_line_error(err, "cut.dump")
        db._engine.dispose()
        target_engine = make_engine(target)
        assert row_counts(target_engine) == source_counts
        target_engine.dispose()
    finally:
        if db._engine is not None:
            db._engine.dispose()
        drop_pg_database(target)


@sqlite_only
def test_custom_format_is_refused_for_sqlite(cli_db, capsys, tmp_path) -> None:
    code, _, err = cli(capsys, "backup", str(tmp_path / "x.dump"), "--format", "custom")
    assert code != 0
    assert_one_line_error(err, "--format custom", "SQLite")
    assert not (tmp_path / "x.dump").exists()


@sqlite_only
def test_copy_to_refuses_a_password_on_the_command_line(cli_db, capsys) -> None:
    code, _, err = cli(capsys, "copy-to", "postgresql+psycopg://postgres:hunter2-secret@127.0.0.1:5432/nowhere")
    assert code != 0
    assert_one_line_error(err, "MINDROUTE_TARGET_PASSWORD", "ps")
    assert "hunter2-secret" not in err


@sqlite_only
def test_copy_to_takes_the_target_password_from_the_environment(cli_db, capsys, monkeypatch) -> None:
    _fill(capsys, cli_db)
    target = create_pg_database("mindroute_copy_pw")
    try:
        # The test server trusts local connections, so any password works; what is checked is that the
        # variable reaches the connection and the command never prints it.
        monkeypatch.setenv("MINDROUTE_TARGET_PASSWORD", "from-the-environment")
        bare = target.set(password=None).render_as_string(hide_password=False)
        code, out, err = cli(capsys, "copy-to", bare)
        assert code == 0, err
        assert "from-the-environment" not in out + err
        engine = make_engine(target)
        with transaction(engine) as session:
            assert len(session.scalars(select(User)).all()) == 40
        engine.dispose()
    finally:
        drop_pg_database(target)


def test_target_url_gets_the_password_and_keeps_the_rest(monkeypatch) -> None:
    from mindroute.cli.commands import _target_url

    monkeypatch.setenv("MINDROUTE_TARGET_PASSWORD", "p@ss")
    url = _target_url(URL.create("postgresql+psycopg", username="u", host="h", database="d"))
    assert (url.username, url.password, url.host, url.database) == ("u", "p@ss", "h", "d")
