"""`python scripts/bench_ops.py [--help]`: the operator page and the expiry-risk reads on
production-sized tables (devtools/bench/ops_page.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from devtools.bench.ops_page import main

if __name__ == "__main__":
    main()
