"""Every ResourceQuota fits what its namespace's workloads may reach.

The VM inventory is rendered (playbooks/render.yml, no cluster) with 3 and
with 5 instances. From the rendered objects alone, the worst case of each
namespace is added up and compared with the rendered ResourceQuota:

- a Deployment at its HPA's maxReplicas (else spec.replicas), plus the pods
  its rolling update may add on top (maxSurge, 25% by default, rounded up);
- a StatefulSet at spec.replicas (its rolling update replaces pods one by
  one, it adds none), and its volumeClaimTemplates once per replica;
- a DaemonSet once per node of the inventory;
- every CronJob running at the same time as every other (the nightly backups
  share one schedule), each with one Job at a time (concurrencyPolicy Forbid
  or Replace) of spec.parallelism pods; Allow has no bound and fails;
- one-off Jobs at spec.parallelism, and the restore Job of
  playbooks/restore.yml (not rendered: it is created on demand, one at a
  time, from the same pod template as the backup CronJobs);
- each pod counted with its effective requests and limits: containers
  without resources get the namespace's LimitRange defaults, and per
  resource the pod takes the larger of its containers' sum and its largest
  init container (init containers run one after the other, before the
  containers).

A quota below that sum refuses the last pods exactly when they are needed
(an HPA at its maximum, the nightly backups).
"""
import json
import math
import os
import subprocess
import sys
from collections import defaultdict

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
INVENTORY = "inventories/vm"
RESOURCES = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory")

# 3 instances: the VM inventory as it is. 5 instances: two more, with other
# HPA bounds, plus the workloads that only exist with some settings (the
# Stripe test double, the snapshot CronJob once a snapshot class is known).
SCENARIOS = {
    "3 instances": {},
    "5 instances": {
        "platform_instances": [
            {"name": "instance1"},
            {"name": "instance2"},
            {"name": "instance3"},
            {"name": "instance4", "replicas_max": 8},
            {"name": "instance5", "replicas_min": 1, "replicas_max": 3},
        ],
        "services_stripe_mock": True,
        "backups_snapshot_class": "csi-snapshots",
    },
}

# playbooks/restore.yml: the check Job, then the restore Job, never together.
RESTORE_JOBS_AT_ONCE = 1

SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def cpu(value):
    """A CPU quantity in millicores."""
    value = str(value)
    if value.endswith("m"):
        return int(value[:-1])
    return math.ceil(float(value) * 1000)


def memory(value):
    """A memory quantity in bytes."""
    value = str(value)
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if value.endswith(suffix):
            return int(float(value[:-len(suffix)]) * SUFFIXES[suffix])
    return int(float(value))


PARSE = {"requests.cpu": cpu, "limits.cpu": cpu, "requests.memory": memory, "limits.memory": memory}


def show(resource, amount):
    if resource.endswith("cpu"):
        return f"{amount}m"
    if resource.endswith("memory"):
        return f"{amount / 2**20:g}Mi"
    return str(amount)


def render(tmp_path_factory, extra_vars):
    out = tmp_path_factory.mktemp("manifests")
    bindir = os.path.dirname(sys.executable)
    cmd = [os.path.join(bindir, "ansible-playbook"), "playbooks/render.yml", "-i", INVENTORY,
           "-e", f"platform_render_dir={out}"]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                               "PATH": f"{bindir}:{os.environ.get('PATH', '')}"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    docs = []
    for dirpath, _, files in os.walk(out):
        for name in sorted(files):
            if name.endswith(".yaml"):
                with open(os.path.join(dirpath, name)) as handle:
                    docs += [doc for doc in yaml.safe_load_all(handle) if doc]
    return docs


def node_count():
    with open(os.path.join(ROOT, INVENTORY, "hosts.yml")) as handle:
        hosts = yaml.safe_load(handle)
    cluster = hosts["all"]["children"]["k3s_cluster"]["children"]
    return sum(len(group.get("hosts") or {}) for group in cluster.values())


def container_resources(container, defaults):
    """Requests and limits of one container after API defaulting (requests
    default to the limits set) and the LimitRange defaults."""
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    out = {}
    for kind in ("cpu", "memory"):
        parse = cpu if kind == "cpu" else memory
        limit = limits.get(kind, defaults["default"].get(kind))
        request = requests.get(kind, limits.get(kind, defaults["defaultRequest"].get(kind)))
        out[f"limits.{kind}"] = parse(limit) if limit is not None else 0
        out[f"requests.{kind}"] = parse(request) if request is not None else 0
    return out


