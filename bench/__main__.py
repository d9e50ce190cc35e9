"""`python -m bench api|analytics|page|scaleout`: the benchmarks' command line."""

import sys

if sys.argv[1:2] == ["page"]:
    from bench.page import main as page_main

    raise SystemExit(page_main(sys.argv[2:]))
if sys.argv[1:2] == ["scaleout"]:
    from bench.scaleout import main as scaleout_main

    raise SystemExit(scaleout_main(sys.argv[2:]))

from bench.api import main

raise SystemExit(main())
