"""The flow matrix of the NetworkPolicies, tried with real connections on the
testbed (issue 14): what tests/lib/netpol.py says of the policies rendered
from inventories/testbed is what the cluster (kube-router) enforces.

The expected flows come from a render of inventories/testbed (the deployed
inventory) evaluated by lib.netpol, as docs/network-flows.md is for
inventories/vm. For every workload of the platform's namespaces a probe pod
is started in its namespace with that workload's pod labels, so that the same
policies select it. A probe stays out of the platform's way: its readiness
probe never succeeds (no Service routes to it), it has no service account
token, runs busybox as nobody under the restricted profile, declares no
container port (no scrape job picks it), and stops by itself after
PROBE_LIFETIME. A probe whose labels a DaemonSet selects (vlagent,
node-exporter) is owned by a ConfigMap of the run, or the DaemonSet would
adopt it and delete it as a surplus pod of its node. While the probes live,
the PodDisruptionBudgets selecting them record an UnmanagedPods warning
event, and the HPAs count them as unready pods (which only ever hold back a
scale-down; every HPA of the testbed is at its minimum).

The destinations are the real pods: one Ready pod per Deployment,
StatefulSet or DaemonSet, its IP, labels and TCP container ports read from
the cluster; the outside peers of the flow table (internet, API server,
kube-dns, ingress controller) are not tried. Every allowed (source,
destination, port) pair is tried, and a deterministic sample of at least
MIN_DENIED denied pairs spread over the namespace pairs, each towards a
(pod, port) that an allowed pair of the run reaches: a refusal there is the
policies' doing, not a port nobody listens on.

One kubectl exec per probe runs a shell script that tries its pairs in
parallel with `nc -w CONNECT_TIMEOUT` (this busybox build has no -z: stdin
is /dev/null, so nc ends once connected). kube-router programs a new pod's
rules a moment after the pod starts (its egress is not filtered before), so
the script first waits until its own egress policy is in force: kube-dns
answers on 53/TCP and refuses a port of it that the policies deny (its
metrics port). It then tries the allowed pairs (up to ALLOWED_ATTEMPTS times
each), then the denied ones (once). kube-router rejects or drops a denied
connection: both count as denied ("refused" or "timed out" in the counts).
A pair that disagrees because its destination pod was replaced meanwhile (a
rollout by someone else on the shared testbed) is tried again on the new
pod. The probes are deleted at the end, also when the test fails.
"""
import calendar
import collections
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import pytest

from e2e_support import ROOT, kubectl, wait
from lib.ansible_env import playbook_env
from lib.netpol import Cluster, Endpoint, container_ports, pod, selector_matches, verdict
from lib.network_flows import KUBE_DNS, WORKLOAD_KINDS, load_objects, pod_template
from lib.testbed import BUSYBOX_IMAGE

PROBE_LABEL = "superkubernetex.com/netprobe"
CONNECT_TIMEOUT = 3      # nc -w: seconds for one connection attempt
ALLOWED_ATTEMPTS = 5     # an allowed pair gets this many attempts, 2 s apart
SETTLE_ATTEMPTS = 15     # rounds (about 1 s each) waiting for a probe's policies
DENIED_SAMPLE = 60       # denied pairs tried (at least MIN_DENIED)
MIN_DENIED = 30
PROBE_LIFETIME = 600     # activeDeadlineSeconds of a probe: one left behind stops
START_TIMEOUT = 120      # every probe Running
SERVING_TIMEOUT = 180    # a destination in the middle of a rollout: its Ready pod
RETARGET_ROUNDS = 2      # pairs towards a pod replaced meanwhile: tried again on its successor
# One probe's script, whatever happens inside (its own bounds add up to at
# most SETTLE_ATTEMPTS * (1 + 2 * (CONNECT_TIMEOUT + 2)) + ALLOWED_ATTEMPTS *
# (CONNECT_TIMEOUT + 4) + CONNECT_TIMEOUT + 2 = 205 s); every probe's runs at
# the same time, so this bounds the connection phase.
EXEC_TIMEOUT = 240
# The kinds whose pods serve (a Job's pod ends: never a destination).
SERVING_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


