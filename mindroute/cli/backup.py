"""`backup` and `restore`: pg_dump/psql for PostgreSQL, SQLite's online backup API for SQLite."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import URL

from mindroute.analytics.in_step import bring_rollups_in_step
from mindroute.errors import CommandError
from mindroute.models import Base

# Rows in any of these make a database "in use": restore refuses to overwrite it without --force.
# (The app migrates on start, so the tables may well exist and be empty.) Sign-in attempts are
# not worth protecting: a fresh app collects them as soon as someone opens the sign-in page.
NOT_DATA_TABLES = frozenset({"loginattempts", "limitcounters"})  # this minute's counts are not data either
SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = "-- PostgreSQL database dump"
PG_DUMP_COMPLETE = "-- PostgreSQL database dump complete"
PG_CUSTOM_MAGIC = b"PGDMP"  # pg_dump --format=custom
PG_TOOL_TIMEOUT_S = 6 * 3600  # a hung server should not hang the command forever


def _fail(message: str) -> CommandError:
    return CommandError(message)


# --- helpers --------------------------------------------------------------------------------


def _engine() -> Engine:
    from mindroute.db import get_engine

    return get_engine()


def _table_names() -> list[str]:
    """MindRoute's tables, alphabetically (the order summaries list them in)."""
    return sorted(t.name for t in Base.metadata.sorted_tables)


AUDIT_TABLE = "auditlog"


def row_counts(engine: Engine, *, audit: bool = False) -> dict[str, int]:
    """Rows per MindRoute table that exists (a database may be older, or empty). The audit trail only with
    `audit`: a restore appends its own row to it, so it is reported apart from the data that came back."""
    existing = set(inspect(engine).get_table_names())
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for name in _table_names():
            if name in existing and (audit or name != AUDIT_TABLE):
                # Table names come from our own metadata, never from input.
                counts[name] = conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()  # noqa: S608
    return counts


def _has_data(engine: Engine) -> list[str]:
    """The tables holding rows worth protecting from an accidental restore."""
    existing = set(inspect(engine).get_table_names())
    candidates = [name for name in _table_names() if name in existing and name not in NOT_DATA_TABLES]
    with engine.connect() as conn:
        # Table names come from our own metadata, never from input.
        return [name for name in candidates if conn.execute(text(f"SELECT 1 FROM {name} LIMIT 1")).first()]  # noqa: S608


def rollups_summary(rebuilt: list[datetime]) -> str:
    """One line on what bringing the usage rollups in step with the logs did."""
    if not rebuilt:
        return "usage rollups: in step with the logs"
    days = f"{rebuilt[0]:%Y-%m-%d}" if len(rebuilt) == 1 else f"{rebuilt[0]:%Y-%m-%d} to {rebuilt[-1]:%Y-%m-%d}"
    return f"usage rollups: rebuilt {len(rebuilt):,} UTC day(s) that did not match the logs ({days})"


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counts.items()) or "no MindRoute tables"


def _format_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    return f"{value:.1f} {unit}"


def _sqlite_path(url: URL) -> Path:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise _fail("MINDROUTE_DATABASE_URL: backup and restore need a SQLite database file, not an in-memory one")
    return Path(database)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise _fail(f"backup file {path} does not exist")
    if not path.is_file():
        raise _fail(f"backup file {path} is not a regular file")
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise _fail(f"cannot read backup file {path}: {exc.strerror or exc}") from None


def _sniff(path: Path) -> str:
    """'sqlite', 'pg_dump', 'pg_custom' or 'unknown', from the file's first bytes."""
    with path.open("rb") as fh:
        head = fh.read(512)
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PG_CUSTOM_MAGIC):
        return "pg_custom"
    if PG_DUMP_MAGIC.encode() in head:
        return "pg_dump"
    return "unknown"


@contextlib.contextmanager
def _atomic_output(path: Path, force: bool) -> Iterator[Path]:
    """A temporary owner-only file next to `path`, renamed onto it only if the block succeeds,
    so a failed backup never leaves a truncated file or clobbers the previous one."""
    if path.is_dir():
        raise _fail(f"{path} is a directory; give a file name")
    if path.exists() and not force:
        raise _fail(f"{path} already exists; choose another name or pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=parent)
    except OSError as exc:
        raise _fail(f"cannot write to {parent}: {exc.strerror or exc}") from None
    os.close(fd)  # mkstemp made it 0600 already
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _first_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() or "fatal" in line.lower():
            return line
    return lines[0] if lines else "no message"


# --- PostgreSQL -----------------------------------------------------------------------------


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """The URL libpq understands (no "+psycopg", no password) and an environment carrying the password."""
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)  # never on the command line, where `ps` shows it
    conninfo = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return conninfo, env


