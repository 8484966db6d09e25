"""Alert rules: promtool checks and unit tests, runbooks, one source of truth."""
import ast
import os
import re
import subprocess

import yaml

from lib.monitoring_support import ROOT, RULES, configmap_data

HERE = os.path.dirname(os.path.abspath(__file__))
RULE_TESTS = os.path.join(HERE, "rules.test.yml")
RUNBOOKS = os.path.join(ROOT, "docs", "runbooks")


def alerts():
    with open(RULES) as f:
        groups = yaml.safe_load(f)["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def test_rules_pass_promtool_check(tools):
    proc = subprocess.run([tools["promtool"], "check", "rules", RULES], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rule_unit_tests_pass(tools):
    # Each alert fires in one case and stays silent in another (see the file).
    proc = subprocess.run([tools["promtool"], "test", "rules", RULE_TESTS], capture_output=True,
                          text=True, cwd=HERE, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_silent_unit_test():
    with open(RULE_TESTS) as f:
        cases = [c for t in yaml.safe_load(f)["tests"] for c in t.get("alert_rule_test", [])]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = {a["alert"] for a in alerts()}
    assert names - fires == set(), "alerts without a case where they fire"
    # The Watchdog fires always, by design.
    assert names - silent - {"Watchdog"} == set(), "alerts without a case where they stay silent"


def test_every_alert_has_severity_summary_and_an_existing_runbook():
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "none"), name
        assert rule["annotations"].get("summary"), name
        assert rule["annotations"]["runbook_url"] == f"docs/runbooks/{name}.md", name
        path = os.path.join(RUNBOOKS, f"{name}.md")
        assert os.path.isfile(path), f"missing runbook {path}"
        with open(path) as f:
            text = f.read()
        assert text.startswith(f"# {name}"), f"{path} must start with '# {name}'"
        for section in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation"):
            assert section in text, f"{path} lacks {section}"


def test_rules_configmap_embeds_the_rules_file_verbatim(rendered):
    with open(RULES) as f:
        source = f.read()
    assert configmap_data(rendered, "monitoring", "prometheus-rules.yaml", "skx-alerts.yml") == source


def test_the_lag_threshold_is_patronis_maximum_lag_on_failover():
    """PatroniReplicationLag fires past the lag at which Patroni no longer
    promotes a replica and its readiness fails: the constant the Patroni
    configuration filter sets (the rules file is embedded verbatim, so it
    cannot name the variable)."""
    with open(os.path.join(ROOT, "plugins", "filter", "patroni.py")) as f:
        tree = ast.parse(f.read())
    [limit] = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
               and any(getattr(t, "id", None) == "MAXIMUM_LAG_ON_FAILOVER" for t in node.targets)]
    [rule] = [r for r in alerts() if r["alert"] == "PatroniReplicationLag"]
    assert re.search(rf"namespace_pod:patroni_replay_lag:bytes > {limit}\b", rule["expr"]), rule["expr"]
