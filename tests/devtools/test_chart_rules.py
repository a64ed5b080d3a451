"""devtools.chart_rules (run by scripts/check_chart.sh) turns a rendered chart's PrometheusRules
into the plain rules file promtool reads, and refuses a render without one."""

from __future__ import annotations

from pathlib import Path

import yaml

from devtools import chart_rules

RULE = {
    "kind": "PrometheusRule",
    "metadata": {"name": "throttle"},
    "spec": {"groups": [{"name": "throttle", "rules": [{"alert": "A", "expr": "up == 0"}]}]},
}


def test_the_rules_file_holds_every_group(tmp_path: Path, capsys) -> None:
    rendered, out = tmp_path / "rendered.yaml", tmp_path / "rules.yaml"
    other = {
        **RULE,
        "spec": {"groups": [{"name": "more", "rules": [{"record": "r", "expr": "1"}]}]},
    }
    rendered.write_text(yaml.safe_dump_all([{"kind": "Service"}, RULE, None, other]))
    assert chart_rules.main([str(rendered), str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == {
        "groups": RULE["spec"]["groups"] + other["spec"]["groups"]
    }
    assert capsys.readouterr().out.strip() == "2"


def test_a_render_without_rules_is_refused(tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all([{"kind": "Service"}]))
    assert chart_rules.main([str(rendered), str(tmp_path / "rules.yaml")]) == 1
    assert not (tmp_path / "rules.yaml").exists()
