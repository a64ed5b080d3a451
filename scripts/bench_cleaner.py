"""`python scripts/bench_cleaner.py [--help]`: one cleaner pass over many queues with work
(devtools/bench/cleaner.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from devtools.bench.cleaner import main

if __name__ == "__main__":
    main()
