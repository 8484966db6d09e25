"""The lint gates: yamllint, ansible-lint (production profile), syntax checks."""
import glob
import json
import os
import re

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


# The filters with a DOCUMENTATION block (plugins/filter/<file>.py, name: <filter>).
FILTERS = sorted(
    m.group(1) for p in glob.glob(f"{ROOT}/plugins/filter/*.py")
    for m in [re.search(r"^name: (\S+)$", open(p).read(), re.M)] if m)


@pytest.mark.parametrize("name", FILTERS)
def test_filter_documentation_parses(name):
    """ansible-doc reads each documented filter's DOCUMENTATION as YAML (a
    plain line ending in ':' breaks it, reported only as an error line)."""
    fqcn = f"superkubernetex.platform.{name}"
    proc = run_ansible("ansible-doc", "-t", "filter", "--json", fqcn, check=False)
    assert proc.returncode == 0 and "ERROR" not in proc.stderr, proc.stderr[-2000:]
    assert json.loads(proc.stdout)[fqcn]["doc"]["short_description"]
