"""Entry point for `python -m mindroute`."""

import sys

from mindroute.cli import main

sys.exit(main())
