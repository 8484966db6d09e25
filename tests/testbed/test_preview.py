"""The README's preview, `site.yml --check --diff`, tells the truth on the testbed.

SKX_TESTBED_PREVIEW=empty (.ci/run, before the first deploy): on a cluster
where the platform never ran, and a control node without its CA, the preview
exits 0, reports what it would create, and creates nothing, neither in the
cluster nor on the control node.
SKX_TESTBED_PREVIEW=converged (.ci/run, after the deploy): on the converged
platform it reports changed=0.
"""
import json
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KUBECONFIG = os.environ.get("KUBECONFIG", "/var/lib/skx-testbed/admin.kubeconfig")
KUBECTL = os.environ.get("SKX_KUBECTL", "/var/cache/skx-testbed/bin/kubectl")
MODE = os.environ.get("SKX_TESTBED_PREVIEW", "")


def kubectl_json(*args):
    out = subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, *args, "-o", "json"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return json.loads(out)["items"]


def ours():
    """Every namespace the platform would own, and every object it labels, in kube-system too."""
    names = [n["metadata"]["name"] for n in kubectl_json("get", "namespaces")]
    labelled = []
    for kind in ("secrets", "configmaps", "middlewares.traefik.io", "tlsoptions.traefik.io", "networkpolicies",
                 "deployments"):
        try:
            items = kubectl_json("get", kind, "-A", "-l", "app.kubernetes.io/part-of=superkubernetex")
        except subprocess.CalledProcessError:
            continue  # a kind the cluster does not serve
        labelled += [f"{kind} {i['metadata'].get('namespace')}/{i['metadata']['name']}" for i in items]
    return [n for n in names if n.startswith("skx-")], labelled


def preview(*extra):
    env = {**os.environ, "KUBECONFIG": KUBECONFIG, "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{ROOT}/.venv/bin:{os.environ['PATH']}"}
    return subprocess.run([f"{ROOT}/.venv/bin/ansible-playbook", "site.yml", "-i", "inventories/testbed",
                           "--check", "--diff", *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)


def recap(out):
    m = re.search(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out, re.M)
    assert m, out[-3000:]
    return {k: int(v) for k, v in zip(("ok", "changed", "unreachable", "failed"), m.groups())}


@pytest.mark.skipif(MODE != "empty", reason="set SKX_TESTBED_PREVIEW=empty, on a cluster without the platform")
def test_preview_before_the_first_deploy_creates_nothing(tmp_path):
    assert ours() == ([], []), "the cluster already holds the platform: this test needs a fresh testbed"
    pki = tmp_path / "pki"
    proc = preview("-e", f"ingress_pki_dir={pki}")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    figures = recap(proc.stdout)
    print(f"preview before the first deploy: {figures}")
    assert figures["failed"] == 0 and figures["changed"] > 0
    assert "not sent to the API: namespace skx-app not created yet" in proc.stdout
    assert "Would create the private CA" in proc.stdout
    assert ours() == ([], []), "the preview created objects"
    assert not pki.exists(), "the preview wrote the CA on the control node"


@pytest.mark.skipif(MODE != "converged", reason="set SKX_TESTBED_PREVIEW=converged, on the deployed platform")
def test_preview_of_the_converged_platform_changes_nothing():
    proc = preview()
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    figures = recap(proc.stdout)
    print(f"preview of the converged platform: {figures}")
    changed = re.findall(r"^changed: \[localhost\].*$", proc.stdout, re.M)
    assert figures["changed"] == 0, "\n".join(changed)
    # inventories/testbed keeps its backups on the cluster (no S3): every run
    # ends by saying so, naming the settings (docs/backups.md), as a
    # production inventory without a bucket does.
    output = re.sub(r"\s+", " ", proc.stdout + proc.stderr)
    assert "The backups are kept on a volume of this cluster only (skx-data/backups)" in output
    assert "set backups_s3_enabled: true, backups_s3_endpoint and backups_s3_bucket" in output


@pytest.mark.skipif(MODE != "converged", reason="set SKX_TESTBED_PREVIEW=converged, on the deployed platform")
def test_preview_names_the_one_object_that_drifted_and_shows_the_field():
    """A field we set, changed by hand (a label of the Redis Service: no pod
    moves), is the only change the preview reports, with its diff."""
    def label(value):
        subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, "-n", "skx-data", "label", "service", "redis",
                        f"app.kubernetes.io/part-of={value}", "--overwrite"], check=True, capture_output=True,
                       timeout=60)
    label("drifted")
    try:
        proc = preview()
    finally:
        label("superkubernetex")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    figures = recap(proc.stdout)
    print(f"preview after a drift: {figures}")
    assert figures["changed"] == 1, "\n".join(re.findall(r"^changed: \[localhost\].*$", proc.stdout, re.M))
    assert "--- before: Service/skx-data/redis" in proc.stdout
    assert "-    app.kubernetes.io/part-of: drifted" in proc.stdout
    assert "+    app.kubernetes.io/part-of: superkubernetex" in proc.stdout
