"""PostgreSQL under Patroni with three members, on the testbed (issue 16).

SKX_TESTBED_POSTGRES_HA=1 runs it, on the deployed platform: site.yml
brings PostgreSQL to postgres_replicas=3 (the shared settings follow:
synchronous mode on), then, under a sign-up load through auth and a read
load of instance1's pages (each a query on its database) through the
ingress, counting failed reads and checking that no service or tenant
container restarted:
  - the primary pod is deleted: a replica is promoted, and every sign-up
    that was acknowledged is in the database afterwards (synchronous
    replication); the figures are printed (refused sign-ups, seconds
    without a primary);
  - a switchover (Patroni's, as a rolling change does);
  - a change of the members' template: the replicas are replaced first,
    then a switchover, then the former primary (patroni_rollout);
and site.yml brings it back to one member, changed=0 on the run after.
The single-node testbed runs the members on one node (anti-affinity
preferred, with the role's warning).
"""
import json
import os
import subprocess
import threading
import time
import uuid

import pytest

from e2e_support import HOSTS, KUBECTL, https, kubectl, postgres_primary, psql, signups, site, wait

pytestmark = pytest.mark.skipif(os.environ.get("SKX_TESTBED_POSTGRES_HA") != "1",
                                reason="set SKX_TESTBED_POSTGRES_HA=1, on the deployed platform (it changes "
                                       "the number of PostgreSQL members)")

PASSWORD = "patroni failover password"


def members():
    """Patroni's view of the cluster: {name: {role, state, lag}} (GET /cluster
    on any member's REST API, read inside the pod)."""
    out = kubectl("-n", "skx-data", "exec", postgres_primary(), "-c", "postgres", "--",
                  "python3", "-c", "import urllib.request;print(urllib.request.urlopen("
                  "'http://127.0.0.1:8008/cluster',timeout=5).read().decode())").stdout
    return {m["name"]: m for m in json.loads(out)["members"]}


def patronictl(*args):
    """patronictl in the primary's container, with the REST API user's password
    from its mounted Secret (never on a command line)."""
    script = ('PATRONI_RESTAPI_PASSWORD="$(cat "$PATRONI_RESTAPI_PASSWORD_FILE")" '
              'exec patronictl -c /etc/patroni/patroni.yml "$@"')
    return kubectl("-n", "skx-data", "exec", postgres_primary(), "-c", "postgres", "--", "sh", "-c", script,
                   "patronictl", *args, timeout=180)


def streaming(count):
    found = members()
    leaders = [n for n, m in found.items() if m["role"] == "leader"]
    replicas = [n for n, m in found.items() if m["role"] in ("replica", "sync_standby") and m["state"] == "streaming"]
    return found if len(leaders) == 1 and len(replicas) == count - 1 else None


@pytest.fixture(scope="module")
def three_members():
    out, _ = site("--tags", "namespaces,postgres", "-e", "postgres_replicas=3")
    found = wait(lambda: streaming(3), timeout=600, interval=5, what="3 members, 2 of them streaming")
    print("members:", {n: m["role"] for n, m in found.items()})
    yield found
    # Back to one member: postgres-0 must be the primary first (the role
    # refuses to remove the primary's pod).
    if postgres_primary() != "postgres-0":
        patronictl("switchover", "--candidate", "postgres-0", "--force")
        wait(lambda: postgres_primary() == "postgres-0", timeout=120, interval=1, what="postgres-0 primary")
    site("--tags", "namespaces,postgres", "-e", "postgres_replicas=1")
    wait(lambda: streaming(1), timeout=300, interval=5, what="one member")
    # The removed members' volumes go with them (whenScaled: Delete), so
    # they hold neither disk nor the data namespace's PVC quota.
    wait(lambda: postgres_volumes() == ["data-postgres-0"], timeout=120, interval=2,
         what="the removed members' volumes deleted")
    _, recap = site("--tags", "namespaces,postgres")
    assert " changed=0 " in recap, recap


