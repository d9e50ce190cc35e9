"""`python -m mindroute audit verify` and `prune-audit`: check and trim the audit trail's hash chain from the CLI."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sqlalchemy import Engine
from tqdm import tqdm

from mindroute.cli.engine import migrated_engine
from mindroute.db import transaction
from mindroute.errors import CommandError
from mindroute.services import audit


def record_cli(
    engine: Engine, action: str, target_type: str | None, target_id: object, changes: dict[str, Any]
) -> None:
    """One audit row for a CLI action that ran outside a service's transaction (restore)."""
    with transaction(engine) as session:
        audit.record(session, action, target_type, target_id, changes, actor=audit.CLI)


def verify_command(engine: Engine, *, progress: bool | None = None) -> int:
    """Prints OK and the row count, or names the first broken row; the exit status (0 or 1)."""
    disable = None if progress is None else not progress
    with tqdm(unit="row", unit_scale=True, file=sys.stderr, disable=disable, desc="audit verify") as bar:

        def step(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        result = audit.verify(engine, progress=step)
    if result.broken is None:
        print(f"OK: the audit chain holds ({result.rows:,} rows)")
        return 0
    broken = result.broken
    print(f"BROKEN at row seq={broken.seq} (id {broken.id}): {broken.reason}; {result.rows:,} rows in all")
    return 1


def cmd_audit(args: argparse.Namespace) -> None:
    status = verify_command(migrated_engine())
    if status:
        raise SystemExit(status)


def cmd_prune_audit(args: argparse.Namespace) -> None:
    if args.older_than_days < 1:
        raise CommandError("--older-than-days must be at least 1")
    deleted = audit.prune(migrated_engine(), args.older_than_days)
    print(f"deleted {deleted:,} audit rows older than {args.older_than_days} days; the chain is re-anchored")
