"""`python scripts/bench_intake.py [--help]`: the durable intake against its ceiling
(devtools/bench/intake.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from devtools.bench.intake import main

if __name__ == "__main__":
    main()
