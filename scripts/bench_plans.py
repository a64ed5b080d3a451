"""`python scripts/bench_plans.py [--help]`: EXPLAIN (ANALYZE, BUFFERS) of the release, scrape,
listing and cleaner statements on the benchmark database (devtools/bench/plans.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from devtools.bench.plans import main

if __name__ == "__main__":
    main()
