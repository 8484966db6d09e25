"""Pod Security of the rendered manifests of inventories/vm (issue 14, least
privilege): every namespace enforces "restricted" but the node agents' one,
which holds node-exporter and the log collector only, and every pod template
outside it passes the restricted profile as the Kubernetes documentation
writes it (https://kubernetes.io/docs/concepts/security/pod-security-standards/).
The API server's own admission check runs on the testbed
(tests/e2e/test_e2e_pod_security.py)."""
import pytest

from test_manifests import documents

NODE_AGENTS = "skx-node-agents"
LEVEL = "pod-security.kubernetes.io/enforce"
# Volume types the restricted profile allows.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def restricted_violations(pod):
    """What keeps a pod spec out of the restricted profile (empty when it passes)."""
    found = []
    pod_sc = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            found.append(key)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: {', '.join(sorted(kinds - RESTRICTED_VOLUMES))}")
    if pod_sc.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    containers = pod["containers"] + pod.get("initContainers", [])
    for c in containers:
        sc = c.get("securityContext") or {}
        where = f"container {c['name']}"
        if sc.get("privileged"):
            found.append(f"{where}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in caps.get("drop", []):
            found.append(f"{where}: capabilities not dropped")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{where}: adds {caps['add']}")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            found.append(f"{where}: runAsNonRoot not true")
        if sc.get("runAsUser") == 0:
            found.append(f"{where}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile {seccomp}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            found.append(f"{where}: hostPort")
    return found


def pod_templates(rendered):
    for path, doc in documents(rendered):
        spec = doc.get("spec") or {}
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if "template" in spec and "containers" in spec["template"].get("spec", {}):
            yield path, doc, spec["template"]["spec"]


def test_the_evaluator_knows_the_restricted_profile():
    ok = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
          "volumes": [{"name": "v", "emptyDir": {}}],
          "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False,
                                                           "capabilities": {"drop": ["ALL"]}}}]}
    assert restricted_violations(ok) == []
    host = dict(ok, volumes=[{"name": "v", "hostPath": {"path": "/"}}])
    assert restricted_violations(host) == ["volume v: hostPath"]
    root = dict(ok, securityContext={"runAsNonRoot": True, "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}})
    assert restricted_violations(root) == ["pod runAsUser 0"]
    no_seccomp = dict(ok, securityContext={"runAsNonRoot": True})
    assert restricted_violations(no_seccomp) == ["container c: seccompProfile None"]
    chown = dict(ok, containers=[{"name": "c", "securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}}])
    assert restricted_violations(chown) == ["container c: adds ['CHOWN']"]


def test_every_namespace_is_restricted_but_the_node_agents_one(rendered):
    levels = {doc["metadata"]["name"]: doc["metadata"]["labels"][LEVEL]
              for _, doc in documents(rendered) if doc["kind"] == "Namespace"}
    assert levels.pop(NODE_AGENTS) == "privileged"
    assert {"skx-app", "skx-data", "skx-monitoring", "skx-logging", "skx-instance1"} <= set(levels)
    assert set(levels.values()) == {"restricted"}, levels


def test_the_node_agents_namespace_says_what_each_reads_on_the_node(rendered):
    namespace = next(doc for _, doc in documents(rendered)
                     if doc["kind"] == "Namespace" and doc["metadata"]["name"] == NODE_AGENTS)
    notes = namespace["metadata"]["annotations"]
    assert "/proc, /sys and / read-only" in notes["superkubernetex.com/host-access-node-exporter"]
    assert "/var/log/pods" in notes["superkubernetex.com/host-access-vlagent"]


def test_only_the_node_agents_run_in_their_namespace_and_every_other_pod_is_restricted(rendered):
    agents, checked = set(), 0
    for path, doc, pod in pod_templates(rendered):
        if doc["metadata"]["namespace"] == NODE_AGENTS:
            agents.add((doc["kind"], doc["metadata"]["name"]))
            continue
        checked += 1
        assert restricted_violations(pod) == [], f"{path}: {doc['kind']} {doc['metadata']['name']}"
    assert agents == {("DaemonSet", "node-exporter"), ("DaemonSet", "vlagent")}
    assert checked >= 20


@pytest.mark.parametrize("agent, needs", [
    ("node-exporter", {"volume proc: hostPath", "volume sys: hostPath", "volume root: hostPath"}),
    # The log and buffer directories, and the init container's root and
    # capabilities; the collector itself runs as nobody.
    ("vlagent", {"volume containers: hostPath", "volume pods: hostPath", "volume data: hostPath",
                 "container buffer-owner: adds ['CHOWN', 'DAC_READ_SEARCH']",
                 "container buffer-owner: runAsNonRoot not true", "container buffer-owner: runAsUser 0"}),
])
def test_each_node_agent_needs_no_more_than_its_host_access(rendered, agent, needs):
    pod = next(p for _, doc, p in pod_templates(rendered)
               if doc["metadata"]["namespace"] == NODE_AGENTS and doc["metadata"]["name"] == agent)
    assert set(restricted_violations(pod)) == needs
    for c in pod["containers"]:
        assert c["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["runAsUser"] == 65534
        assert all(m.get("readOnly") for m in c["volumeMounts"] if m["name"] != "data"), c["name"]
