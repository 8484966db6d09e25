"""Pod Security on the testbed, as the API server enforces it (issue 14): the
monitoring and logging namespaces are restricted and every pod running there
passes that level; only the node agents' namespace admits host access, and
the log collector there reads the nodes' log files as an unprivileged user.
The rendered manifests are checked against the profile by
tests/static/test_pod_security.py."""
import json
import os

import pytest

from e2e_support import SETTINGS, kubectl

RESTRICTED = [ns for ns, layer in [("skx-monitoring", "platform_monitoring_enabled"),
                                   ("skx-logging", "platform_logging_enabled")] if SETTINGS.get(layer, True)]
RESTRICTED += ["skx-app", "skx-data", "skx-instance1"]
NODE_AGENTS = "skx-node-agents"
NOBODY = 65534


def host_path_pod(namespace):
    """A pod the restricted level refuses (a hostPath volume), sent as a
    server-side dry run: nothing is created."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pod-security-probe", "namespace": namespace},
        "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": NOBODY,
                                     "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{"name": "c", "image": "probe.invalid/none:1",
                                 "securityContext": {"allowPrivilegeEscalation": False,
                                                     "capabilities": {"drop": ["ALL"]}},
                                 "volumeMounts": [{"name": "logs", "mountPath": "/logs", "readOnly": True}]}],
                 "volumes": [{"name": "logs", "hostPath": {"path": "/var/log/pods"}}]}})


@pytest.mark.parametrize("namespace", RESTRICTED)
def test_the_api_server_refuses_host_access_in_a_restricted_namespace(namespace):
    labels = json.loads(kubectl("get", "namespace", namespace, "-o", "json").stdout)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    proc = kubectl("create", "--dry-run=server", "-f", "-", input=host_path_pod(namespace), check=False)
    assert proc.returncode != 0 and 'violates PodSecurity "restricted' in proc.stderr, proc.stderr
    assert 'restricted volume type "hostPath"' in proc.stderr


def test_the_node_agents_namespace_admits_the_host_access_its_agents_need():
    proc = kubectl("create", "--dry-run=server", "-f", "-", input=host_path_pod(NODE_AGENTS), check=False)
    assert proc.returncode == 0, proc.stderr


def restricted_warnings(namespace):
    """What the API server says about the running pods of `namespace` under
    the restricted level. It checks the running pods when a namespace's
    enforced level or version changes: set, as a server-side dry run, the
    restricted level pinned to the server's own version (the platform sets
    the level only, which means the latest version)."""
    minor = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]["minor"].rstrip("+")
    proc = kubectl("label", "--dry-run=server", "--overwrite", "namespace", namespace,
                   "pod-security.kubernetes.io/enforce=restricted",
                   f"pod-security.kubernetes.io/enforce-version=v1.{minor}")
    return [line for line in proc.stderr.splitlines() if line.startswith("Warning")]


def test_the_check_of_running_pods_names_the_node_agents():
    # The same check on the node agents' namespace: its pods need host
    # access, which the restricted level refuses.
    warnings = "\n".join(restricted_warnings(NODE_AGENTS))
    assert "violate" in warnings and "node-exporter" in warnings and "restricted volume types" in warnings, warnings


@pytest.mark.parametrize("namespace", RESTRICTED)
def test_every_running_pod_passes_the_restricted_level(namespace):
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-o", "json").stdout)["items"]
    assert pods, f"no pods in {namespace}"
    assert restricted_warnings(namespace) == []


def test_only_the_node_agents_run_in_their_namespace():
    pods = json.loads(kubectl("-n", NODE_AGENTS, "get", "pods", "-o", "json").stdout)["items"]
    names = {p["metadata"]["labels"]["app.kubernetes.io/name"] for p in pods}
    expected = ({"node-exporter"} if SETTINGS.get("platform_monitoring_enabled", True) else set()) \
        | ({"vlagent"} if SETTINGS.get("platform_logging_enabled", True) else set())
    assert names == expected


def process_uids(executable):
    """Real and effective UID of every process of this machine running
    `executable` (the testbed's node is this machine)."""
    uids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
            with open(f"/proc/{pid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if os.path.basename(argv0) == executable:
            uids.append(tuple(int(x) for x in status["Uid"].split()[:2]))
    return uids


@pytest.mark.skipif(not SETTINGS.get("platform_logging_enabled", True), reason="the inventory turns logging off")
def test_the_log_collector_runs_as_nobody_with_the_root_group_for_reading():
    pod = json.loads(kubectl("-n", NODE_AGENTS, "get", "pods", "-l", "app.kubernetes.io/name=vlagent",
                             "-o", "json").stdout)["items"][0]
    assert pod["spec"]["securityContext"]["supplementalGroups"] == [0]
    assert all(s["ready"] for s in pod["status"]["containerStatuses"])
    # The testbed's vlagent image starts /vlagent-prod (testbed/images/defs/vlagent.sh).
    uids = process_uids("vlagent-prod")
    assert uids and set(uids) == {(NOBODY, NOBODY)}, uids
