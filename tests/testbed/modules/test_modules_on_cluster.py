"""tenant_database and secret_rotation on the testbed: PostgreSQL and Redis
run in pods and are reached only through the port-forward util; Secrets are
patched, consumers rolled and waited for, and a rollout that never becomes
ready is undone."""
import base64
import hashlib
import json
import threading
import time
import uuid

import psycopg
import pytest
import redis

from ansible_collections.superkubernetex.platform.plugins.module_utils.kubeapi import KubeClient
from ansible_collections.superkubernetex.platform.plugins.module_utils.portforward import PortForward
from lib.testbed import KUBECONFIG, PG_IMAGE, deployment, eventually

REDIS_IMAGE = "docker.io/library/redis:7.0"
BUSYBOX = "docker.io/library/busybox:1.35.0"
SUPERUSER_PW = "testbed-superuser-pw"


def api():
    """The collection's own API client, the one PortForward works with."""
    return KubeClient(KUBECONFIG)


def server_pod(name, image, env=None, args=None, port=5432):
    c = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
         "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
         "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1}}
    if args:
        c["args"] = args
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [c]}}


def secret(name, data):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def consumer(name, secret_name, ready_if=None):
    """A Deployment mounting the Secret; with ready_if, a pod is ready only
    while the mounted username contains that text (to make a rollout fail)."""
    d = deployment(name, BUSYBOX, ["sh", "-c", "sleep 100000"], replicas=2, port=None)
    spec = d["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "creds", "secret": {"secretName": secret_name}}]
    c = spec["containers"][0]
    c["volumeMounts"] = [{"name": "creds", "mountPath": "/creds", "readOnly": True}]
    # The testbed busybox has few applets: only shell builtins here.
    script = 'read u < /creds/username; case "$u" in *%s*) exit 0;; esac; exit 1' % ready_if if ready_if \
        else "test -r /creds/username || test -r /creds/password || test -r /creds/jwks.json"
    check = ["sh", "-c", script]
    c["readinessProbe"] = {"exec": {"command": check}, "periodSeconds": 1}
    d["spec"]["progressDeadlineSeconds"] = 600
    return d


def read_secret(namespace, name):
    obj = api().get("v1", "Secret", name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}


def pg_args(namespace, **extra):
    args = dict(login_password=SUPERUSER_PW,
                port_forward=dict(namespace=namespace, pod="pg", kubeconfig=KUBECONFIG))
    args.update(extra)
    return args


@pytest.fixture
def pg(ns):
    ns.apply([server_pod("pg", PG_IMAGE, {"POSTGRES_PASSWORD": SUPERUSER_PW})])
    ns.wait_pod_ready("pg", timeout=300)
    eventually(lambda: ns.exec("pg", "pg_isready", "-U", "postgres", check=False).returncode == 0,
               timeout=120, what="postgres accepting connections")
    return ns


class PgLoop:
    """Connect again and again through a port-forward with the Secret's
    current content (read from the API), counting failures."""

    def __init__(self, namespace, name):
        self.namespace, self.name = namespace, name
        self.attempts = self.failures = 0
        self.errors = []
        self.stop = threading.Event()

    def run(self):
        with PortForward(api(), self.namespace, "pg", 5432) as pf:
            while not self.stop.is_set():
                self.attempts += 1
                data = read_secret(self.namespace, self.name)
                try:
                    with psycopg.connect(host=pf.directory, port=5432, dbname=data["database"],
                                         user=data["username"], password=data["password"]) as conn:
                        conn.execute("SELECT 1")
                except psycopg.Error as exc:
                    self.failures += 1
                    self.errors.append(str(exc))
                time.sleep(0.05)

    def __enter__(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)


def make_tenant(pg, run_module):
    name = "t" + uuid.uuid4().hex[:6]
    password = "tb-" + uuid.uuid4().hex
    created = run_module("tenant_database", pg_args(pg.namespace, name=name + "_db", owner=name, password=password))
    assert created["changed"], created.stdout
    pg.apply([secret("db-credentials", dict(username=name + "_a", password=password, database=name + "_db",
                                            host="pg", port="5432"))])
    return name, password


def test_tenant_database_through_the_port_forward(pg, run_module):
    name, password = make_tenant(pg, run_module)
    again = run_module("tenant_database", pg_args(pg.namespace, name=name + "_db", owner=name, password=password))
    assert again["changed"] is False, again["executed_queries"]
    out = pg.exec("pg", "psql", "-U", "postgres", "-Atc",
                  "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '%s_db'" % name).stdout
    assert out.strip() == name


def test_postgres_rotation_rolls_consumers_without_failed_connections(pg, run_module, capsys):
    name, password = make_tenant(pg, run_module)
    pg.apply([consumer("consumer", "db-credentials")])
    pg.wait_rollout("deployment/consumer")
    with PgLoop(pg.namespace, "db-credentials") as loop:
        time.sleep(2)
        rotated = run_module("secret_rotation", pg_args(
            pg.namespace, kind="postgres", secrets=[{"namespace": pg.namespace, "name": "db-credentials"}],
            restart=[{"namespace": pg.namespace, "name": "consumer"}], rollout_timeout=180))
        time.sleep(2)
    with capsys.disabled():
        print("\ncluster postgres rotation: %d attempts, %d failed" % (loop.attempts, loop.failures))
    assert rotated["changed"] is True, rotated.stdout
    assert rotated["username"] == name + "_b"
    assert password not in rotated.stdout + rotated.stderr
    assert loop.failures == 0, loop.errors[:3]
    data = read_secret(pg.namespace, "db-credentials")
    assert data["username"] == name + "_b" and data["password"] != password and data["host"] == "pg"
    assert data["password"] not in rotated.stdout + rotated.stderr
    # The pods roll on a generation number, which reveals nothing of the
    # Secret (a digest of it would let a weak password be guessed offline).
    deploy = pg.json("get", "deployment", "consumer")
    secret = pg.json("get", "secret", "db-credentials")
    generation = secret["metadata"]["annotations"]["superkubernetex.com/secret-generation"]
    annotations = deploy["spec"]["template"]["metadata"]["annotations"]
    assert annotations["secret-generation.superkubernetex.com/db-credentials"] == generation == "1"
    assert "checksum/db-credentials" not in annotations
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    assert digest not in json.dumps(deploy) and data["password"] not in json.dumps(deploy)
    assert deploy["status"]["updatedReplicas"] == 2 and deploy["status"]["availableReplicas"] == 2


def test_a_rollout_that_never_becomes_ready_is_undone(pg, run_module):
    name, password = make_tenant(pg, run_module)
    pg.apply([consumer("consumer", "db-credentials", ready_if="_a")])
    pg.wait_rollout("deployment/consumer")
    before = read_secret(pg.namespace, "db-credentials")
    failed = run_module("secret_rotation", pg_args(
        pg.namespace, kind="postgres", secrets=[{"namespace": pg.namespace, "name": "db-credentials"}],
        restart=[{"namespace": pg.namespace, "name": "consumer"}], rollout_timeout=30))
    assert failed.failed, failed.stdout
    assert "previous credential is in place" in failed["msg"]
    assert read_secret(pg.namespace, "db-credentials") == before
    pg.wait_rollout("deployment/consumer")
    with PortForward(api(), pg.namespace, "pg", 5432) as pf:
        psycopg.connect(host=pf.directory, port=5432, dbname=name + "_db", user=name + "_a",
                        password=password).close()
        with psycopg.connect(host=pf.directory, port=5432, dbname="postgres", user="postgres",
                             password=SUPERUSER_PW) as conn:
            stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name + "_b",))
            assert stored.fetchone()[0] is None


