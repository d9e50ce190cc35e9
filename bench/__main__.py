"""`python -m bench api|analytics`: the benchmarks' command line."""

from bench.api import main

raise SystemExit(main())
