"""The hash-locked requirement files (requirements/*.txt, `make lock`) and the pins pyproject.toml
declares, read the way pip reads them."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
LOCKS = ("runtime", "dev", "build")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    """One locked requirement: `name==version [; marker]` and the sha256 of its files."""

    requirement: Requirement
    hashes: frozenset[str]

    @property
    def version(self) -> str:
        (spec,) = self.requirement.specifier
        return spec.version

    def applies(self, environment: dict[str, str] | None = None) -> bool:
        """Whether pip installs it on this interpreter (or in `environment`'s)."""
        marker = self.requirement.marker
        return marker is None or marker.evaluate(environment)


def lock_path(name: str) -> Path:
    return REQUIREMENTS / f"{name}.txt"


def read_lock(path: Path) -> dict[NormalizedName, Pin]:
    """name -> Pin for every requirement of a lock file. Raises on a line that is not a
    `name==version` pin with hashes (an option, a URL, an editable, a range)."""
    text = re.sub(r"[ \t]*\\\n", " ", path.read_text())
    pins: dict[NormalizedName, Pin] = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(HASH.sub("", line).strip())
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}: not a pin: {line}"
        hashes = frozenset(HASH.findall(line))
        assert hashes, f"{path.name}: no hash: {line}"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{path.name}: {name} locked twice"
        pins[name] = Pin(requirement, hashes)
    return pins


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared(requirements: list[str]) -> dict[NormalizedName, Requirement]:
    """name -> Requirement for a pyproject.toml list of requirements."""
    parsed = (Requirement(text) for text in requirements)
    return {canonicalize_name(requirement.name): requirement for requirement in parsed}