@dataclass(frozen=True)
class Source:
    workload: str        # namespace/name
    namespace: str
    probe: str           # the probe pod's name
    labels: dict         # the probe's labels: the workload's pod labels and PROBE_LABEL
    endpoint: Endpoint


@dataclass(frozen=True)
class Target:
    workload: str
    pod: str
    ip: str
    endpoint: Endpoint


@dataclass(frozen=True)
class Pair:
    id: str
    source: Source
    target: Target
    port: int
    expected: bool
    egress: tuple        # the policies letting each side through (lib.netpol.verdict)
    ingress: tuple

    def __str__(self):
        why = (f"allowed by {', '.join(self.egress)} / {', '.join(self.ingress)}" if self.expected
               else f"egress: {', '.join(self.egress) or 'none'}; ingress: {', '.join(self.ingress) or 'none'}")
        return (f"{self.source.workload} -> {self.target.workload}:{self.port}/TCP "
                f"({self.target.pod} {self.target.ip}; {why})")


def get(*args):
    return json.loads(kubectl("get", *args, "-o", "json").stdout)["items"]


def is_ready(p):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))


def age_seconds(obj):
    return time.time() - calendar.timegm(time.strptime(obj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"))


# --- what the render says ---------------------------------------------------------

@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The objects of inventories/testbed as playbooks/render.yml writes them
    (no cluster contacted), as an operator runs it."""
    out = tmp_path_factory.mktemp("testbed-manifests")
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    started = time.monotonic()
    run = subprocess.run([playbook, "playbooks/render.yml", "-i", "inventories/testbed",
                          "-e", f"platform_render_dir={out}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=playbook_env())
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    print(f"render of inventories/testbed: {time.monotonic() - started:.0f} s")
    return load_objects(out)


NOT_READY = "no Ready pod on the cluster, not a destination"


def serving_pod(live_pods, workload):
    """(the first Ready pod by name that a rendered Deployment/StatefulSet/
    DaemonSet selects, not a probe, not going away; None and why if none or
    if it is on the host network, where no NetworkPolicy applies)."""
    namespace = workload["metadata"]["namespace"]
    selector = workload["spec"]["selector"]
    for p in sorted(live_pods, key=lambda p: p["metadata"]["name"]):
        labels = p["metadata"].get("labels") or {}
        if (p["metadata"]["namespace"] == namespace and PROBE_LABEL not in labels
                and selector_matches(selector, labels) and is_ready(p)
                and not p["metadata"].get("deletionTimestamp") and p["status"].get("podIP")):
            if p["spec"].get("hostNetwork"):
                return None, "on the host network, not a pod-IP destination"
            return p, None
    return None, NOT_READY


def spread(items, count):
    """count items evenly spaced along items (all of them when it is shorter)."""
    if count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def denied_sample(candidates, total):
    """total denied pairs, deterministic: the candidates grouped by (source
    namespace, destination namespace), each group given its share in turn
    (round-robin over the sorted groups), each share evenly spaced along the
    sorted group."""
    groups = collections.defaultdict(list)
    for pair in sorted(candidates, key=lambda p: (p.source.workload, p.target.workload, p.port)):
        groups[pair.source.namespace, pair.target.endpoint.namespace].append(pair)
    share = dict.fromkeys(sorted(groups), 0)
    left = total
    while left:
        grown = [g for g in sorted(groups) if share[g] < len(groups[g])][:left]
        if not grown:
            break
        for g in grown:
            share[g] += 1
        left -= len(grown)
    return [p for g in sorted(groups) for p in spread(groups[g], share[g])]


@dataclass
class Plan:
    cluster: Cluster
    serving: dict        # namespace/name: the rendered Deployment, StatefulSet or DaemonSet
    sources: list
    allowed: list
    denied: list
    dns: Target | None
    notes: list


def target(workload, live):
    """The live pod live of workload as a destination: its labels, ports, IP."""
    meta, ip = live["metadata"], live["status"]["podIP"]
    return Target(workload, meta["name"], ip,
                  pod(meta["namespace"], meta.get("labels") or {}, container_ports(live["spec"]), name=workload, ip=ip))


def pair(cluster, pair_id, source, destination, number):
    v = verdict(cluster, source.endpoint, destination.endpoint, number, "TCP")
    return Pair(pair_id, source, destination, number, v.allowed, tuple(v.egress), tuple(v.ingress))


def tcp_ports(destination):
    return sorted({p.number for p in destination.endpoint.ports if p.protocol == "TCP"})


def live_targets(serving, notes=None):
    """{workload: Target} of the serving workloads that have a Ready pod now."""
    live_pods, found = get("pods", "--all-namespaces"), {}
    for name, w in serving.items():
        live, why = serving_pod(live_pods, w)
        if live is None:
            if notes is not None:
                notes.append(f"{name}: {why}")
            continue
        found[name] = target(name, live)
        other = sorted({f"{p.number}/{p.protocol}" for p in container_ports(live["spec"]) if p.protocol != "TCP"})
        if other and notes is not None:
            notes.append(f"{name}: {', '.join(other)} not tried (TCP only)")
    return found


@pytest.fixture(scope="module")
def plan(rendered):
    cluster = Cluster(rendered)
    policies_json = json.dumps([p["spec"] for p in cluster.policies])
    assert PROBE_LABEL not in policies_json, f"a policy selects on {PROBE_LABEL}: the probes' own label would count"
    run_id = uuid.uuid4().hex[:6]
    namespaces = {n["metadata"]["name"] for n in get("namespaces")}
    notes = []
    workloads = sorted((o for o in rendered if o["kind"] in WORKLOAD_KINDS),
                       key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
    sources = []
    for w in workloads:
        namespace, name = w["metadata"]["namespace"], w["metadata"]["name"]
        if namespace not in namespaces:
            notes.append(f"{namespace}/{name}: its namespace does not exist on the cluster, no probe")
            continue
        labels = {**(pod_template(w)["metadata"].get("labels") or {}), PROBE_LABEL: run_id}
        # Patroni's scope label: no NetworkPolicy selects it, and the
        # PostgreSQL members' required anti-affinity does, which would keep
        # a probe carrying it off their node.
        labels.pop("cluster-name", None)
        sources.append(Source(f"{namespace}/{name}", namespace, f"netprobe-{name}-{run_id}"[:63], labels,
                              pod(namespace, labels, name=f"{namespace}/{name}")))
    assert sources, "no workload rendered in a namespace of the cluster"

    serving = {f"{w['metadata']['namespace']}/{w['metadata']['name']}": w for w in workloads
               if w["kind"] in SERVING_KINDS and container_ports(pod_template(w)["spec"])
               and w["metadata"]["namespace"] in namespaces}
    # A destination being rolled out (by another deploy) has a Ready pod again shortly.
    deadline = time.monotonic() + SERVING_TIMEOUT
    while len(live_targets(serving)) < len(serving) and time.monotonic() < deadline:
        time.sleep(5)
    targets = live_targets(serving, notes)

    pairs = [pair(cluster, f"p{i}", s, t, number)
             for i, (s, t, number) in enumerate((s, t, n) for s in sources for t in targets.values()
                                                for n in tcp_ports(t))]
    allowed = [p for p in pairs if p.expected]
    # Denied pairs towards a (pod, port) an allowed pair reaches only: there
    # a refusal is the policies' doing, not a closed port.
    reached = {(p.target.workload, p.port) for p in allowed}
    candidates = [p for p in pairs if not p.expected and (p.target.workload, p.port) in reached]
    denied = denied_sample(candidates, DENIED_SAMPLE)
    unreached = sorted({f"{p.target.workload}:{p.port}" for p in pairs if (p.target.workload, p.port) not in reached})
    if unreached:
        notes.append(f"no allowed pod-to-pod pair reaches {', '.join(unreached)}: not taken as denied destinations")

    dns_pod = next((p for p in sorted(get("pods", "-n", KUBE_DNS.namespace), key=lambda p: p["metadata"]["name"])
                    if is_ready(p) and selector_matches({"matchLabels": KUBE_DNS.labels},
                                                        p["metadata"].get("labels") or {})), None)
    dns = dns_pod and target("kube-dns", dns_pod)
    drift = policy_drift(cluster)
    if drift:
        notes.append("the cluster's NetworkPolicies differ from the render: " + "; ".join(drift))
    return Plan(cluster, serving, sources, allowed, denied, dns, notes)


def policy_drift(cluster):
    """The policies the cluster holds that the render does not, or holds
    otherwise: extra rules only add flows, which the denied pairs would show."""
    rendered = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"] for p in cluster.policies}
    platform = {ns for ns, _ in rendered}
    live = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"]
            for p in get("networkpolicies", "--all-namespaces") if p["metadata"]["namespace"] in platform}
    normal = lambda spec: json.dumps(spec, sort_keys=True)  # noqa: E731
    return ([f"only on the cluster: {ns}/{n}" for ns, n in sorted(set(live) - set(rendered))]
            + [f"not on the cluster: {ns}/{n}" for ns, n in sorted(set(rendered) - set(live))]
            + [f"different: {ns}/{n}" for ns, n in sorted(set(live) & set(rendered))
               if normal(live[ns, n]) != normal(rendered[ns, n])])


# --- the probes -------------------------------------------------------------------

def probe_manifest(source, owner=None):
    """A pod that only opens connections: never Ready, no token, restricted."""
    metadata = {"name": source.probe, "namespace": source.namespace, "labels": source.labels}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": PROBE_LIFETIME,
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", str(PROBE_LIFETIME)],
                "readinessProbe": {"exec": {"command": ["sh", "-c", "exit 1"]}, "periodSeconds": 60},
                "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                                    "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "5m", "memory": "8Mi", "ephemeral-storage": "1Mi"},
                              "limits": {"cpu": "100m", "memory": "32Mi", "ephemeral-storage": "8Mi"}},
            }],
        },
    }


def adopters(namespace, labels, controllers):
    """The controllers that would adopt an orphan pod with these labels (a
    DaemonSet would, then delete it as a surplus pod of its node)."""
    return [c["metadata"]["name"] for c in controllers
            if c["metadata"]["namespace"] == namespace and selector_matches(c["spec"].get("selector"), labels)]


def delete_probes(selector):
    kubectl("delete", "pods,configmaps", "--all-namespaces", "-l", selector, "--ignore-not-found",
            "--wait=true", "--timeout=90s", timeout=120)


@pytest.fixture(scope="module")
def probes(plan):
    """The probe pods, Running (never Ready); deleted afterwards whatever happens."""
    run_id = plan.sources[0].labels[PROBE_LABEL]
    # Probes of an interrupted earlier run (older than their lifetime): gone.
    for kind in ("pods", "configmaps"):
        for old in get(kind, "--all-namespaces", "-l", PROBE_LABEL):
            if age_seconds(old) > PROBE_LIFETIME:
                kubectl("-n", old["metadata"]["namespace"], "delete", kind[:-1], old["metadata"]["name"],
                        "--ignore-not-found", "--wait=false")
    controllers = [c for kind in ("daemonsets", "replicasets", "jobs") for c in get(kind, "--all-namespaces")]
    selector = f"{PROBE_LABEL}={run_id}"
    started = time.monotonic()
    try:
        owners = {}
        manifests = []
        for s in plan.sources:
            owner = None
            if adopters(s.namespace, s.labels, controllers):
                # A controller owner (a ConfigMap of this run) keeps the
                # DaemonSet from adopting the probe.
                if s.namespace not in owners:
                    cm = {"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": f"netprobe-owner-{run_id}", "namespace": s.namespace,
                                       "labels": {PROBE_LABEL: run_id}}}
                    created = json.loads(kubectl("create", "-f", "-", "-o", "json", input=json.dumps(cm)).stdout)
                    owners[s.namespace] = {"apiVersion": "v1", "kind": "ConfigMap", "name": cm["metadata"]["name"],
                                           "uid": created["metadata"]["uid"], "controller": True}
                owner = owners[s.namespace]
            manifests.append(probe_manifest(s, owner))
        kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}))

        def running():
            items = get("pods", "--all-namespaces", "-l", selector)
            bad = [(p["metadata"]["name"], p["status"].get("phase"), p["status"].get("reason")) for p in items
                   if p["status"].get("phase") in ("Failed", "Succeeded")]
            assert not bad, f"probes ended: {bad}"
            up = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in items
                  if p["status"].get("phase") == "Running" and p["status"].get("podIP")}
            return up if len(up) == len(plan.sources) else None
        try:
            pods = wait(running, START_TIMEOUT, interval=2, what="every probe pod Running")
        except AssertionError as e:
            states = [f"{p['metadata']['namespace']}/{p['metadata']['name']}: {p['status'].get('phase')} "
                      f"{[c.get('state') for c in p['status'].get('containerStatuses', [])]}"
                      for p in get("pods", "--all-namespaces", "-l", selector)]
            raise AssertionError(f"{e}\n  " + "\n  ".join(states)) from None
        print(f"{len(pods)} probe pods Running in {time.monotonic() - started:.0f} s")
        yield pods
    finally:
        delete_probes(selector)
        left = get("pods,configmaps", "--all-namespaces", "-l", selector)
        assert not left, f"probe objects left behind: {[o['metadata']['name'] for o in left]}"


SCRIPT = r"""
T=__T__; A=__A__; S=__S__; DNS=__DNS__; OPEN=__OPEN__; SHUT=__SHUT__
# Connected: nc ends at once (stdin is empty) or, if the server keeps the
# connection open after our end closed, is stopped by timeout without a message.
conn() {
  MSG=$(timeout $((T + 2)) nc -w "$T" "$1" "$2" </dev/null 2>&1)
  RC=$?
  [ "$RC" -eq 0 ] || { [ "$RC" -ge 128 ] && [ -z "$MSG" ]; }
}
allowed() {
  n=1
  until conn "$2" "$3"; do
    if [ "$n" -ge "$A" ]; then echo "R $1 closed $n $(echo $MSG)"; return; fi
    n=$((n + 1)); sleep 2
  done
  echo "R $1 open $n"
}
denied() {
  if conn "$2" "$3"; then echo "R $1 open 1"; else echo "R $1 closed 1 $(echo $MSG)"; fi
}
# This pod's egress policy is in force: kube-dns answers on $OPEN, refuses $SHUT.
settle() {
  [ -n "$DNS" ] || { sleep 10; echo "S settled 0"; return; }
  n=1
  while [ "$n" -le "$S" ]; do
    if conn "$DNS" "$OPEN" && ! conn "$DNS" "$SHUT"; then echo "S settled $n"; return; fi
    n=$((n + 1)); sleep 1
  done
  echo "S unsettled $n $(echo $MSG)"
}
settle
__ALLOWED__
wait
__DENIED__
wait
echo "E done"
"""


def dns_marker(plan, source):
    """(ip, a port the source may open, a port it may not) of kube-dns, or Nones."""
    if plan.dns is None:
        return None, None, None
    ports = [(n, verdict(plan.cluster, source.endpoint, plan.dns.endpoint, n, "TCP").allowed)
             for n in tcp_ports(plan.dns)]
    opened, shut = [n for n, ok in ports if ok], [n for n, ok in ports if not ok]
    if not opened or not shut:
        return None, None, None
    return plan.dns.ip, opened[0], shut[0]


def script(plan, source, pairs):
    ip, opened, shut = dns_marker(plan, source)

    def lines(kind, expected):
        return "\n".join(f"{kind} {p.id} {p.target.ip} {p.port} &" for p in pairs if p.expected is expected)
    values = {"__T__": CONNECT_TIMEOUT, "__A__": ALLOWED_ATTEMPTS, "__S__": SETTLE_ATTEMPTS,
              "__DNS__": ip or "", "__OPEN__": opened or "", "__SHUT__": shut or "",
              "__ALLOWED__": lines("allowed", True), "__DENIED__": lines("denied", False)}
    return re.sub("|".join(values), lambda m: str(values[m.group(0)]), SCRIPT)


def run_probe(plan, source, pairs):
    """(the round its egress policy was seen in force, None if never;
    {pair id: (connected, attempts, message)}; an error or None) of one probe."""
    proc = kubectl("-n", source.namespace, "exec", source.probe, "-c", "probe", "--", "sh", "-c",
                   script(plan, source, pairs), check=False, timeout=EXEC_TIMEOUT)
    results, settled = {}, None
    for line in proc.stdout.splitlines():
        fields = line.split(" ", 4)
        if fields[0] == "S" and len(fields) >= 3:
            settled = int(fields[2]) if fields[1] == "settled" else None
        elif fields[0] == "R" and len(fields) >= 4:
            results[fields[1]] = (fields[2] == "open", int(fields[3]), fields[4] if len(fields) > 4 else "")
    error = None if proc.returncode == 0 and "E done" in proc.stdout else f"rc {proc.returncode}: {proc.stderr[-500:]}"
    return settled, results, error


@dataclass
class Tries:
    """What the probes saw: {pair id: (connected, attempts, message)}, and per probe."""
    outcomes: dict
    rounds: list         # the settle round of each probe run
    unsettled: list
    errors: list


def try_pairs(plan, pairs, tries):
    """Every probe with pairs to try runs its script, all at the same time."""
    mine = collections.defaultdict(list)
    for p in pairs:
        mine[p.source.probe, p.source.namespace].append(p)
    sources = [s for s in plan.sources if (s.probe, s.namespace) in mine]
    if not sources:
        return
    with concurrent.futures.ThreadPoolExecutor(len(sources)) as pool:
        futures = {pool.submit(run_probe, plan, s, mine[s.probe, s.namespace]): s for s in sources}
        for future in concurrent.futures.as_completed(futures):
            source = futures[future]
            settled, results, error = future.result()
            tries.outcomes.update(results)
            if settled is None:
                tries.unsettled.append(source.workload)
            else:
                tries.rounds.append(settled)
            if error:
                tries.errors.append(f"{source.probe}: {error}")


def kind_of(message):
    return "refused" if "refused" in message else "timed out" if "timed out" in message else message or "?"


# --- the test ---------------------------------------------------------------------

def test_real_connections_follow_the_rendered_network_policies(plan, probes):
    started = time.monotonic()
    for note in plan.notes:
        print(f"note: {note}")
    assert len(plan.denied) >= MIN_DENIED, f"only {len(plan.denied)} denied pairs to try"
    tries = Tries({}, [], [], [])
    try_pairs(plan, plan.allowed + plan.denied, tries)
    # The pair each sampled pair was last tried as (on another pod of its
    # destination when the first one was replaced meanwhile).
    final = {p.id: p for p in plan.allowed + plan.denied}

    def agrees(p):
        return tries.outcomes.get(p.id, (None,))[0] is p.expected

    def moved():
        """The sampled pairs (by id) last tried towards a pod now gone or not
        Ready, and that say nothing of the policies: an allowed pair that did
        not connect, any denied pair (a pod going away refuses everyone)."""
        still = {(p["metadata"]["namespace"], p["metadata"]["name"], p["status"].get("podIP"))
                 for p in get("pods", "--all-namespaces") if is_ready(p) and not p["metadata"].get("deletionTimestamp")}
        return [i for i, p in final.items() if (not agrees(p) or not p.expected)
                and (p.target.endpoint.namespace, p.target.pod, p.target.ip) not in still]

    for attempt in range(1, RETARGET_ROUNDS + 1):
        gone = moved()
        if not gone:
            break
        now = live_targets({final[i].target.workload: plan.serving[final[i].target.workload] for i in gone})
        again = {i: pair(plan.cluster, f"{i}-{attempt}", final[i].source, now[final[i].target.workload], final[i].port)
                 for i in gone if final[i].target.workload in now}
        print(f"{len(gone)} pairs towards replaced pods, tried again on their successors: {len(again)}")
        if again:
            try_pairs(plan, list(again.values()), tries)
        final.update(again)
    unjudged = set(moved())
    elapsed = time.monotonic() - started

    allowed = [p for p in final.values() if p.expected]
    denied = [p for p in final.values() if not p.expected]
    outcome = {i: tries.outcomes.get(p.id, (None, 0, "no result")) for i, p in final.items()}
    judged = [i for i in final if i not in unjudged]
    wrong_allowed = [f"{final[i]}: {kind_of(outcome[i][2])} after {outcome[i][1]} attempts ({outcome[i][2]})"
                     for i in judged if final[i].expected and outcome[i][0] is not True]
    wrong_denied = [f"{final[i]}: connected" if outcome[i][0] else f"{final[i]}: {outcome[i][2]}"
                    for i in judged if not final[i].expected and outcome[i][0] is not False]
    connected = [i for i, p in final.items() if p.expected and outcome[i][0] is True]
    retried = [i for i in connected if outcome[i][1] > 1]
    refusals = collections.Counter(kind_of(outcome[i][2]) for i, p in final.items()
                                   if not p.expected and outcome[i][0] is False)
    namespace_pairs = {(p.source.namespace, p.target.endpoint.namespace) for p in denied}
    print(f"network matrix: {len(plan.sources)} probe pods in {len({s.namespace for s in plan.sources})} namespaces, "
          f"{len({p.target.pod for p in final.values()})} destination pods (outside peers not tried), "
          f"{elapsed:.0f} s of connections; each probe's own egress policy in force after "
          f"{min(tries.rounds, default=0)} to {max(tries.rounds, default=0)} rounds")
    print(f"allowed pairs: {len(allowed)} tried, {len(connected)} connected ({len(retried)} after a retry)")
    print(f"denied pairs: {len(denied)} tried over {len(namespace_pairs)} namespace pairs, "
          f"{sum(refusals.values())} refused ({', '.join(f'{n} {k}' for k, n in sorted(refusals.items()))})")
    if unjudged:
        print("not judged, the destination pod was replaced again:\n  "
              + "\n  ".join(str(final[i]) for i in sorted(unjudged)))
    problems = []
    if len(unjudged) * 4 > len(allowed):
        problems.append(f"{len(unjudged)} pairs not judged (destination pods replaced during the test): "
                        "the platform changed too much to judge it")
    if tries.errors:
        problems.append("probe scripts that did not finish:\n  " + "\n  ".join(tries.errors))
    if tries.unsettled:
        problems.append("probes whose own egress policy was not in force after "
                        f"{SETTLE_ATTEMPTS} rounds: {', '.join(sorted(set(tries.unsettled)))}")
    if wrong_allowed:
        problems.append("allowed by the policies, no connection:\n  " + "\n  ".join(wrong_allowed))
    if wrong_denied:
        problems.append("denied by the policies, connected:\n  " + "\n  ".join(wrong_denied))
    assert not problems, ("\n".join(problems) + "\n(expected flows: lib.netpol on the render of inventories/testbed "
                          "of this checkout; a cluster deployed from another version disagrees with it)")