def postgres_volumes():
    names = kubectl("-n", "skx-data", "get", "pvc", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    return sorted(n for n in names if n.startswith("data-postgres-"))


def under_load(action, what):
    """Runs action() during sign-ups; returns (acked, refused, seconds until
    20 more sign-ups succeeded after it), having checked that every
    acknowledged sign-up is in the database."""
    run = uuid.uuid4().hex[:8]
    acked, refused, stop = [], [], threading.Event()
    reads = {"ok": 0, "failed": 0}
    threads = [threading.Thread(target=signups, args=(f"ha-{run}", PASSWORD, acked, refused, stop), daemon=True),
               threading.Thread(target=tenant_reads, args=(reads, stop), daemon=True)]
    restarts = app_restarts()
    for thread in threads:
        thread.start()
    try:
        wait(lambda: len(acked) >= 20, timeout=120, interval=1, what="20 sign-ups")
        started = time.monotonic()
        action()
        back = len(acked)
        wait(lambda: len(acked) >= back + 20, timeout=180, interval=1, what=f"20 sign-ups after the {what}")
        recovered = time.monotonic() - started
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    present = set(psql(f"SELECT email FROM users WHERE email LIKE 'ha-{run}-%'", database="superkube").stdout.split())
    missing = [e for e in acked if e not in present]
    restarted = {pod: n - restarts.get(pod, 0) for pod, n in app_restarts().items() if n > restarts.get(pod, 0)}
    print(f"{what}: {len(acked)} sign-ups acknowledged, {len(refused)} refused, writes again after {recovered:.1f} s, "
          f"{len(missing)} acknowledged missing; reads of instance1's pages through the ingress: {reads['ok']} ok, "
          f"{reads['failed']} failed; app containers restarted: {restarted or 'none'}")
    assert missing == [], f"{len(missing)} acknowledged sign-ups lost in the {what}: {missing[:5]}"
    assert not restarted, f"services restarted during the {what}: {restarted}"
    return acked, refused, recovered


def tenant_reads(counts, stop):
    """The read load: instance1's page list (a query on its database, through
    the ingress) every 0.1 s until stop is set, counting answers."""
    while not stop.is_set():
        try:
            counts["ok" if https(HOSTS["instance1"], "/api/pages", timeout=10).status == 200 else "failed"] += 1
        except ConnectionError:
            counts["failed"] += 1
        stop.wait(0.1)


def app_restarts():
    """Container restarts of the services' and tenants' pods, by pod."""
    pods = json.loads(kubectl("get", "pod", "-A", "-l", "app.kubernetes.io/part-of=superkubernetex",
                              "-o", "json").stdout)["items"]
    return {f'{ns}/{p["metadata"]["name"]}': sum(c["restartCount"] for c in p["status"].get("containerStatuses", []))
            for p in pods for ns in [p["metadata"]["namespace"]] if ns == "skx-app" or ns.startswith("skx-instance")}


def test_three_members_one_primary_synchronous(three_members):
    config = json.loads(kubectl("-n", "skx-data", "get", "endpoints", "postgres-config", "-o", "json")
                        .stdout)["metadata"]["annotations"]["config"]
    assert json.loads(config)["synchronous_mode"] is True, config
    assert sorted(m["role"] for m in three_members.values()) == ["leader", "replica", "sync_standby"], three_members
    # The primary Service routes to the leader only.
    ips = kubectl("-n", "skx-data", "get", "endpoints", "postgres", "-o", "jsonpath={.subsets[*].addresses[*].ip}").stdout
    leader = next(n for n, m in three_members.items() if m["role"] == "leader")
    leader_ip = kubectl("-n", "skx-data", "get", "pod", leader, "-o", "jsonpath={.status.podIP}").stdout
    assert ips.split() == [leader_ip]


def test_deleting_the_primary_promotes_a_replica_and_loses_no_acknowledged_write(three_members):
    old = postgres_primary()

    def delete_primary():
        kubectl("-n", "skx-data", "delete", "pod", old, "--wait=false")
        wait(lambda: postgres_primary() != old, timeout=120, interval=0.5, what="a new primary")
    under_load(delete_primary, f"deletion of the primary {old}")
    wait(lambda: streaming(3), timeout=300, interval=5, what=f"{old} back as a replica")


def test_a_switchover_moves_the_primary_with_the_writes_going_on(three_members):
    target = next(n for n, m in members().items() if m["role"] == "sync_standby")

    def switchover():
        patronictl("switchover", "--candidate", target, "--force")
        wait(lambda: postgres_primary() == target, timeout=120, interval=0.5, what=f"{target} primary")
    under_load(switchover, f"switchover to {target}")
    wait(lambda: streaming(3), timeout=300, interval=5, what="3 members streaming after the switchover")


def revisions():
    sts = json.loads(kubectl("-n", "skx-data", "get", "statefulset", "postgres", "-o", "json").stdout)
    pods = json.loads(kubectl("-n", "skx-data", "get", "pod", "-l", "app.kubernetes.io/name=postgres",
                              "-o", "json").stdout)["items"]
    return sts["status"]["updateRevision"], {p["metadata"]["name"]: p["metadata"]["labels"].get(
        "controller-revision-hash") for p in pods}


class MemberEvents:
    """Every change of the PostgreSQL pods, in the API server's order
    (kubectl get --watch): what each pod was (uid, role label, being
    deleted) at the moment another pod first carried role=primary."""

    def __init__(self):
        self.proc = subprocess.Popen([KUBECTL, "-n", "skx-data", "get", "pod", "-l", "app.kubernetes.io/name=postgres",
                                      "--watch", "--output-watch-events", "-o", "json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.events = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        decoder, buffer = json.JSONDecoder(), ""
        for line in self.proc.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue
            buffer = buffer.lstrip()[end:]
            pod = event["object"]
            self.events.append((event["type"], pod["metadata"]["name"], pod["metadata"]["uid"],
                                pod["metadata"].get("labels", {}).get("role"),
                                "deletionTimestamp" in pod["metadata"]))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.thread.join(10)

    def when_primary_left(self, old):
        """The pods' state at the first event where a pod other than old is
        labelled primary: {name: (uid, role, deleting)}; None if none was."""
        state = {}
        for kind, name, uid, role, deleting in self.events:
            if kind == "DELETED":
                state.pop(name, None)
                continue
            state[name] = (uid, role, deleting)
            if name != old and role == "primary" and not deleting:
                return dict(state)
        return None


def test_a_rolling_change_updates_the_replicas_then_switches_over(three_members):
    """A change of the members' template (here their CPU request) under
    sign-ups: every member ends on the new revision, no acknowledged write
    is lost, and the primary moved by a switchover after the replicas were
    replaced: the pods' watch shows that when another member first carried
    role=primary, the former primary was still the same pod, not being
    deleted (a kill would have marked it deleted first), and both other
    members were new pods."""
    old = postgres_primary()
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in json.loads(kubectl(
        "-n", "skx-data", "get", "pod", "-l", "app.kubernetes.io/name=postgres", "-o", "json").stdout)["items"]}
    resources = {"requests": {"cpu": "260m", "memory": "512Mi", "ephemeral-storage": "128Mi"},
                 "limits": {"cpu": "2", "memory": "2Gi", "ephemeral-storage": "512Mi"}}

    def rolling_change():
        site("--tags", "namespaces,postgres", "-e", "postgres_replicas=3",
             "-e", json.dumps({"postgres_resources": resources}))
    watch = MemberEvents()
    try:
        under_load(rolling_change, "rolling change of the members' template")
    finally:
        watch.stop()
    assert postgres_primary() != old, f"{old} is still the primary: no switchover happened"
    moment = watch.when_primary_left(old)
    print(f"rolling change: {len(watch.events)} pod events; when the primary left {old}: {moment}")
    assert moment is not None, "the watch saw no other member become primary"
    uid, _, deleting = moment[old]
    assert uid == before[old] and not deleting, f"{old} was deleted or replaced before the primary moved: {moment}"
    replaced = {name for name, (uid, _, _) in moment.items() if name != old and uid != before.get(name)}
    assert replaced == set(before) - {old}, f"replicas not all replaced before the switchover: {moment}"
    update, members_revision = revisions()
    assert set(members_revision.values()) == {update}, members_revision
    wait(lambda: streaming(3), timeout=300, interval=5, what="3 members streaming after the rolling change")
