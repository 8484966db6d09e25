"""A tenant's lifecycle on the testbed, as docs/user-guide.md states it
("Adding and removing a tenant"), while instance1 and instance2 serve under
load (tests/e2e/e2e_load.py: every answer that is not 2xx and every
connection error counts as lost, nothing is retried).

instance4 is added as one list entry (site.yml with -e extra vars), gets
its own TLS key and certificate (no other host's signed again), rows and a
file through its own API; then its entry is deleted (nothing of it changes,
the run warns), it is set to state: absent (stopped, data kept, its TLS
Secret removed, no alert for it), back to present (rows, file and the same
certificate back), and finally to
state: absent with delete_data: true (final dump on the control node, then
namespace, database and roles gone). Each run is limited with --tags to the
steps that read the instances list; the cluster is left with instances 1-3
only, as it was found.

Opt-in (SKX_TESTBED_TENANT_LIFECYCLE=1), so that molecule verify stays
short; .ci/run runs it as a step of its own. On the 2-core testbed machine
its five site.yml runs take 75 to 100 s each, the whole test about 8 minutes
(7 passed in 454 s, 5548 requests to instance1 and instance2, 0 lost).
"""
import contextlib
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import time
import uuid

import pytest
import requests
import yaml

from e2e_load import Load, Target
from e2e_support import CA, DOMAIN, HOSTS, KUBECTL, ROOT, https, kubectl, port_forward, psql, secret_data, wait
from lib.ansible_env import playbook_env
from test_e2e_tls import dns_names, tls_secrets

pytestmark = pytest.mark.skipif(os.environ.get("SKX_TESTBED_TENANT_LIFECYCLE") != "1",
                                reason="opt-in: set SKX_TESTBED_TENANT_LIFECYCLE=1 (about 8 minutes)")

# The tests are the steps of one story, in order (conftest.py skips the rest
# once one fails; the tenant fixture then deletes instance4).
INCREMENTAL = True

NAME, NS, DB = "instance4", "skx-instance4", "instance4_db"
HOST = f"inst4.{DOMAIN}"
BASE = [{"name": f"instance{n}", "host": f"inst{n}.{DOMAIN}"} for n in (1, 2, 3)]
# Every step that reads the instances list; redis, apps and logging do not.
TAGS = "namespaces,ingress,postgres,instances,monitoring,backups"
RUN_TIMEOUT = 1500
PAGES = [f"lifecycle-{n}" for n in range(5)]
ASSET = "lifecycle.bin"
ASSET_BYTES = os.urandom(64 * 1024)
PASSWORD = "tenant lifecycle password"
# The objects of the tenant a removal from the list must leave as they are.
KINDS = "deployment,service,ingress,hpa,pdb,configmap,secret,pvc,networkpolicy,resourcequota,limitrange"


def site(instances, tags=TAGS):
    """Run site.yml on the testbed as an operator does, with the instances list given as extra vars."""
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    env = playbook_env()
    started = time.monotonic()
    run = subprocess.run([playbook, "site.yml", "-i", "inventories/testbed", "--tags", tags,
                          "-e", json.dumps({"platform_instances": instances})],
                         cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)
    changed = changed_tasks(run.stdout)
    print(f"site.yml --tags {tags} with {[(i['name'], i.get('state', 'present'), i.get('delete_data', False)) for i in instances]}:"
          f" {time.monotonic() - started:.0f} s, rc {run.returncode}, changed: {changed}")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    # Ansible writes its warnings to stderr.
    return run.stdout + run.stderr


def changed_tasks(out):
    """The tasks of a run's output that reported a change, for the record."""
    found, task = [], None
    for line in out.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK ["):line.rfind("]")]
        elif line.startswith("changed: ") and task and task not in found:
            found.append(task)
    return found


def with_instance4(**fields):
    return BASE + [{"name": NAME, "host": HOST, **fields}]


def exists(*args):
    return kubectl("get", *args, "-o", "name", check=False).returncode == 0


def objects(namespace):
    """uid and a digest of what the platform sets (spec, data, labels) of each object of the namespace."""
    items = json.loads(kubectl("-n", namespace, "get", KINDS, "-o", "json").stdout)["items"]
    found = {}
    for item in items:
        meta = item["metadata"]
        if item["kind"] == "Secret" and item.get("type") == "kubernetes.io/service-account-token":
            continue
        content = {k: item.get(k) for k in ("spec", "data", "stringData")}
        if item["kind"] == "Deployment":
            content["spec"] = {k: v for k, v in item["spec"].items() if k != "replicas"}  # the HPA's
        content["labels"] = meta.get("labels")
        found[(item["kind"], meta["name"])] = (meta["uid"], hashlib.sha256(
            json.dumps(content, sort_keys=True).encode()).hexdigest())
    return found


