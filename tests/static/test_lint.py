"""The lint gates: yamllint, ansible-lint (production profile), syntax checks."""
import glob
import json
import os

import pytest

from static_support import ROOT, run_ansible

PLAYBOOKS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(f"{ROOT}/playbooks/*.yml")) + ["site.yml"]


def test_yamllint():
    run_ansible("yamllint", "--strict", ".")


def test_ansible_lint_production_profile():
    run_ansible("ansible-lint", "--profile", "production", "--offline", env={"NO_COLOR": "1"})


@pytest.mark.parametrize("inventory", ["vm", "existing", "local"])
def test_syntax_check_of_every_playbook(inventory):
    run_ansible("ansible-playbook", "--syntax-check", *PLAYBOOKS, "-i", f"inventories/{inventory}")


MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(f"{ROOT}/plugins/modules/*.py")
                 if not os.path.basename(p).startswith("_"))


@pytest.mark.parametrize("module", MODULES)
def test_module_documentation_parses(module):
    """ansible-doc reads each module's DOCUMENTATION, EXAMPLES and RETURN as
    YAML (a ': ' in a plain description line breaks it, silently for a run)."""
    name = f"superkubernetex.platform.{module}"
    proc = run_ansible("ansible-doc", "--json", name, check=False)
    assert proc.returncode == 0 and "ERROR" not in proc.stderr, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)[name]
    assert doc["doc"]["options"] and doc["doc"]["short_description"], doc["doc"]
