"""`python scripts/bench_release.py [--help]`: the release engine's throughput and rates
(devtools/bench/release.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from devtools.bench.release import main

if __name__ == "__main__":
    main()
