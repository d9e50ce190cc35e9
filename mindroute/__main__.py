"""Entry point for `python -m mindroute`."""

import sys

from mindroute.cli.main import main

sys.exit(main())
