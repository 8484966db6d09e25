"""Zero downtime under load, on the testbed: rolling updates, secret rotation,
HPA scale-out and back, PostgreSQL pod deletion.

A load generator (tests/e2e/e2e_load.py) runs against the ingress on
127.0.0.1 during each operation and counts every answer that is not 2xx and
every connection error; nothing is retried. Each test prints its figures.
"""
import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from e2e_load import Load, Target, request
from e2e_support import HOSTS, ROOT, https, kubectl, postgres_primary, psql, secret_data, signups
from lib.ansible_env import playbook_env

INSTANCES = ["instance1", "instance2", "instance3"]
WORKLOADS = [("skx-app", "frontend"), ("skx-app", "auth"), ("skx-app", "payment")] + [
    (f"skx-{i}", "instance") for i in INSTANCES]
PASSWORD = "zero downtime password"
# stripe-mock takes any well-formed test key: these replace the inventory's.
ROTATED_STRIPE = {"services_stripe_secret_key": "sk_test_rotated0e2e0keys0kept",
                  "services_stripe_webhook_secret": "whsec_rotated0e2e0keys0kept"}


def wait(fn, timeout, interval=3, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def pod_names(namespace, name):
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-l", f"app.kubernetes.io/name={name}",
                              "-o", "json").stdout)["items"]
    return {p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")}


@pytest.fixture(scope="module")
def account():
    """A user of the platform, and a frontend session of it (kept in Redis)."""
    email = f"zd-{uuid.uuid4().hex[:8]}@example.com"
    assert https(HOSTS["auth"], "/signup", "POST", {"email": email, "password": PASSWORD}).status == 201
    status, headers = request(Target("login", HOSTS["frontend"], "/login", "POST",
                                     {"email": email, "password": PASSWORD},
                                     {"Content-Type": "application/x-www-form-urlencoded"}))
    assert status == 303 or status == 302, status
    cookie = headers["set-cookie"].split(";", 1)[0]
    return {"email": email, "cookie": cookie}


@pytest.fixture(scope="module")
def targets(account):
    """One request per service that goes through its dependencies: the
    frontend session in Redis, the login in the superkube database with the
    JWT key, the plans through payment's database login, each instance's
    pages from its own database."""
    login = {"email": account["email"], "password": PASSWORD}
    return [
        Target("frontend /account (Redis session)", HOSTS["frontend"], "/account",
               headers={"Cookie": account["cookie"]}),
        Target("frontend /plans (via payment)", HOSTS["frontend"], "/plans"),
        Target("auth /login (database, JWT)", HOSTS["auth"], "/login", "POST", login,
               {"Content-Type": "application/json"}),
        Target("payment /plans (database)", HOSTS["payment"], "/plans"),
    ] + [Target(f"{i} / (its database)", HOSTS[i], "/") for i in INSTANCES]


def test_the_load_targets_answer_before_anything_moves(targets):
    # A target that fails at rest would make the counts below meaningless.
    for target in targets:
        status, _ = request(target)
        assert 200 <= status < 300, f"{target.name}: HTTP {status}"


def test_a_rolling_update_of_every_app_and_instance_loses_no_request(targets):
    before = {w: pod_names(*w) for w in WORKLOADS}
    started = time.monotonic()
    with Load(targets) as load:
        time.sleep(5)
        for namespace, name in WORKLOADS:
            kubectl("-n", namespace, "rollout", "restart", f"deployment/{name}")
        for namespace, name in WORKLOADS:
            kubectl("-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=600s", timeout=620)
        time.sleep(5)
    print(f"rolling update of {len(WORKLOADS)} Deployments: {time.monotonic() - started:.0f} s")
    for w in WORKLOADS:
        assert not (before[w] & pod_names(*w)), f"{w}: every pod should have been replaced"
    assert all(load.ok[t.name] > 0 for t in targets), load.summary()
    assert load.lost() == 0, load.summary()


def test_a_secret_rotation_loses_no_request(targets):
    def credentials():
        return {"auth-db": secret_data("skx-app", "auth-db")["password"],
                "payment-db": secret_data("skx-app", "payment-db")["password"],
                "redis": secret_data("skx-data", "redis-auth")["password"],
                "instance2 db": secret_data("skx-instance2", "db-credentials")["password"],
                "jwt": secret_data("skx-app", "auth-jwt")}
    before = credentials()
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    started = time.monotonic()
    with Load(targets, max_seconds=1500) as load:
        # As an operator runs it: the project's ansible.cfg, not the settings of
        # a molecule run this test may be part of.
        env = playbook_env()
        # The Stripe keys too: the inventory's keys must not come back with the
        # next ordinary run (test below).
        run = subprocess.run([playbook, "site.yml", "-i", "inventories/testbed", "--tags", "rotate-secrets",
                              "-e", json.dumps(ROTATED_STRIPE)],
                             cwd=ROOT, capture_output=True, text=True, timeout=1500, env=env)
    print(f"rotate-secrets run: {time.monotonic() - started:.0f} s")
    assert run.returncode == 0, run.stdout[-3000:]
    after = credentials()
    for name in before:
        assert before[name] != after[name], f"{name} was not rotated"
    # The Redis exporter has its own ACL user: the clients' new password does not lock it out.
    metrics = kubectl("get", "--raw", "/api/v1/namespaces/skx-data/pods/redis-0:9121/proxy/metrics").stdout
    assert "\nredis_up 1\n" in metrics, "the Redis exporter lost its login after the rotation"
    assert all(load.ok[t.name] > 0 for t in targets), load.summary()
    assert load.lost() == 0, load.summary()


def test_an_ordinary_run_after_the_rotation_keeps_every_rotated_credential_working():
    """The run after --tags rotate-secrets keeps what the rotation installed,
    for every credential it rotates, and each one still logs in. Grafana does
    not run on the testbed: its password follows the same read-back rule
    (roles/monitoring/tasks/grafana.yml), checked by the render tests only."""
    def credentials():
        return {name: secret_data(ns, secret) for name, (ns, secret) in {
            "auth-db": ("skx-app", "auth-db"), "payment-db": ("skx-app", "payment-db"),
            **{f"{i} db": (f"skx-{i}", "db-credentials") for i in INSTANCES},
            "redis": ("skx-data", "redis-auth"), "redis (frontend copy)": ("skx-app", "redis-auth"),
            "jwt": ("skx-app", "auth-jwt"), "stripe": ("skx-app", "payment-stripe")}.items()}
    rotated = credentials()
    assert rotated["stripe"]["secret_key"] == ROTATED_STRIPE["services_stripe_secret_key"], \
        "run the rotation test first: the Stripe keys were not rotated"
    env = playbook_env()
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    started = time.monotonic()
    run = subprocess.run([playbook, "site.yml", "-i", "inventories/testbed"], cwd=ROOT, capture_output=True,
                         text=True, timeout=1500, env=env)
    print(f"ordinary run after the rotation: {time.monotonic() - started:.0f} s")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "differs from the keys in the Secret" in " ".join(run.stdout.split()), \
        "the run should say the vault's Stripe keys are not in use"
    after = credentials()
    for name in rotated:
        assert after[name] == rotated[name], f"{name}: the ordinary run put back an older credential"
    # Each credential works against its service.
    for name in ["auth-db", "payment-db"] + [f"{i} db" for i in INSTANCES]:
        login = after[name]
        assert psql("SELECT 1", database=login["database"], user=login["username"],
                    password=login["password"]).stdout.strip() == "1", name
    pong = kubectl("-n", "skx-data", "exec", "redis-0", "-c", "redis", "--", "redis-cli", "--no-auth-warning",
                   "-a", after["redis"]["password"], "PING").stdout.strip()
    assert pong == "PONG"
    email = f"kept-{uuid.uuid4().hex[:8]}@example.com"
    assert https(HOSTS["auth"], "/signup", "POST", {"email": email, "password": PASSWORD}).status == 201
    token = https(HOSTS["auth"], "/login", "POST", {"email": email, "password": PASSWORD}).json()["token"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["kid"] == after["jwt"]["current.kid"], "tokens are not signed with the rotated key"
    checkout = https(HOSTS["payment"], "/checkout", "POST", {"plan": "pro"},
                     headers={"Authorization": f"Bearer {token}"})
    assert checkout.status == 201, checkout.body


def _hpa(namespace):
    return json.loads(kubectl("-n", namespace, "get", "hpa", "instance", "-o", "json").stdout)


def test_an_instance_hpa_scales_out_under_load_and_back_in_after(targets):
    namespace = "skx-instance1"
    hpa = _hpa(namespace)
    low = hpa["spec"]["minReplicas"]
    # Earlier tests' traffic may have scaled it out: start from rest.
    wait(lambda: _hpa(namespace)["status"].get("currentReplicas") == low, timeout=600, interval=5,
         what=f"{namespace} at rest ({low} replicas)")
    target = next(t for t in targets if t.host == HOSTS["instance1"])
    started = time.monotonic()
    def ready():
        return json.loads(kubectl("-n", namespace, "get", "deployment", "instance", "-o", "json").stdout)[
            "status"].get("readyReplicas", 0)

    with Load([target], workers=6, pause=0, max_seconds=420) as heavy:
        wait(lambda: _hpa(namespace)["status"].get("desiredReplicas", 0) > low, timeout=300, what="scale-out")
        wait(lambda: ready() > low, timeout=180, what="the new pods Ready")
        time.sleep(20)  # let it go on scaling while the load lasts
    out = time.monotonic() - started
    # The Deployment, not the HPA's status (updated on its next sync), says how many serve.
    peak = ready()
    print(f"scale-out: {low} -> {peak} replicas in {out:.0f} s under load "
          f"({heavy.total()} requests, {heavy.lost()} lost)")
    # Back in, with light traffic still flowing: the pods removed must not lose it.
    started = time.monotonic()
    stabilization = hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
    with Load([target], pause=0.5, max_seconds=stabilization + 120 * peak + 120) as light:
        wait(lambda: _hpa(namespace)["status"].get("currentReplicas") == low
             and len(pod_names(namespace, "instance")) == low,
             timeout=stabilization + 90 * peak + 120, interval=5, what="scale-in")
        time.sleep(5)
    print(f"scale-in: {peak} -> {low} replicas in {time.monotonic() - started:.0f} s "
          f"({light.total()} requests, {light.lost()} lost)")
    assert peak > low
    assert heavy.lost() == 0, heavy.summary()
    assert light.lost() == 0, light.summary()


def test_deleting_the_postgresql_pod_loses_no_committed_data():
    """Sign-ups run while the PostgreSQL pod is deleted; every one that was
    acknowledged (201) must be in the database afterwards."""
    run = uuid.uuid4().hex[:8]
    acked, refused, stop = [], [], threading.Event()

    def writer():
        signups(f"pgdel-{run}", PASSWORD, acked, refused, stop)

    def count():
        return int(psql(f"SELECT count(*) FROM users WHERE email LIKE 'pgdel-{run}-%'",
                        database="superkube").stdout.strip())

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wait(lambda: len(acked) >= 20, timeout=120, interval=1, what="20 sign-ups")
        # The acknowledgements first: a sign-up acknowledged after them is
        # committed too, so the rows counted next can only be more.
        acked_before = len(acked)
        rows_before = count()
        assert rows_before >= acked_before
        primary = postgres_primary()
        uid = json.loads(kubectl("-n", "skx-data", "get", "pod", primary, "-o", "json").stdout)["metadata"]["uid"]
        started = time.monotonic()
        kubectl("-n", "skx-data", "delete", "pod", primary, "--wait=false")

        def new_primary():
            name = postgres_primary()
            pod = json.loads(kubectl("-n", "skx-data", "get", "pod", name, "-o", "json", check=False).stdout or "{}")
            return pod.get("metadata", {}).get("uid") not in (None, uid)
        # Patroni's role label: the same pod recreated with a single member,
        # a promoted replica with several.
        wait(new_primary, timeout=120, interval=1, what=f"a primary other than the deleted {primary}")
        # The StatefulSet updates OnDelete (no rollout status): every member Ready.
        kubectl("-n", "skx-data", "wait", "--for=condition=Ready", "pod", "-l", "app.kubernetes.io/name=postgres",
                "--timeout=300s", timeout=320)
        back = len(acked)
        wait(lambda: len(acked) >= back + 20, timeout=180, interval=1, what="20 sign-ups after the restart")
        recovered = time.monotonic() - started
    finally:
        stop.set()
        thread.join(15)
    present = set(psql(f"SELECT email FROM users WHERE email LIKE 'pgdel-{run}-%'",
                       database="superkube").stdout.split())
    missing = [e for e in acked if e not in present]
    print(f"PostgreSQL pod deletion: rows {rows_before} before, {len(present)} after; {len(acked)} sign-ups "
          f"acknowledged, {len(refused)} refused while it restarted; writes again after {recovered:.0f} s")
    assert missing == [], f"{len(missing)} acknowledged sign-ups lost: {missing[:5]}"
    assert len(present) >= rows_before
