"""`python -m bench api|analytics|page`: the benchmarks' command line."""

import sys

if sys.argv[1:2] == ["page"]:
    from bench.page import main as page_main

    raise SystemExit(page_main(sys.argv[2:]))

from bench.api import main

raise SystemExit(main())
