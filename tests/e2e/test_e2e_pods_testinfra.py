"""Inside the running pods, with pytest-testinfra's kubectl backend (issue 19):
what each web service's container runs as, what it may write, which Secret
files it holds, and which sockets it listens on. The manifests say it
(tests/static); this checks what the kubelet and the runtime made of them:
the Stripe key file only in payment, the JWT private key only in auth, a
tenant's database credentials only in that tenant's pod."""
import json
import os

import pytest
import testinfra

from e2e_support import kubectl

TESTBED_KUBECTL_DIR = "/var/cache/skx-testbed/bin"
SECRETS_DIR = "/var/run/secrets/superkubernetex"
APP_PORT, OPS_PORT = 8080, 9090
# (namespace, app.kubernetes.io/name): the Secrets its pod mounts, and no other.
WEB = {
    ("skx-app", "frontend"): {"redis-auth"},
    ("skx-app", "auth"): {"auth-db", "auth-jwt"},
    ("skx-app", "payment"): {"payment-db", "payment-stripe"},
    ("skx-instance1", "instance"): {"db-credentials"},
    ("skx-instance2", "instance"): {"db-credentials"},
    ("skx-instance3", "instance"): {"db-credentials"},
}


@pytest.fixture(scope="module", autouse=True)
def testbed_kubectl():
    """testinfra runs `kubectl` from PATH: the testbed's own, which matches
    its API server, when it is there."""
    saved = os.environ["PATH"]
    if os.path.isdir(TESTBED_KUBECTL_DIR):
        os.environ["PATH"] = f"{TESTBED_KUBECTL_DIR}:{saved}"
    yield
    os.environ["PATH"] = saved


def pod_host(namespace, name):
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-l", f"app.kubernetes.io/name={name}",
                              "--field-selector=status.phase=Running", "-o", "json").stdout)["items"]
    assert pods, f"no running {name} pod in {namespace}"
    pod = pods[0]["metadata"]["name"]
    kubeconfig = os.environ.get("KUBECONFIG", "/var/lib/skx-testbed/admin.kubeconfig")
    return testinfra.get_host(f"kubectl://{pod}?container={name}&namespace={namespace}&kubeconfig={kubeconfig}")


def listening_ports(host):
    """TCP ports in LISTEN state, from /proc/net/tcp and tcp6 (the images
    carry no ss or netstat)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not host.file(table).exists:
            continue
        for line in host.file(table).content_string.splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.parametrize("namespace, name", sorted(WEB), ids=[f"{ns}/{n}" for ns, n in sorted(WEB)])
def test_each_web_pod_runs_unprivileged_read_only_with_its_own_secrets_only(namespace, name):
    host = pod_host(namespace, name)
    # The main process: not root, and no capability left.
    status = dict(line.split(":", 1) for line in host.file("/proc/1/status").content_string.splitlines()
                  if ":" in line)
    uids = {int(u) for u in status["Uid"].split()}
    assert 0 not in uids and min(uids) >= 10000, status["Uid"]
    assert int(status["CapEff"].strip(), 16) == 0, status["CapEff"]
    assert status["NoNewPrivs"].strip() == "1"
    # A read-only root filesystem: only /tmp (an emptyDir) takes a file.
    assert host.run("touch /probe-file").rc != 0
    assert host.run("touch /tmp/probe-file && rm /tmp/probe-file").rc == 0
    # Exactly its Secrets, as files it may read and not write.
    mounted = set(host.file(SECRETS_DIR).listdir())
    assert mounted == WEB[(namespace, name)]
    for secret in mounted:
        assert host.run(f"touch {SECRETS_DIR}/{secret}/probe").rc != 0
    # The application port and the operations port, and nothing else.
    assert listening_ports(host) == {APP_PORT, OPS_PORT}


def test_the_signing_and_payment_keys_live_in_one_pod_each():
    auth, payment = pod_host("skx-app", "auth"), pod_host("skx-app", "payment")
    frontend = pod_host("skx-app", "frontend")
    jwt_files = set(auth.file(f"{SECRETS_DIR}/auth-jwt").listdir())
    stripe_files = set(payment.file(f"{SECRETS_DIR}/payment-stripe").listdir())
    assert any(f.endswith(".pem") for f in jwt_files), jwt_files
    assert stripe_files, "payment mounts no Stripe key"
    for host in (payment, frontend):
        assert not host.file(f"{SECRETS_DIR}/auth-jwt").exists
    for host in (auth, frontend):
        assert not host.file(f"{SECRETS_DIR}/payment-stripe").exists
