"""The `mindroute` command line's arguments, with nothing heavy imported: `--help` and a typo answer at once.

Each command names its handler as "module:function"; `mindroute.cli.main` imports it only when the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

DEFAULT_DEMO_ROWS = 10_000
DEFAULT_DEMO_DAYS = 30
MAX_DEMO_DAYS = 3_650

DESCRIPTION = "MindRoute's command line: database, accounts, seeding, backups, secret rotation and the audit trail."


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,}, got {value:,}")
        return value

    return parse


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: str, **kwargs: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, **kwargs)
    parser.set_defaults(handler=handler)
    return parser


def build_parser(version: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mindroute", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"mindroute {version}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    core = "mindroute.cli.commands"

    db = _command(sub, "db", f"{core}:cmd_db", help="migrate the database: upgrade, downgrade, current")
    db.add_argument("action", choices=["upgrade", "downgrade", "current"])
    db.add_argument("revision", nargs="?", help="target revision (default: head for upgrade, base for downgrade)")

    admin = _command(
        sub,
        "create-admin",
        f"{core}:cmd_create_admin",
        help="create an administrator (password: prompt or stdin)",
    )
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", required=True)

    _command(sub, "generate-secret", f"{core}:cmd_generate_secret", help="print a new key for MINDROUTE_SECRET_KEY")
    _command(
        sub,
        "rotate-secret",
        f"{core}:cmd_rotate_secret",
        help="re-encrypt every provider key under the newest MINDROUTE_SECRET_KEY",
    )
    _command(
        sub,
        "seed-providers",
        f"{core}:cmd_seed_providers",
        help="add OpenAI, Anthropic and Google AI with their official endpoints",
    )
    copy = _command(
        sub,
        "copy-to",
        f"{core}:cmd_copy_to",
        help="copy every row into another, empty database (e.g. SQLite to PostgreSQL)",
        description=(
            "TARGET_URL carries no password (the command line is visible to every user of the machine in `ps`): "
            "the password comes from MINDROUTE_TARGET_PASSWORD, else from a prompt when run in a terminal."
        ),
    )
    copy.add_argument("target_url", help="SQLAlchemy URL of the empty target database, without a password")
    rebuild = _command(
        sub,
        "rebuild-rollups",
        f"{core}:cmd_rebuild_rollups",
        help="recompute the usage rollups (all three levels) from the logs",
    )
    rebuild.add_argument(
        "--only-changed",
        action="store_true",
        help="rebuild only the UTC days whose rollups differ from the logs (per-hour and per-day totals)",
    )
    prune = _command(
        sub,
        "prune-logs",
        f"{core}:cmd_prune_logs",
        help="delete logs older than N days, in batches, keeping rollups in step",
    )
    prune.add_argument("--older-than-days", type=int, required=True, metavar="N")
    prune.add_argument("--batch-rows", type=int, default=5000, help="rows per transaction (default %(default)s)")

    demo = _command(
        sub,
        "seed-demo",
        "mindroute.cli.seed:cmd_seed_demo",
        help="add synthetic demo users, providers and request logs (all labelled demo)",
        description=(
            "Adds ~40 demo users (@demo.mindroute.invalid), 4 'Demo …' providers without keys, their grants "
            "(once; re-runs reuse them) and ROWS synthetic request logs spread over the last DAYS days."
        ),
    )
    demo.add_argument(
        "--rows",
        type=_bounded_int(0, 100_000_000),
        default=DEFAULT_DEMO_ROWS,
        help="log rows (default %(default)s)",
    )
    demo.add_argument(
        "--days",
        type=_bounded_int(1, MAX_DEMO_DAYS),
        default=DEFAULT_DEMO_DAYS,
        help="spread over the last DAYS days (default %(default)s)",
    )
    demo.add_argument("--seed", type=int, default=None, help="random seed: the same data (relative to now) every time")

    backup = _command(
        sub,
        "backup",
        "mindroute.cli.backup:cmd_backup",
        help="write the whole database to FILE (PostgreSQL: pg_dump; SQLite: a database file)",
        description="Writes FILE owner-only: it holds password hashes and encrypted provider keys.",
    )
    backup.add_argument("file", metavar="FILE", type=Path)
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    backup.add_argument(
        "--format",
        choices=["plain", "custom"],
        default="plain",
        help="PostgreSQL only: plain SQL (default) or pg_dump's custom format (-Fc), restorable in parallel",
    )
    restore = _command(
        sub,
        "restore",
        "mindroute.cli.backup:cmd_restore",
        help="replace the database with a backup made by `backup` (refuses a non-empty database)",
        description=(
            "Restores FILE into MINDROUTE_DATABASE_URL, then migrates it to this version's schema. "
            "Stop the app first. The database must hold no users, providers, logs, tickets or keys, "
            "unless --force, which replaces them."
        ),
    )
    restore.add_argument("file", metavar="FILE", type=Path)
    restore.add_argument("--force", action="store_true", help="replace a database that already holds data")
    restore.add_argument(
        "--jobs",
        type=_bounded_int(1, 64),
        default=2,
        help="parallel jobs, custom format (default %(default)s)",
    )

    check = _command(
        sub, "audit", "mindroute.cli.audit:cmd_audit", help="check the audit trail: `audit verify` walks the hash chain"
    )
    check.add_argument("action", choices=["verify"])
    prune_audit = _command(
        sub,
        "prune-audit",
        "mindroute.cli.audit:cmd_prune_audit",
        help="delete audit rows older than N days (kept by default), re-anchoring the chain",
    )
    prune_audit.add_argument("--older-than-days", type=int, required=True, metavar="N")
    return parser