def _run_pg_tool(argv: list[str], env: dict[str, str], what: str) -> None:
    tool = argv[0]
    if shutil.which(tool) is None:
        raise _fail(f"{tool} not found on PATH; install the PostgreSQL client tools (same major version as the server)")
    try:
        result = subprocess.run(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=PG_TOOL_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise _fail(f"{what}: {tool} did not finish within {PG_TOOL_TIMEOUT_S // 3600} hours") from None
    if result.returncode != 0:
        raise _fail(f"{what}: {tool} failed: {_first_error_line(result.stderr)}")


def _count_copy_rows(lines: Iterable[str], source: Path) -> dict[str, int]:
    """Rows per table in pg_dump's SQL, counted from its COPY blocks; checks the dump is complete."""
    counts: dict[str, int] = {}
    current: str | None = None
    complete = False
    for line in lines:
        if current is not None:
            if line == "\\.\n":
                current = None
            else:
                counts[current] += 1
        elif line.startswith("COPY "):
            name = line.split()[1].split(".")[-1].strip('"')
            current = name
            counts.setdefault(name, 0)
        elif line.startswith(PG_DUMP_COMPLETE):
            complete = True
    if not complete:
        raise _fail(f"{source} is incomplete (no end-of-dump marker); the dump was cut short")
    return {name: counts[name] for name in _table_names() if name in counts}


def _dump_counts(path: Path) -> dict[str, int]:
    """Rows per table of a plain pg_dump file."""
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        return _count_copy_rows(fh, path)


def _custom_dump_counts(path: Path) -> dict[str, int]:
    """Rows per table of a custom-format dump, read through pg_restore's SQL output: reading every data block
    also proves the file whole (pg_restore fails on a cut one) before a restore drops anything."""
    if shutil.which("pg_restore") is None:
        raise _fail(
            "pg_restore not found on PATH; install the PostgreSQL client tools (same major version as the server)"
        )
    with subprocess.Popen(
        ["pg_restore", "--data-only", "--file=-", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            counts = _count_copy_rows(proc.stdout, path)
        finally:
            proc.stdout.close()
            stderr = proc.stderr.read()
            proc.wait(timeout=PG_TOOL_TIMEOUT_S)
    if proc.returncode != 0:
        raise _fail(f"{path} cannot be read: pg_restore failed: {_first_error_line(stderr)}")
    return counts


def _check_dump_complete(path: Path) -> None:
    # pg_dump writes its end marker last; without it the file was cut short (disk full, killed, copied half).
    with path.open("rb") as fh:
        fh.seek(max(path.stat().st_size - 4096, 0))
        tail = fh.read()
    if PG_DUMP_COMPLETE.encode() not in tail:
        raise _fail(f"{path} is incomplete (no end-of-dump marker); the dump was cut short, nothing was restored")


def _backup_postgresql(engine: Engine, path: Path, force: bool, custom: bool = False) -> dict[str, int]:
    conninfo, env = _libpq(engine.url)
    with _atomic_output(path, force) as tmp:
        # The custom format has no --clean: restore drops MindRoute's tables itself before pg_restore.
        layout = ["--format=custom"] if custom else ["--format=plain", "--clean", "--if-exists"]
        _run_pg_tool(
            ["pg_dump", *layout, "--no-owner", "--no-privileges", f"--file={tmp}", f"--dbname={conninfo}"],
            env,
            "backup",
        )
        return _custom_dump_counts(tmp) if custom else _dump_counts(tmp)


def _restore_postgresql_custom(engine: Engine, path: Path, jobs: int) -> None:
    """pg_restore in `jobs` parallel connections. Not one transaction (pg_restore --jobs cannot be), so the
    file is read whole first (`_custom_dump_counts`): a cut or corrupt dump is refused before anything is dropped."""
    _custom_dump_counts(path)
    conninfo, env = _libpq(engine.url)
    engine.dispose()
    names = ", ".join([*_table_names(), "alembic_version"])
    drop = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", f"--command=DROP TABLE IF EXISTS {names} CASCADE"]
    _run_pg_tool([*drop, f"--dbname={conninfo}"], env, "restore")
    _run_pg_tool(
        [
            "pg_restore",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            f"--jobs={jobs}",
            f"--dbname={conninfo}",
            str(path),
        ],
        env,
        "restore",
    )


def _restore_postgresql(engine: Engine, path: Path) -> None:
    conninfo, env = _libpq(engine.url)
    engine.dispose()  # our pooled connections must not hold anything the dump's DROPs wait for
    # The dump's own DROPs (--clean) fail where a newer schema has tables the dump does not know
    # referencing the ones it replaces, so drop every MindRoute table first, in the same transaction.
    names = ", ".join([*_table_names(), "alembic_version"])
    # -X: ignore ~/.psqlrc; one transaction for the -c and the -f: any failure leaves the database as it was.
    _run_pg_tool(
        [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            f"--command=DROP TABLE IF EXISTS {names} CASCADE",
            f"--file={path}",
            f"--dbname={conninfo}",
        ],
        env,
        "restore",
    )


# --- SQLite ---------------------------------------------------------------------------------


def _backup_sqlite(engine: Engine, path: Path, force: bool) -> dict[str, int]:
    source_path = _sqlite_path(engine.url)
    if not source_path.is_file():
        raise _fail(f"there is no SQLite database at {source_path}; nothing to back up")
    with _atomic_output(path, force) as tmp:
        try:
            # Read-only: a backup must never create or change the database it copies.
            source = sqlite3.connect(f"{source_path.resolve().as_uri()}?mode=ro", uri=True)
            target = sqlite3.connect(tmp)
            try:
                # The online backup API copies a consistent snapshot while the app keeps writing.
                source.backup(target)
                # A self-contained file: no -wal/-shm companions to forget when copying it.
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
                source.close()
        except sqlite3.Error as exc:
            raise _fail(f"backup failed: {exc}") from None
        return _sqlite_file_counts(tmp)


def _sqlite_file_counts(path: Path) -> dict[str, int]:
    # Plain sqlite3, read-only: MindRoute's engine would switch the file back to WAL mode.
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        existing = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {
            name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # noqa: S608 - our table names
            for name in _table_names()
            if name in existing
        }
    finally:
        conn.close()


def _check_sqlite_backup(path: Path) -> None:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise _fail(f"{path} is not a readable SQLite database: {exc}") from None
    if "alembic_version" not in names or "users" not in names:
        raise _fail(f"{path} is a SQLite database but not a MindRoute backup (no users or alembic_version table)")


def _restore_sqlite(engine: Engine, path: Path) -> None:
    target_path = _sqlite_path(engine.url)
    _check_sqlite_backup(path)
    engine.dispose()
    target_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        target = sqlite3.connect(target_path, timeout=10)
        try:
            # Page by page into the live file, under SQLite's own locking: readers never see half a restore.
            source.backup(target)
        finally:
            target.close()
            source.close()
    except sqlite3.Error as exc:
        raise _fail(f"restore failed: {exc} (is the app still running?)") from None


# --- commands -------------------------------------------------------------------------------


def cmd_backup(args: argparse.Namespace) -> None:
    # No migration first: a backup is of the database as it is (often taken before upgrading).
    engine = _engine()
    path: Path = args.file
    custom = getattr(args, "format", "plain") == "custom"
    if engine.dialect.name == "postgresql":
        counts = _backup_postgresql(engine, path, args.force, custom=custom)
    else:
        if custom:
            raise _fail("--format custom is pg_dump's format: a SQLite database is backed up as a database file")
        counts = _backup_sqlite(engine, path, args.force)
    size = path.stat().st_size
    print(f"backed up the {engine.dialect.name} database to {path} ({_format_size(size)}, owner-only)")
    print(f"rows: {_format_counts(counts)}")


def cmd_restore(args: argparse.Namespace) -> None:
    from mindroute.db import ensure_schema

    engine = _engine()
    path: Path = args.file
    _check_readable(path)
    kind = _sniff(path)
    dialect = engine.dialect.name
    if dialect == "postgresql" and kind not in ("pg_dump", "pg_custom"):
        hint = " (it is a SQLite backup)" if kind == "sqlite" else ""
        raise _fail(f"{path} is not a PostgreSQL backup made by `python -m mindroute backup`{hint}")
    if dialect == "sqlite" and kind != "sqlite":
        hint = " (it is a PostgreSQL dump)" if kind in ("pg_dump", "pg_custom") else ""
        raise _fail(f"{path} is not a SQLite backup made by `python -m mindroute backup`{hint}")
    if kind == "pg_dump":
        _check_dump_complete(path)
    if dialect == "sqlite" and not _sqlite_path(engine.url).exists():
        busy: list[str] = []  # restoring creates the file; nothing to protect
    else:
        busy = _has_data(engine)
    if busy and not args.force:
        raise _fail(
            f"the database is not empty (rows in {', '.join(busy)}); restore into an empty database, "
            "or pass --force to replace everything in it"
        )
    if kind == "pg_custom":
        _restore_postgresql_custom(engine, path, getattr(args, "jobs", 2))
    elif dialect == "postgresql":
        _restore_postgresql(engine, path)
    else:
        _restore_sqlite(engine, path)
    # Backups from older versions come back at their schema; bring them to this version's.
    ensure_schema(engine)
    size = path.stat().st_size
    from mindroute.cli.audit import record_cli

    # The restored chain is the backup's; the restore itself is its next row.
    record_cli(engine, "backup.restore", "database", None, {"file": path.name, "bytes": size, "forced": bool(busy)})
    print(f"restored {path} ({_format_size(size)}) into the {dialect} database")
    # A backup holds the rollups as they were, which need not match its logs (rows loaded by hand,
    # a load cut short): the days that differ are rebuilt from the logs, with a bar on a terminal.
    print(rollups_summary(bring_rollups_in_step(engine)))
    print(f"rows: {_format_counts(row_counts(engine))}")
    trail = row_counts(engine, audit=True).get(AUDIT_TABLE, 0)
    print(f"audit trail: {trail:,} rows, the last one this restore (check it with `python -m mindroute audit verify`)")
