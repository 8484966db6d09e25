"""Policy scan of the rendered manifests: no checkov finding left unjustified.

Skipped checks are listed with their reason in .checkov.yaml; everything else
must pass. checkov lives in its own virtualenv (.venv-checkov, made by
install.sh) because its pinned dependencies clash with ansible-lint's.
"""
import json
import os
import subprocess

from static_support import ROOT

CHECKOV = os.path.join(ROOT, ".venv-checkov", "bin", "checkov")


def test_checkov_finds_nothing_unjustified(rendered):
    proc = subprocess.run([CHECKOV, "--config-file", os.path.join(ROOT, ".checkov.yaml"),
                           "-d", str(rendered), "-o", "json"], capture_output=True, text=True, cwd=ROOT)
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [f"{c['check_id']} {c['check_name']}: {c['file_path']} {c['resource']}"
              for r in reports for c in r["results"].get("failed_checks", [])]
    passed = sum(r["summary"]["passed"] for r in reports)
    print(f"checkov: {passed} checks passed, {len(failed)} failed")
    assert passed > 100
    assert not failed, "\n".join(sorted(set(failed)))
