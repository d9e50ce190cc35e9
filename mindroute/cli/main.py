"""`mindroute …` (or `python -m mindroute …`): parse the arguments, run the command, turn its errors into one line.

Only argparse is imported before a command runs, so `--help`, `--version` and a mistyped command answer at once.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from mindroute import __version__
from mindroute.cli.parsers import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(__version__).parse_args(argv)
    module_name, _, function_name = args.handler.partition(":")
    command = getattr(importlib.import_module(module_name), function_name)

    from sqlalchemy.exc import OperationalError

    from mindroute.config import ConfigError
    from mindroute.db import SchemaError
    from mindroute.errors import CommandError, PermissionDenied
    from mindroute.security import DecryptionError
    from mindroute.services.audit import CLI, acting_as
    from mindroute.validation import ValidationError

    try:
        with acting_as(CLI):  # whatever a command changes is recorded as done by "cli"
            command(args)
    except SystemExit as exc:  # `audit verify` found a broken row (it printed which)
        return int(exc.code or 0)
    except ValidationError as exc:
        print(f"error: {exc.field}: {exc.message}", file=sys.stderr)
        return 2
    except (CommandError, ConfigError, SchemaError, PermissionDenied, DecryptionError) as exc:
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
