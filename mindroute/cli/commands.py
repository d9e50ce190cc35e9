"""The core commands of `mindroute` (database, accounts, secrets, copying, rollups, log pruning); their
arguments are in `mindroute.cli.parsers`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import timedelta

from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.engine import URL

from mindroute.cli.engine import migrated_engine as _migrated_engine
from mindroute.config import get_settings
from mindroute.db import current_revision, downgrade, get_engine, head_revision, transaction, upgrade
from mindroute.errors import CommandError

TARGET_PASSWORD_ENV = "MINDROUTE_TARGET_PASSWORD"  # noqa: S105 - the name of a variable, not a secret


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


def _target_url(url: URL) -> URL:
    """The target with its password from the environment or a prompt, never from the command line."""
    if url.password is not None:
        raise CommandError(
            f"TARGET_URL holds a password, which every user of this machine can read in `ps`: remove it, and set "
            f"{TARGET_PASSWORD_ENV} or type it at the prompt"
        )
    password = os.environ.get(TARGET_PASSWORD_ENV)
    if password is None and url.get_backend_name() != "sqlite" and sys.stdin.isatty():
        password = getpass.getpass("Password of the target database (empty for none): ")
    return url.set(password=password) if password else url


def cmd_copy_to(args: argparse.Namespace) -> None:
    from mindroute.cli.backup import rollups_summary
    from mindroute.cli.transfer import TransferError, copy_database
    from mindroute.config import parse_database_url
    from mindroute.db import make_engine

    target = make_engine(_target_url(parse_database_url(args.target_url)))
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