def test_a_consumer_that_is_not_ready_is_refused_before_anything_changes(pg, run_module):
    name, _password = make_tenant(pg, run_module)
    pg.apply([consumer("consumer", "db-credentials", ready_if="never-matches")])
    before = read_secret(pg.namespace, "db-credentials")
    started = time.monotonic()
    refused = run_module("secret_rotation", pg_args(
        pg.namespace, kind="postgres", secrets=[{"namespace": pg.namespace, "name": "db-credentials"}],
        restart=[{"namespace": pg.namespace, "name": "consumer"}], rollout_timeout=15))
    assert refused.failed, refused.stdout
    assert "fix it before rotating" in refused["msg"] and "nothing changed" in refused["msg"]
    assert time.monotonic() - started >= 15  # it gave the Deployment the rollout timeout to settle
    assert read_secret(pg.namespace, "db-credentials") == before
    deploy = json.loads(pg.run("get", "deployment", "consumer", "-o", "json").stdout)
    assert not any(k.startswith("secret-generation.") for k in deploy["spec"]["template"]["metadata"].get("annotations", {}))


def test_redis_rotation_through_the_port_forward(ns, run_module):
    old = "tb-redis-" + uuid.uuid4().hex
    ns.apply([server_pod("redis", REDIS_IMAGE, args=["--requirepass", old], port=6379),
              secret("redis-auth", {"password": old}), consumer("frontend", "redis-auth")])
    ns.wait_pod_ready("redis", timeout=300)
    ns.wait_rollout("deployment/frontend")
    rotated = run_module("secret_rotation", dict(
        kind="redis", kubeconfig=KUBECONFIG, secrets=[{"namespace": ns.namespace, "name": "redis-auth"}],
        restart=[{"namespace": ns.namespace, "name": "frontend"}], redis=dict(namespace=ns.namespace, pod="redis"),
        rollout_timeout=180))
    assert rotated["changed"] is True, rotated.stdout
    new = read_secret(ns.namespace, "redis-auth")["password"]
    assert new != old and new not in rotated.stdout + rotated.stderr
    with PortForward(api(), ns.namespace, "redis", 6379) as pf:
        assert redis.Redis(unix_socket_path=pf.path, password=new).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(unix_socket_path=pf.path, password=old).ping()


