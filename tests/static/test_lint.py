"""The lint gates: yamllint, ansible-lint (production profile), syntax checks."""
import glob
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
