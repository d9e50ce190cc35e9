"""`python -m mindroute …`: database, accounts, seeding, backups and secret rotation."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta

from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from mindroute.cli.engine import migrated_engine as _migrated_engine
from mindroute.config import ConfigError, get_settings
from mindroute.db import SchemaError, current_revision, downgrade, get_engine, head_revision, transaction, upgrade
from mindroute.errors import CommandError, PermissionDenied
from mindroute.security import DecryptionError
from mindroute.validation import ValidationError


def _read_password(prompt: str = "Password: ") -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("Repeat password: ") != first:
            raise CommandError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


# --- commands -------------------------------------------------------------------------------


def cmd_db(args: argparse.Namespace) -> None:
    engine = get_engine()
    if args.action == "upgrade":
        upgrade(engine, args.revision or "head")
        print(f"database at revision {current_revision(engine)}")
    elif args.action == "downgrade":
        downgrade(engine, args.revision or "base")
        print(f"database at revision {current_revision(engine) or 'base (empty)'}")
    else:
        current, head = current_revision(engine), head_revision(engine)
        state = "up to date" if current == head else f"code is at {head}"
        print(f"{current or 'empty (no revision)'} ({state})")


def cmd_create_admin(args: argparse.Namespace) -> None:
    from mindroute.services.users import create_user

    engine = _migrated_engine()
    password = _read_password()
    with transaction(engine) as session:
        user = create_user(session, None, email=args.email, name=args.name, password=password, role="admin")
        print(f"created administrator {user.email}")


def cmd_generate_secret(_args: argparse.Namespace) -> None:
    print(Fernet.generate_key().decode())


def cmd_rotate_secret(_args: argparse.Namespace) -> None:
    from mindroute.models import Provider
    from mindroute.security import SecretBox

    settings = get_settings()
    box = SecretBox(settings.secret_keys)
    engine = _migrated_engine()
    with transaction(engine) as session:  # all or nothing
        providers = session.scalars(select(Provider).where(Provider.api_key.is_not(None))).all()
        for provider in providers:
            provider.api_key = box.rotate(provider.api_key)
        session.flush()
        from mindroute.services import audit

        changes = {"provider_keys": "re-encrypted", "providers": len(providers)}
        audit.record(session, "secret.rotate", "provider", None, changes, actor=audit.CLI)
    print(f"re-encrypted {len(providers)} provider key(s) under the newest secret key")
    if len(settings.secret_keys) > 1:
        print("older keys can now be removed from MINDROUTE_SECRET_KEY")


def cmd_seed_providers(_args: argparse.Namespace) -> None:
    from mindroute.cli.seed import seed_providers

    engine = _migrated_engine()
    with transaction(engine) as session:
        created = seed_providers(session)
    if created:
        print(f"added {', '.join(created)} (inactive until an administrator sets a key)")
    else:
        print("the default providers already exist; nothing changed")


def cmd_copy_to(args: argparse.Namespace) -> None:
    from mindroute.cli.backup import rollups_summary
    from mindroute.cli.transfer import TransferError, copy_database
    from mindroute.config import parse_database_url
    from mindroute.db import make_engine

    target = make_engine(parse_database_url(args.target_url))
    try:
        copied = copy_database(get_engine(), target)
    except TransferError as exc:
        raise CommandError(str(exc)) from None
    finally:
        target.dispose()
    print("copied " + ", ".join(f"{table} {rows:,}" for table, rows in copied.rows.items()))
    print(rollups_summary(copied.rebuilt_days))


def cmd_rebuild_rollups(args: argparse.Namespace) -> None:
    from mindroute.analytics.in_step import bring_rollups_in_step
    from mindroute.analytics.rollups import rebuild_rollups
    from mindroute.cli.backup import rollups_summary

    if args.only_changed:
        print(rollups_summary(bring_rollups_in_step(_migrated_engine())))
        return
    logs, written = rebuild_rollups(_migrated_engine())
    print(f"rebuilt the usage rollups: {logs:,} log rows into {written:,} hourly rollup rows")


def cmd_prune_logs(args: argparse.Namespace) -> None:
    from mindroute.analytics.rollups import prune_logs

    if args.older_than_days < 1:
        raise CommandError("--older-than-days must be at least 1")
    from mindroute.models import utcnow
    from mindroute.services import audit
    from mindroute.services.log_explorer import record_retention_run

    engine = _migrated_engine()
    now = utcnow()
    deleted = prune_logs(engine, args.older_than_days, batch_rows=args.batch_rows, now=now)
    cutoff = now - timedelta(days=args.older_than_days)
    record_retention_run(engine, audit.CLI, args.older_than_days, cutoff, deleted)
    print(f"deleted {deleted:,} log rows older than {args.older_than_days} days")


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "db": cmd_db,
    "create-admin": cmd_create_admin,
    "generate-secret": cmd_generate_secret,
    "rotate-secret": cmd_rotate_secret,
    "seed-providers": cmd_seed_providers,
    "copy-to": cmd_copy_to,
    "rebuild-rollups": cmd_rebuild_rollups,
    "prune-logs": cmd_prune_logs,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mindroute", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="migrate the database: upgrade, downgrade, current")
    db.add_argument("action", choices=["upgrade", "downgrade", "current"])
    db.add_argument("revision", nargs="?", help="target revision (default: head for upgrade, base for downgrade)")

    admin = sub.add_parser("create-admin", help="create an administrator (password from a prompt or stdin)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", required=True)

    sub.add_parser("generate-secret", help="print a new key for MINDROUTE_SECRET_KEY")
    sub.add_parser("rotate-secret", help="re-encrypt every provider key under the newest MINDROUTE_SECRET_KEY")
    sub.add_parser("seed-providers", help="add OpenAI, Anthropic and Google AI with their official endpoints")
    copy = sub.add_parser("copy-to", help="copy every row into another, empty database (e.g. SQLite to PostgreSQL)")
    copy.add_argument("target_url", help="SQLAlchemy URL of the empty target database")
    rebuild = sub.add_parser("rebuild-rollups", help="recompute the usage rollups (all three levels) from the logs")
    rebuild.add_argument(
        "--only-changed",
        action="store_true",
        help="rebuild only the UTC days whose rollups differ from the logs (per-hour and per-day totals)",
    )
    prune = sub.add_parser("prune-logs", help="delete logs older than N days, in batches, keeping rollups in step")
    prune.add_argument("--older-than-days", type=int, required=True, metavar="N")
    prune.add_argument("--batch-rows", type=int, default=5000, help="rows per transaction (default %(default)s)")

    from mindroute.cli import audit, backup, seed

    seed.add_demo_parser(sub)
    backup.add_parsers(sub)
    audit.add_parsers(sub)
    COMMANDS.update(
        {
            "seed-demo": seed.cmd_seed_demo,
            "backup": backup.cmd_backup,
            "restore": backup.cmd_restore,
            "audit": audit.cmd_audit,
            "prune-audit": audit.cmd_prune_audit,
        }
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from mindroute.services.audit import CLI, acting_as

    try:
        with acting_as(CLI):  # whatever a command changes is recorded as done by "cli"
            COMMANDS[args.command](args)
    except SystemExit as exc:  # `audit verify` found a broken row (it printed which)
        return int(exc.code or 0)
    except ValidationError as exc:
        print(f"error: {exc.field}: {exc.message}", file=sys.stderr)
        return 2
    except (CommandError, ConfigError, SchemaError, PermissionDenied) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except DecryptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        # One line naming the failure; never the URL (it may hold a password).
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else exc.__class__.__name__
        print(f"error: cannot use the database: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
