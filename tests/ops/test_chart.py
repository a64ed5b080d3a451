"""The Helm chart runs the entrypoint's roles with the environment they need, and documents its
values. No cluster needed (scripts/check_chart.sh lints, renders and validates it)."""

from __future__ import annotations

import re

from tests.support.shipping import REQUIRED_ENV, ROOT, entrypoint_roles

CHART = ROOT / "helm" / "throttle"
CHART_TEMPLATES = CHART / "templates"


def test_chart_commands_are_entrypoint_roles() -> None:
    roles = entrypoint_roles()
    found = set()
    for template in CHART_TEMPLATES.glob("*.yaml"):
        text = template.read_text()
        found |= set(re.findall(r'^\s+args: \["([a-z-]+)"', text, re.M))
        found |= set(re.findall(r"^\s+args:\n\s+- ([a-z-]+)$", text, re.M))
    assert found >= {"web", "worker", "scheduler", "migrate", "dashboard"}
    assert found <= roles, f"chart uses roles {sorted(found - roles)} the entrypoint lacks"


def test_chart_provides_the_required_variables() -> None:
    helpers = (CHART_TEMPLATES / "_helpers.tpl").read_text()
    keys = set(re.findall(r'^\s*"?([A-Z][A-Z0-9_]+)"?[: ]', helpers, re.M))
    missing = REQUIRED_ENV - keys
    assert not missing, f"the chart's ConfigMap/Secret lack {sorted(missing)}"


def test_every_chart_value_is_documented() -> None:
    """Each key in values.yaml has a comment on the line above it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(lines, start=1)
        if re.match(r"^\s*[A-Za-z][\w-]*:", line)
        and (number == 1 or not lines[number - 2].lstrip().startswith("#"))
    ]
    assert not undocumented, undocumented
