"""Helpers for the end-to-end tests: real HTTPS through the ingress on
127.0.0.1 (curl with --resolve, so SNI and certificate checks are real),
kubectl against the cluster, psql inside the PostgreSQL pod."""
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import time

import yaml

from lib.ansible_env import playbook_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVENTORY = os.path.join(ROOT, "inventories", "testbed", "group_vars", "all", "main.yml")
SETTINGS = yaml.safe_load(open(INVENTORY))
DOMAIN = SETTINGS["platform_domain"]
CA = os.path.expanduser(f"~/.superkubernetex/pki/{DOMAIN}/ca.crt")
KUBECTL = shutil.which("kubectl") or "/var/cache/skx-testbed/bin/kubectl"
INGRESS_ADDRESS = os.environ.get("SKX_INGRESS_ADDRESS", "127.0.0.1")

HOSTS = {
    "frontend": DOMAIN, "auth": f"auth.{DOMAIN}", "payment": f"pay.{DOMAIN}",
    "instance1": f"inst1.{DOMAIN}", "instance2": f"inst2.{DOMAIN}", "instance3": f"inst3.{DOMAIN}",
}


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def https(host, path="/", method="GET", body=None, headers=None, timeout=10):
    """One HTTPS request to host through the ingress, certificate checked against our CA."""
    cmd = ["curl", "-sS", "--max-time", str(timeout), "--cacert", CA,
           "--resolve", f"{host}:443:{INGRESS_ADDRESS}", "-X", method, "-D", "-", "-o", "-",
           f"https://{host}{path}"]
    for key, value in (headers or {}).items():
        cmd += ["-H", f"{key}: {value}"]
    data = None
    if body is not None:
        if isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
        else:
            data = json.dumps(body).encode()
            cmd += ["-H", "Content-Type: application/json"]
        cmd += ["--data-binary", "@-"]
    proc = subprocess.run(cmd, input=data, capture_output=True)
    if proc.returncode != 0:
        raise ConnectionError(f"curl {host}{path}: {proc.stderr.decode().strip()}")
    raw = proc.stdout
    head, _, payload = raw.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/") and b" 100 " in head.split(b"\r\n", 1)[0]:
        head, _, payload = payload.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Response(status, hdrs, payload.decode("utf-8", "replace"))


def kubectl(*args, check=True, input=None, timeout=120):
    proc = subprocess.run([KUBECTL, *args], capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
    return proc


def secret_data(namespace, name):
    data = json.loads(kubectl("-n", namespace, "get", "secret", name, "-o", "json").stdout)["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


# The PostgreSQL primary: whichever member holds Patroni's leader lock
# (platform_postgres_primary_selector, roles/platform/vars/main.yml).
POSTGRES_PRIMARY = "app.kubernetes.io/name=postgres,cluster-name=postgres,role=primary"


def postgres_primary(timeout=120):
    """The name of the pod Patroni labels primary (waits for one, bounded)."""
    def one():
        names = kubectl("-n", "skx-data", "get", "pod", "-l", POSTGRES_PRIMARY, "--field-selector=status.phase=Running",
                        "-o", "jsonpath={.items[*].metadata.name}", check=False).stdout.split()
        return names[0] if len(names) == 1 else None
    return wait(one, timeout=timeout, interval=1, what="one PostgreSQL primary")


def psql(sql, database="postgres", user=None, password=None, check=True, pod=None):
    """Run SQL in the PostgreSQL primary (or pod): as the superuser over the
    socket, or as user/password over TCP (so the role's real authentication
    applies)."""
    if user is None:
        args = ["psql", "-U", "postgres", "-h", "/var/run/postgresql", "-d", database, "-tAXc", sql]
        env = []
    else:
        args = ["psql", "-h", "127.0.0.1", "-U", user, "-d", database, "-tAXc", sql]
        env = ["env", f"PGPASSWORD={password}"]
    return kubectl("-n", "skx-data", "exec", pod or postgres_primary(), "-c", "postgres", "--", *env, *args,
                   check=check)


def signups(prefix, password, acked, refused, stop):
    """Signs up prefix-1@example.com, prefix-2@... through auth every 0.1 s
    until stop is set: each email goes to acked (201) or refused (any other
    answer, or no connection). Nothing is retried."""
    n = 0
    while not stop.is_set():
        n += 1
        email = f"{prefix}-{n}@example.com"
        try:
            r = https(HOSTS["auth"], "/signup", "POST", {"email": email, "password": password}, timeout=10)
            (acked if r.status == 201 else refused).append(email)
        except ConnectionError:
            refused.append(email)
        stop.wait(0.1)


def stripe_signature(payload, secret, timestamp=None):
    timestamp = int(timestamp or time.time())
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def wait(fn, timeout, interval=3, what="condition"):
    """Poll fn until it returns something true (returned), at most timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@contextlib.contextmanager
def port_forward(namespace, target, port):
    """kubectl port-forward to target's port on a free local port: yields its URL."""
    proc = subprocess.Popen([KUBECTL, "-n", namespace, "port-forward", target, f":{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert found, f"port-forward {namespace}/{target}: {line}{proc.stderr.read() if proc.poll() is not None else ''}"
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        proc.terminate()
        proc.wait(10)


def site(*extra):
    """site.yml on the testbed inventory with extra arguments; asserts it
    succeeded, prints its time and recap. Returns (its stdout and stderr with
    whitespace folded, so a wrapped warning reads as one line; the recap line)."""
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    started = time.monotonic()
    proc = subprocess.run([playbook, "site.yml", "-i", "inventories/testbed", *extra], cwd=ROOT, env=playbook_env(),
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    recap = next(line for line in proc.stdout.splitlines() if line.startswith("localhost "))
    print(f"site.yml {' '.join(extra)}: {time.monotonic() - started:.0f} s, {recap.split(':', 1)[1].strip()}")
    return " ".join((proc.stdout + proc.stderr).split()), recap
