"""`python scripts/bench_time_zones.py [--help]`: the cleaner's time zone step
(devtools/bench/time_zones.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from devtools.bench.time_zones import main

if __name__ == "__main__":
    main()
