"""The alert rules of a rendered chart as a plain Prometheus rules file, for promtool:
`python -m devtools.chart_rules RENDERED.yaml OUT.yaml` (scripts/check_chart.sh runs it, then
`promtool check rules OUT.yaml` and the unit tests in helm/rules-tests/).

Writes the `spec` (its `groups`) of every PrometheusRule in the rendered manifests, groups in
order, and prints how many rules it wrote; exits 1 when there is no PrometheusRule (nothing to
check is an error: the caller asked for the rules). Needs only PyYAML.
"""

from __future__ import annotations

import sys

import yaml


def rule_groups(docs: list[dict]) -> list[dict]:
    """The groups of every PrometheusRule in `docs`, in order."""
    return [
        group
        for doc in docs
        if doc.get("kind") == "PrometheusRule"
        for group in doc["spec"]["groups"]
    ]


def main(argv: list[str]) -> int:
    """Write argv[0]'s rules to argv[1]; 0 when there were some, else 1."""
    with open(argv[0]) as rendered:
        docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    groups = rule_groups(docs)
    if not groups:
        print(f"no PrometheusRule in {argv[0]}", file=sys.stderr)
        return 1
    with open(argv[1], "w") as out:
        yaml.safe_dump({"groups": groups}, out, sort_keys=False)
    print(sum(len(group["rules"]) for group in groups))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
