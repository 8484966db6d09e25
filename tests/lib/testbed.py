"""What the testbed tests share: where the testbed lives, a kubectl wrapper
(Kube), a bounded wait (eventually) and small manifests (deployment, service,
pod). The fixtures and the skip rule are in tests/testbed/conftest.py."""
import json
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("SKX_CACHE", "/var/cache/skx-testbed")
STATE = os.environ.get("SKX_STATE", "/var/lib/skx-testbed")
KUBECTL = os.environ.get("SKX_KUBECTL", os.path.join(CACHE, "bin", "kubectl"))
KUBECONFIG = os.environ.get("SKX_KUBECONFIG", os.path.join(STATE, "admin.kubeconfig"))



def _platform_default(name):
    """A plain setting of roles/platform/defaults/main.yml (the images' registry, version)."""
    with open(os.path.join(ROOT, "roles", "platform", "defaults", "main.yml")) as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip().strip('"')
    raise KeyError(name)


# Images built by testbed/images (defs/*.sh); nothing is pulled. The
# toolbox, PostgreSQL and the reference apps' image are the collection's own
# (images/toolbox/Dockerfile, images/postgres/Dockerfile, apps/Dockerfile);
# test pods run python3 from the latter (their command replaces its
# entrypoint).
_OWN = f"{_platform_default('platform_registry')}/{{}}:{_platform_default('platform_images_version')}"
PYTHON_IMAGE = _OWN.format("frontend")
TOOLBOX_IMAGE = _OWN.format("toolbox")
PG_IMAGE = _OWN.format("postgres")
BUSYBOX_IMAGE = "docker.io/library/busybox:1.35.0"

# A tiny HTTP server that answers with the pod's host name.
HTTP_SERVER = (
    "import http.server, socket\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = ('hello from ' + socket.gethostname()).encode()\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Type', 'text/plain')\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "http.server.ThreadingHTTPServer(('', 8080), H).serve_forever()\n"
)


def testbed_running():
    if not (os.path.exists(KUBECONFIG) and os.path.exists(KUBECTL)):
        return False
    r = subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, "get", "--raw", "/readyz"],
                       capture_output=True, text=True, timeout=30)
    return r.returncode == 0


class Kube:
    def __init__(self, namespace=None):
        self.namespace = namespace

    def run(self, *args, input=None, check=True, timeout=120, namespaced=True):
        cmd = [KUBECTL, "--kubeconfig", KUBECONFIG]
        if namespaced and self.namespace:
            cmd += ["-n", self.namespace]
        cmd += list(args)
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def out(self, *args, **kw):
        return self.run(*args, **kw).stdout

    def json(self, *args, **kw):
        return json.loads(self.out(*args, "-o", "json", **kw))

    def apply(self, manifest):
        if not isinstance(manifest, str):
            manifest = "\n---\n".join(json.dumps(m) for m in manifest)
        return self.run("apply", "-f", "-", input=manifest)

    def wait_rollout(self, kind_name, timeout=180):
        self.run("rollout", "status", kind_name, f"--timeout={timeout}s", timeout=timeout + 30)

    def wait_pod_ready(self, name, timeout=180):
        self.run("wait", "--for=condition=Ready", f"pod/{name}", f"--timeout={timeout}s", timeout=timeout + 30)

    def exec(self, pod, *cmd, check=True, timeout=60):
        return self.run("exec", pod, "--", *cmd, check=check, timeout=timeout)


def eventually(fn, timeout=60, interval=2, what="condition"):
    """Call fn until it returns a truthy value; return it, or fail after timeout."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
            last = v
        except (AssertionError, subprocess.SubprocessError, OSError, ValueError, KeyError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def deployment(name, image, command, replicas=1, port=8080, labels=None, resources=None):
    labels = labels or {"app": name}
    container = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", "command": command}
    if port:
        container["ports"] = [{"containerPort": port}]
        container["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 1}
    if resources:
        container["resources"] = resources
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}},
        },
    }


def service(name, port=80, target=8080, selector=None):
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": selector or {"app": name},
                 "ports": [{"port": port, "targetPort": target, "protocol": "TCP"}]},
    }


def pod(name, image, command, labels=None, volumes=None, mounts=None):
    c = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", "command": command}
    if mounts:
        c["volumeMounts"] = mounts
    spec = {"terminationGracePeriodSeconds": 1, "containers": [c]}
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": name}}, "spec": spec}
