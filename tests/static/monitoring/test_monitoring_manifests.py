"""Every rendered manifest is valid Kubernetes and follows the platform's
workload policy (docs/development.md)."""
import glob
import os
import subprocess

import pytest

from lib.monitoring_support import ROOT, load_docs

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
# The one container that runs as root: the log collector's init container,
# which hands its buffer directory on the node to the collector's user, with
# these capabilities only (see its manifest).
ROOT_ALLOWED = {("vlagent", "buffer-owner"): ["CHOWN", "DAC_READ_SEARCH"]}


def manifests(outdir):
    return sorted(glob.glob(os.path.join(outdir, "*", "*.yaml")))


def test_manifests_validate_against_the_kubernetes_schema(rendered):
    files = manifests(rendered)
    assert len(files) >= 27
    validate = os.path.join(ROOT, ".venv", "bin", "kubernetes-validate")
    proc = subprocess.run([validate, "--strict", "--quiet", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _objects(outdir):
    return [(os.path.basename(f), d) for f in manifests(outdir) for d in load_docs(f)]


def test_every_object_carries_the_platform_labels(rendered):
    for name, obj in _objects(rendered):
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "superkubernetex", name
        assert labels.get("app.kubernetes.io/managed-by") == "superkubernetex", name
        assert labels.get("app.kubernetes.io/name"), name


@pytest.mark.parametrize("kind", WORKLOADS)
def test_workloads_are_locked_down(rendered, kind):
    found = 0
    for name, obj in _objects(rendered):
        if obj["kind"] != kind:
            continue
        found += 1
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert "automountServiceAccountToken" in pod, name
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
            root = (obj["metadata"]["name"], c["name"])
            if root in ROOT_ALLOWED:
                assert sc["runAsUser"] == 0 and sc["capabilities"]["add"] == ROOT_ALLOWED[root], name
            else:
                assert sc["runAsNonRoot"] is True and sc["runAsUser"] >= 10000, name
                assert "add" not in sc["capabilities"], name
            for key in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][key]), name
            if c in pod["containers"]:
                assert "readinessProbe" in c and "livenessProbe" in c, name
            assert ":" in c["image"] and not c["image"].endswith(":latest"), name
    assert found


def test_grafana_is_served_over_tls_without_anonymous_access(rendered):
    ingress = load_docs(os.path.join(rendered, "monitoring", "grafana-ingress.yaml"))[0]
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert ingress["spec"]["tls"] == [{"hosts": ["monitoring.superkubernetex.com"], "secretName": "skx-tls"}]
    assert ingress["spec"]["rules"][0]["host"] == "monitoring.superkubernetex.com"
    deploy = load_docs(os.path.join(rendered, "monitoring", "grafana-deployment.yaml"))[0]
    env = {e["name"]: e.get("value") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"].endswith("/grafana-admin/password")
    secret = load_docs(os.path.join(rendered, "monitoring", "grafana-admin-secret.yaml"))[0]
    assert secret["metadata"]["name"] == "grafana-admin"
    assert set(secret["stringData"]) == {"username", "password"}
    assert secret["stringData"]["password"] == "CHANGE_ME"


def test_prometheus_keeps_its_data_on_a_volume_with_the_configured_retention(rendered):
    sts = load_docs(os.path.join(rendered, "monitoring", "prometheus-statefulset.yaml"))[0]
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--storage.tsdb.retention.time=15d" in args
    assert "--storage.tsdb.retention.size=8GB" in args
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"


def test_every_pod_has_its_ingress_and_the_egress_it_needs(rendered):
    """The namespaces role denies all traffic by default in these namespaces."""
    objects = [o for _, o in _objects(rendered)]
    pods = {(o["metadata"]["namespace"], o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"])
            for o in objects if o["kind"] in WORKLOADS}
    ingress, egress = {}, {}
    for o in objects:
        if o["kind"] != "NetworkPolicy":
            continue
        key = (o["metadata"]["namespace"], o["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
        ports = {p["port"] for rule in o["spec"].get("ingress", []) + o["spec"].get("egress", [])
                 for p in rule.get("ports", [])}
        for kind, seen in (("Ingress", ingress), ("Egress", egress)):
            if kind in o["spec"]["policyTypes"]:
                seen.setdefault(key, set()).update(ports)
    assert pods - set(ingress) == set(), "pods without an ingress policy"
    assert {6443, 8080, 9187, 9121, 9100} <= egress[("skx-monitoring", "prometheus")]
    assert {443, 587} <= egress[("skx-monitoring", "alertmanager")]
    assert {9090, 9428} <= egress[("skx-monitoring", "grafana")]
    assert {443, 6443} <= egress[("skx-monitoring", "kube-state-metrics")]
    assert {6443, 9428} <= egress[("skx-node-agents", "vlagent")]
