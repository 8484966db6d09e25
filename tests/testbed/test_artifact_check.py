"""The installed collection previews the deployed platform as the checkout
does (issue 19): the artifact built from this checkout, installed into an
empty collections path, runs `superkubernetex.platform.site --check --diff`
from a directory outside the checkout with a copy of inventories/testbed,
and reports changed=0 on the converged platform.

SKX_TESTBED_ARTIFACT=1 (.ci/run, after the deploy) runs it."""
import os
import re

import pytest

from lib.artifact import VENV_BIN, copy_inventory, install, run

KUBECONFIG = os.environ.get("KUBECONFIG", "/var/lib/skx-testbed/admin.kubeconfig")


@pytest.mark.skipif(os.environ.get("SKX_TESTBED_ARTIFACT") != "1",
                    reason="set SKX_TESTBED_ARTIFACT=1, on the deployed platform")
def test_the_installed_collection_previews_the_converged_platform_without_a_change(tmp_path):
    env = install(str(tmp_path))
    project = tmp_path / "project"
    project.mkdir()
    inventory = copy_inventory("testbed", str(project))
    env.update(KUBECONFIG=KUBECONFIG, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    proc = run(["ansible-playbook", "superkubernetex.platform.site", "-i", inventory, "--check", "--diff"],
               cwd=str(project), env=env, check=False)
    recap = [line for line in proc.stdout.splitlines() if re.match(r"^localhost +:", line)]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert recap and all(" changed=0 " in line for line in recap), "\n".join(
        recap + [line for line in proc.stdout.splitlines() if line.startswith("changed:")][:20])
    print("\n".join(recap))
