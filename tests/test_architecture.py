"""The layout's rules that import-linter cannot see: feature code never reaches for the app."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "throttle_app"
FEATURES = ("intake", "release", "oauth", "hubspot")


def names_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    found |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found |= {alias.name for alias in node.names}
    return found


@pytest.mark.parametrize("feature", FEATURES)
def test_feature_packages_take_their_services_as_arguments(feature):
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in sorted((PACKAGE / feature).rglob("*.py"))
        if "current_app" in names_used(path)
    ]
    assert offenders == [], f"{feature}/ reads the app instead of taking arguments: {offenders}"


def test_no_module_is_much_over_300_lines_without_saying_why():
    """Modules stay small; a longer one says in its docstring why it is one state machine."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().count("\n")
        if lines > 330 and "one state machine" not in (
            ast.get_docstring(ast.parse(path.read_text())) or ""
        ):
            long.append(f"{path.relative_to(PACKAGE)} ({lines} lines)")
    assert long == []
