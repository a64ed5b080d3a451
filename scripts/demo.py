"""`python scripts/demo.py [--help]`: show Throttle releasing at its rates against the local
stack of `bash scripts/run.sh` (devtools/demo.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from devtools.demo import main

if __name__ == "__main__":
    sys.exit(main())