def template_hashes(namespace):
    """The pod templates instance4's pods run: a rollout would change them."""
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-l", "app.kubernetes.io/name=instance",
                              "-o", "json").stdout)["items"]
    return {p["metadata"]["labels"].get("pod-template-hash") for p in pods if not p["metadata"].get("deletionTimestamp")}


def pod_uids(namespace):
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-l", "app.kubernetes.io/name=instance",
                              "-o", "json").stdout)["items"]
    return {p["metadata"]["uid"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def credentials_digest():
    """A digest of instance4's credential Secret: compared, never shown."""
    return hashlib.sha256(json.dumps(secret_data(NS, "db-credentials"), sort_keys=True).encode()).hexdigest()


def uid(*args):
    return json.loads(kubectl("get", *args, "-o", "json").stdout)["metadata"]["uid"]


def status(host, path="/"):
    """The status and X-Instance of a request through the ingress, or the error (a host with no route
    may fail the TLS handshake: the ingress then has no certificate to give for it)."""
    try:
        r = https(host, path)
        return r.status, r.headers.get("x-instance")
    except ConnectionError as e:
        return "error", str(e)


def alert_drops(config_yaml):
    """The instances whose alerts the running Prometheus drops before Alertmanager."""
    rules = (yaml.safe_load(config_yaml).get("alerting") or {}).get("alert_relabel_configs") or []
    return [r["regex"] for r in rules if r.get("action") == "drop" and r.get("source_labels") == ["instance"]]


def sql(query, database="postgres"):
    return psql(query, database=database).stdout.strip()


def prometheus_get(path, params=None, timeout=240):
    """One Prometheus API call through a port-forward, once the server (restarted
    when its configuration changes) is ready."""
    kubectl("-n", "skx-monitoring", "rollout", "status", "statefulset/prometheus", "--timeout=300s", timeout=320)
    with port_forward("skx-monitoring", "svc/prometheus", 9090) as url:
        def ready():
            try:
                return requests.get(f"{url}/-/ready", timeout=5).status_code == 200
            except requests.RequestException:
                return False
        wait(ready, timeout, what="Prometheus ready")
        return requests.get(f"{url}{path}", params=params, timeout=20).json()["data"]


def alertmanager_alerts():
    with port_forward("skx-monitoring", "svc/alertmanager", 9093) as url:
        return requests.get(f"{url}/api/v2/alerts", timeout=20).json()


@pytest.fixture(scope="module")
def load():
    """instance1 and instance2 under load through the whole lifecycle."""
    targets = [Target("instance1 / (its database)", HOSTS["instance1"], "/"),
               Target("instance2 / (its database)", HOSTS["instance2"], "/")]
    with Load(targets, max_seconds=4 * RUN_TIMEOUT) as running:
        yield running


@pytest.fixture(scope="module")
def tenant(load):
    """What the steps share; at the end, instance4 is deleted if a step left it."""
    state = {}
    yield state
    if exists("namespace", NS) or sql(f"SELECT 1 FROM pg_database WHERE datname = '{DB}'"):
        print("cleaning up instance4 after a failed step")
        site(with_instance4(state="absent", delete_data=True), tags="instances,monitoring,backups")
    for path in state.get("dumps", []):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@pytest.fixture(scope="module")
def token():
    email = f"lifecycle-{uuid.uuid4().hex[:8]}@example.com"
    assert https(HOSTS["auth"], "/signup", "POST", {"email": email, "password": PASSWORD}).status == 201
    login = https(HOSTS["auth"], "/login", "POST", {"email": email, "password": PASSWORD})
    assert login.status == 200, login.body
    return login.json()["token"]


def assert_data_served(marker):
    """instance4 serves, from its own database and volume, what was written."""
    listed = https(HOST, "/api/pages")
    assert listed.status == 200 and listed.headers.get("x-instance") == NAME, listed.body[:300]
    bodies = {p["slug"]: p["body"] for p in listed.json()["pages"]}
    assert all(bodies.get(slug) == f"{marker} {slug}" for slug in PAGES), bodies
    asset = subprocess.run(["curl", "-sSf", "--max-time", "10", "--cacert", CA, "--resolve", f"{HOST}:443:127.0.0.1",
                            f"https://{HOST}/assets/{ASSET}"], capture_output=True, timeout=30).stdout
    assert hashlib.sha256(asset).hexdigest() == hashlib.sha256(ASSET_BYTES).hexdigest()


# Each host's key and certificate on the control node (the ingress role's
# selfsigned mode, the testbed's): a tenant added signs its own host alone.
PKI_HOSTS = os.path.join(os.path.dirname(CA), "hosts")


def pki_files():
    """A digest of each host's key and certificate file: compared, never shown."""
    return {name: hashlib.sha256(open(os.path.join(PKI_HOSTS, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(PKI_HOSTS))}


def tls_hosts(namespace):
    """{Secret name: the host names of its certificate} of every TLS Secret of the namespace."""
    return {name: dns_names(leaf) for name, (leaf, _) in tls_secrets(namespace).items()}


def test_the_cluster_starts_without_instance4(load):
    assert not exists("namespace", NS), f"{NS} exists before the test: delete it first"
    assert sql(f"SELECT count(*) FROM pg_database WHERE datname = '{DB}'") == "0"
    for name in ("instance1", "instance2", "instance3"):
        assert exists("-n", f"skx-{name}", "deployment", "instance"), name


def test_adding_one_entry_creates_and_serves_the_tenant(tenant, token):
    others = {k: v for k, v in pki_files().items() if not k.startswith(HOST + ".")}
    site(with_instance4())
    # Its own key and certificate, for its host only; no other host's signed again.
    assert tls_hosts(NS) == {"skx-tls": [HOST]}
    assert {k: v for k, v in pki_files().items() if not k.startswith(HOST + ".")} == others
    wait(lambda: status(HOST) == (200, NAME), 120, what=f"https://{HOST}/ answered by instance4")
    assert sql(f"SELECT count(*) FROM pg_database WHERE datname = '{DB}'") == "1"
    assert exists("-n", "skx-data", "cronjob", "backup-instance4-db")
    labels = json.loads(kubectl("get", "namespace", NS, "-o", "json").stdout)["metadata"]["labels"]
    assert labels["superkubernetex.com/instance"] == NAME
    marker = uuid.uuid4().hex[:8]
    auth = {"Authorization": f"Bearer {token}"}
    for slug in PAGES:
        r = https(HOST, f"/api/pages/{slug}", "PUT", {"title": slug, "body": f"{marker} {slug}"}, headers=auth)
        assert r.status == 201, r.body
    r = https(HOST, f"/api/assets/{ASSET}", "PUT", ASSET_BYTES, headers={**auth, "Content-Type": "application/octet-stream"})
    assert r.status == 201, r.body
    assert_data_served(marker)
    # Rows in its own database, the file on its own volume.
    assert sql(f"SELECT count(*) FROM pages WHERE slug LIKE 'lifecycle-%'", DB) == str(len(PAGES))
    tenant.update(marker=marker, pvc=uid("-n", NS, "pvc", "instance-files"), namespace=uid("namespace", NS),
                  pki=pki_files(),
                  db_oid=sql(f"SELECT oid FROM pg_database WHERE datname = '{DB}'"),
                  credentials=credentials_digest(),
                  cronjob=uid("-n", "skx-data", "cronjob", "backup-instance4-db"))


def test_deleting_the_entry_changes_nothing_of_the_tenant_and_warns(tenant):
    wait(lambda: len(pod_uids(NS)) >= 2, 120, what="instance4 pods")
    before, pods, templates = objects(NS), pod_uids(NS), template_hashes(NS)
    out = site(BASE)
    # Warnings are wrapped to the terminal's width: read them as one line.
    warning = re.search(r"\[WARNING\]: [^[]*?not in platform_instances: (.*?) \(namespaces", " ".join(out.split()))
    assert warning and NAME in warning.group(1).split(", "), out[-3000:]
    print(f"warning: {warning.group(0)}")
    after = objects(NS)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert changed == [], f"objects of {NS} changed, appeared or went: {changed}"
    # Its pods kept running: same template, none replaced (the HPA may only have added some).
    assert template_hashes(NS) == templates, "instance4's pods were rolled"
    assert pods <= pod_uids(NS) or len(pod_uids(NS)) < len(pods), "instance4's pods were replaced"
    assert uid("namespace", NS) == tenant["namespace"]
    assert uid("-n", "skx-data", "cronjob", "backup-instance4-db") == tenant["cronjob"]
    assert sql(f"SELECT oid FROM pg_database WHERE datname = '{DB}'") == tenant["db_oid"]
    assert credentials_digest() == tenant["credentials"]
    verify = kubectl("-n", "skx-data", "get", "cronjob", "backup-verify", "-o", "json").stdout
    assert f"--database={DB}" in verify, "the restore verification dropped instance4"
    assert_data_served(tenant["marker"])
    # Still scraped under its own name, and its alerts would still be sent.
    def scraped():
        found = prometheus_get("/api/v1/targets", {"state": "active"})["activeTargets"]
        return [t for t in found if t["labels"].get("namespace") == NS and t["labels"].get("instance") == NAME
                and t["health"] == "up"]
    assert wait(scraped, 240, interval=10, what="instance4 targets up under instance=instance4")
    assert alert_drops(prometheus_get("/api/v1/status/config")["yaml"]) == []


def test_state_absent_stops_the_tenant_and_keeps_its_data(tenant):
    out = site(with_instance4(state="absent"))
    assert "is stopped" in out
    for kind in ("deployment", "service", "ingress", "hpa", "pdb"):
        assert not exists("-n", NS, kind, "instance"), f"{kind} still there"
    assert pod_uids(NS) == set()
    answer = status(HOST)
    print(f"https://{HOST}/ while stopped: {answer}")
    assert answer[0] != 200 and answer[1] != NAME, f"the host still routes to instance4: {answer}"
    assert uid("namespace", NS) == tenant["namespace"]
    assert uid("-n", NS, "pvc", "instance-files") == tenant["pvc"]
    assert sql(f"SELECT oid FROM pg_database WHERE datname = '{DB}'") == tenant["db_oid"]
    assert sql(f"SELECT count(*) FROM pages WHERE slug LIKE 'lifecycle-%'", DB) == str(len(PAGES))
    assert sql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'instance4%'") == \
        "instance4,instance4_a,instance4_b"
    assert credentials_digest() == tenant["credentials"]
    assert uid("-n", "skx-data", "cronjob", "backup-instance4-db") == tenant["cronjob"]
    # Its TLS Secret is no longer used: removed; no certificate signed again.
    assert tls_hosts(NS) == {} and pki_files() == tenant["pki"]
    # Its alerts are dropped before Alertmanager, and none is firing for it.
    assert alert_drops(prometheus_get("/api/v1/status/config")["yaml"]) == [NAME]
    firing = [a for a in prometheus_get("/api/v1/alerts")["alerts"]
              if a["labels"].get("instance") == NAME and a["state"] == "firing"]
    notified = [a for a in alertmanager_alerts() if a["labels"].get("instance") == NAME]
    print(f"alerts for instance4 while stopped: {len(firing)} firing in Prometheus, {len(notified)} in Alertmanager")
    assert firing == [] and notified == [], (firing, notified)


def test_state_present_again_brings_back_its_rows_and_file(tenant):
    site(with_instance4())
    wait(lambda: status(HOST) == (200, NAME), 120, what=f"https://{HOST}/ again")
    assert_data_served(tenant["marker"])
    assert uid("-n", NS, "pvc", "instance-files") == tenant["pvc"]
    assert sql(f"SELECT oid FROM pg_database WHERE datname = '{DB}'") == tenant["db_oid"]
    assert credentials_digest() == tenant["credentials"]
    # The same key and certificate as before it stopped, in its own namespace again.
    assert tls_hosts(NS) == {"skx-tls": [HOST]} and pki_files() == tenant["pki"]


def test_delete_data_takes_a_final_dump_then_deletes_the_tenant(tenant):
    out = site(with_instance4(state="absent", delete_data=True))
    found = re.search(r"Final dump of instance4_db \((\d+) relations\) written to (\S+\.dump)", out)
    assert found, out[-3000:]
    path = found.group(2)
    tenant.setdefault("dumps", []).append(path)
    print(f"final dump: {path} ({os.path.getsize(path)} bytes, {found.group(1)} relations)")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    with open(os.path.join(os.path.dirname(path), ".gitignore")) as f:
        assert "*" in f.read().split(), "the final dumps directory does not keep its files out of git"
    if os.path.realpath(path).startswith(os.path.realpath(ROOT) + os.sep):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert ignored.returncode == 0, f"{path} is inside the checkout and not ignored by git"
    listing = subprocess.run(["pg_restore", "--list", path], capture_output=True, text=True)
    assert listing.returncode == 0 and "TABLE public pages" in listing.stdout and "TABLE DATA public pages" in \
        listing.stdout, listing.stdout[-2000:] + listing.stderr
    assert not exists("namespace", NS)
    assert sql(f"SELECT count(*) FROM pg_database WHERE datname = '{DB}'") == "0"
    assert sql("SELECT count(*) FROM pg_roles WHERE rolname IN ('instance4', 'instance4_a', 'instance4_b')") == "0"
    assert not exists("-n", "skx-data", "cronjob", "backup-instance4-db")


def test_instance1_and_instance2_lost_no_request_through_the_lifecycle(load, tenant):
    load.stop.set()
    for t in load.threads:
        t.join(load.timeout + 5)
    load.ended = time.monotonic()
    print(load.summary())
    for target in load.targets:
        sent = load.ok[target.name] + sum(load.failed.get(target.name, {}).values())
        print(f"{target.name}: {sent} requests sent, {sum(load.failed.get(target.name, {}).values())} failed")
        assert load.ok[target.name] > 0, load.summary()
    assert load.lost() == 0, load.summary()
    for name in ("instance1", "instance2", "instance3"):
        assert exists("-n", f"skx-{name}", "deployment", "instance"), name