def test_jwt_and_stripe_secrets_rotate_with_their_consumer(ns, run_module):
    ns.apply([secret("auth-jwt", {"jwks.json": json.dumps({"keys": []})}),
              secret("payment-stripe", {"secret_key": "sk_test_old", "webhook_secrets": "whsec_old\n"}),
              consumer("auth", "auth-jwt")])
    ns.wait_rollout("deployment/auth")
    common = dict(kubeconfig=KUBECONFIG, rollout_timeout=180,
                  restart=[{"namespace": ns.namespace, "name": "auth"}])
    generation = ns.json("get", "deployment", "auth")["metadata"]["generation"]
    planned = run_module("secret_rotation", dict(
        common, kind="jwt", secrets=[{"namespace": ns.namespace, "name": "auth-jwt"}]), check=True)
    assert planned["changed"] is True and len(planned["steps"]) == 3, planned.stdout
    assert read_secret(ns.namespace, "auth-jwt") == {"jwks.json": json.dumps({"keys": []})}
    assert ns.json("get", "deployment", "auth")["metadata"]["generation"] == generation  # dry run only
    for dummy in range(2):
        rotated = run_module("secret_rotation", dict(
            common, kind="jwt", secrets=[{"namespace": ns.namespace, "name": "auth-jwt"}]))
        assert rotated["changed"] is True, rotated.stdout
        assert "PRIVATE KEY" not in rotated.stdout
    data = read_secret(ns.namespace, "auth-jwt")
    kids = [k["kid"] for k in json.loads(data["jwks.json"])["keys"]]
    assert kids[-1] == data["current.kid"] == rotated["key_id"] and len(kids) == 2

    args = dict(common, kind="stripe", secrets=[{"namespace": ns.namespace, "name": "payment-stripe"}],
                stripe_secret_key="sk_test_new", stripe_webhook_secret="whsec_new")
    assert run_module("secret_rotation", args)["changed"] is True
    assert read_secret(ns.namespace, "payment-stripe") == {"secret_key": "sk_test_new",
                                                           "webhook_secrets": "whsec_new\nwhsec_old\n"}
    assert run_module("secret_rotation", args)["changed"] is False