def pod_resources(spec, defaults):
    """Effective requests and limits of a pod: per resource, the larger of the
    sum of its containers (with sidecar init containers, restartPolicy
    Always, that keep running) and of each init container while it runs (with
    the sidecars started before it)."""
    containers = [container_resources(c, defaults) for c in spec.get("containers", [])]
    effective = {}
    for resource in RESOURCES:
        running = sum(c[resource] for c in containers)
        sidecars, init_peak = 0, 0
        for init in spec.get("initContainers") or []:
            amount = container_resources(init, defaults)[resource]
            if init.get("restartPolicy") == "Always":
                sidecars += amount
                init_peak = max(init_peak, sidecars)
            else:
                init_peak = max(init_peak, sidecars + amount)
        effective[resource] = max(running + sidecars, init_peak)
    return effective


def surge(deployment, replicas):
    strategy = deployment["spec"].get("strategy") or {}
    if strategy.get("type", "RollingUpdate") == "Recreate":
        return 0
    value = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(replicas * int(value[:-1]) / 100)
    return int(value)


def worst_case(docs):
    """Per namespace: (what its workloads may reach at once, how each part adds up)."""
    by_kind = defaultdict(list)
    for doc in docs:
        by_kind[doc["kind"]].append(doc)
    limit_ranges = {}
    for doc in by_kind["LimitRange"]:
        for item in doc["spec"]["limits"]:
            if item["type"] == "Container":
                limit_ranges[doc["metadata"]["namespace"]] = {"default": item.get("default", {}),
                                                              "defaultRequest": item.get("defaultRequest", {})}
    no_defaults = {"default": {}, "defaultRequest": {}}
    hpa_max = {(h["metadata"]["namespace"], h["spec"]["scaleTargetRef"]["name"]): h["spec"]["maxReplicas"]
               for h in by_kind["HorizontalPodAutoscaler"] if h["spec"]["scaleTargetRef"]["kind"] == "Deployment"}
    totals = defaultdict(lambda: dict.fromkeys((*RESOURCES, "persistentvolumeclaims"), 0))
    parts = defaultdict(list)

    def add(namespace, what, pods, pod_spec, pvcs=0):
        res = pod_resources(pod_spec, limit_ranges.get(namespace, no_defaults)) if pods else dict.fromkeys(RESOURCES, 0)
        for resource in RESOURCES:
            totals[namespace][resource] += pods * res[resource]
        totals[namespace]["persistentvolumeclaims"] += pvcs
        parts[namespace].append(f"{what}: {pods} pod(s) x "
                                + ", ".join(f"{r} {show(r, res[r])}" for r in RESOURCES)
                                + (f", {pvcs} PVC(s)" if pvcs else ""))

    nodes = node_count()
    for dep in by_kind["Deployment"]:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        replicas = hpa_max.get((ns, name), dep["spec"].get("replicas", 1))
        extra = surge(dep, replicas)
        add(ns, f"Deployment {name} ({replicas} + {extra} surge)", replicas + extra, dep["spec"]["template"]["spec"])
    for sts in by_kind["StatefulSet"]:
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        replicas = sts["spec"].get("replicas", 1)
        add(ns, f"StatefulSet {name}", replicas, sts["spec"]["template"]["spec"],
            pvcs=replicas * len(sts["spec"].get("volumeClaimTemplates") or []))
    for ds in by_kind["DaemonSet"]:
        ns, name = ds["metadata"]["namespace"], ds["metadata"]["name"]
        strategy = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        extra = 1 if str(strategy.get("maxSurge", 0)) not in ("0", "0%") else 0
        add(ns, f"DaemonSet {name} ({nodes} nodes)", nodes * (1 + extra), ds["spec"]["template"]["spec"])
    for cron in by_kind["CronJob"]:
        ns, name = cron["metadata"]["namespace"], cron["metadata"]["name"]
        policy = cron["spec"].get("concurrencyPolicy", "Allow")
        assert policy in ("Forbid", "Replace"), f"CronJob {ns}/{name}: concurrencyPolicy {policy} puts no bound on its Jobs"
        job = cron["spec"]["jobTemplate"]["spec"]
        add(ns, f"CronJob {name}", job.get("parallelism", 1), job["template"]["spec"])
    for job in by_kind["Job"]:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        add(ns, f"Job {name}", job["spec"].get("parallelism", 1), job["spec"]["template"]["spec"])
    # The restore Job: the pod template of the backup CronJobs (_pod.j2, same
    # container and resources), in their namespace.
    backup = next(c for c in by_kind["CronJob"] if c["metadata"]["labels"].get("app.kubernetes.io/name") == "backup")
    add(backup["metadata"]["namespace"], "restore Job (playbooks/restore.yml)", RESTORE_JOBS_AT_ONCE,
        backup["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    for pvc in by_kind["PersistentVolumeClaim"]:
        add(pvc["metadata"]["namespace"], f"PVC {pvc['metadata']['name']}", 0, {}, pvcs=1)
    return totals, parts


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request, tmp_path_factory):
    docs = render(tmp_path_factory, SCENARIOS[request.param])
    return request.param, docs


def test_every_quota_fits_the_worst_case_of_its_workloads(scenario):
    name, docs = scenario
    totals, parts = worst_case(docs)
    quotas = {q["metadata"]["namespace"]: q["spec"]["hard"] for q in docs if q["kind"] == "ResourceQuota"}
    namespaces = {d["metadata"]["name"]: d["metadata"]["labels"]["superkubernetex.com/concern"]
                  for d in docs if d["kind"] == "Namespace"}
    expected_instances = len(SCENARIOS[name].get("platform_instances") or [1, 2, 3])
    assert sum(1 for c in namespaces.values() if c == "instance") == expected_instances
    # The namespaces that must carry a quota: the shared app and data ones and
    # every tenant's (so that one tenant cannot starve the others).
    for namespace, concern in namespaces.items():
        if concern in ("app", "data", "instance"):
            assert namespace in quotas, f"{namespace} has no ResourceQuota"
    problems = []
    print(f"\n{name}:")
    for namespace in sorted(quotas):
        hard = quotas[namespace]
        print(f"  {namespace}:")
        for part in parts[namespace]:
            print(f"    {part}")
        for resource in (*RESOURCES, "persistentvolumeclaims"):
            need = totals[namespace][resource]
            if resource not in hard:
                continue
            have = PARSE.get(resource, int)(hard[resource])
            verdict = "ok" if need <= have else "REFUSED"
            print(f"    {resource}: needs {show(resource, need)}, quota {hard[resource]} -> {verdict}")
            if need > have:
                problems.append(f"{namespace} {resource}: the workloads may reach {show(resource, need)}, "
                                f"the quota allows {hard[resource]}")
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_every_pod_counted_by_a_quota_has_requests_and_limits(scenario):
    """A quota on requests/limits refuses pods that set neither: every
    namespace with a quota needs LimitRange defaults for both."""
    _, docs = scenario
    quotas = {q["metadata"]["namespace"] for q in docs if q["kind"] == "ResourceQuota"}
    ranges = {}
    for doc in docs:
        if doc["kind"] == "LimitRange":
            for item in doc["spec"]["limits"]:
                if item["type"] == "Container":
                    ranges[doc["metadata"]["namespace"]] = item
    for namespace in quotas:
        assert {"cpu", "memory"} <= set(ranges[namespace].get("default", {})), namespace
        assert {"cpu", "memory"} <= set(ranges[namespace].get("defaultRequest", {})), namespace


def test_the_effective_pod_resources_follow_the_init_container_rule():
    defaults = {"default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "50m", "memory": "64Mi"}}
    spec = {
        "initContainers": [{"name": "big", "resources": {"requests": {"cpu": "2", "memory": "64Mi"},
                                                         "limits": {"cpu": "2", "memory": "64Mi"}}}],
        "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                                    "limits": {"cpu": "500m", "memory": "256Mi"}}},
                       {"name": "b"}],
    }
    assert pod_resources(spec, defaults) == {"requests.cpu": 2000, "requests.memory": 192 * 2**20,
                                             "limits.cpu": 2000, "limits.memory": 512 * 2**20}
    sidecar = {"initContainers": [{"name": "s", "restartPolicy": "Always",
                                   "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}}}],
               "containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}
    assert pod_resources(sidecar, defaults) == {"requests.cpu": 1100, "requests.memory": 1056 * 2**20,
                                                "limits.cpu": 1100, "limits.memory": 1056 * 2**20}
