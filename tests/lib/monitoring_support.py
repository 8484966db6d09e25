"""Fixtures and helpers of the observability tests (static, integration,
testbed and e2e): rendered manifests, built tools, the alert sinks. The
render playbook, its inventory and the tool builder live in lib/monitoring/."""
import functools
import http.server
import json
import os
import re
import shutil
import socketserver
import subprocess
import threading
import time

import pytest
import yaml

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monitoring")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(DATA_DIR)))
INSTALL_TOOLS = os.path.join(DATA_DIR, "install-tools.sh")
BIN = os.environ.get("SKX_BIN", "/var/cache/skx/bin")
RULES = os.path.join(ROOT, "roles", "monitoring", "files", "rules", "skx-alerts.yml")
FAKE_SECRETS = ("fake-smtp-secret-4f1c", "fake-slack-secret-9a2b",
                "fake-deadman-secret-7d3e", "fake-grafana-secret-1b8f", "fake-deadman-url-5c2a")


def _ensure_collection_link():
    parent = os.path.join(ROOT, ".collections", "ansible_collections", "superkubernetex")
    link = os.path.join(parent, "platform")
    if not os.path.exists(link):
        os.makedirs(parent, exist_ok=True)
        os.symlink("../../..", link)


def render(outdir, *extra_args, check=True):
    """Run tests/lib/monitoring/render.yml in render mode into outdir."""
    _ensure_collection_link()
    ansible = os.path.join(ROOT, ".venv", "bin", "ansible-playbook")
    if not os.path.exists(ansible):
        ansible = shutil.which("ansible-playbook")
    proc = subprocess.run(
        [ansible, os.path.join(DATA_DIR, "render.yml"), "-i", os.path.join(DATA_DIR, "inventory.yml"),
         "-e", f"platform_render_dir={outdir}",
         # Check the settings of the two roles rendered here only.
         "-e", '{"platform_roles": ["monitoring", "logging"]}', *extra_args],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    if not check:
        return proc
    assert proc.returncode == 0, f"render failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    return outdir


def relabel(labels, rules):
    """Prometheus' relabelling (replace, keep, drop, the defaults of each
    field); None when the target or series is dropped."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(labels.get(n, "") for n in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            replacement = re.sub(r"\$(\d+)|\$\{(\d+)\}", lambda m: match.group(int(m.group(1) or m.group(2))) or "",
                                 str(rule.get("replacement", "$1")))
            if replacement:
                labels[rule["target_label"]] = replacement
            else:
                labels.pop(rule["target_label"], None)
    return labels


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


# The fixtures below are imported by the conftest.py of each folder that
# uses them (static, integration and testbed monitoring): a session there
# renders each variant once, whichever folders it collects.
_RENDERS = {}


def _render_once(name, tmp_path_factory, *extra_args):
    if name not in _RENDERS:
        _RENDERS[name] = render(str(tmp_path_factory.mktemp(name)), *extra_args)
    return _RENDERS[name]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    """Manifests rendered with every receiver configured (fake secrets)."""
    return _render_once("render-full", tmp_path_factory,
                        "-e", f"@{os.path.join(DATA_DIR, 'receivers.vars.yml')}")


@pytest.fixture(scope="session")
def rendered_defaults(tmp_path_factory):
    """The Alertmanager, Grafana and network manifests, rendered with the
    role defaults and Grafana disabled (as on the testbed)."""
    return _render_once("render-defaults", tmp_path_factory,
                        "--tags", "monitoring_alertmanager,monitoring_grafana,monitoring_network",
                        "-e", "monitoring_grafana_enabled=false")


def configmap_data(outdir, component, filename, key):
    for doc in load_docs(os.path.join(outdir, component, filename)):
        if doc["kind"] == "ConfigMap":
            return doc["data"][key]
    raise AssertionError(f"no ConfigMap in {filename}")


BUILT_TOOLS = ("promtool", "prometheus", "amtool", "alertmanager", "pushgateway", "victoria-logs", "vlagent")


@functools.lru_cache(maxsize=None)
def built_tools():
    """The observability binaries at the versions production ships
    (testbed/versions.env), built from their Go modules into
    /var/cache/skx/bin by install-tools.sh: a present binary of the right
    version is kept, so this is quick after the first run."""
    proc = subprocess.run(["bash", INSTALL_TOOLS], capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, f"install-tools.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return {n: os.path.join(BIN, n) for n in BUILT_TOOLS}


@pytest.fixture(scope="session")
def tools():
    return built_tools()


def container_args(rendered, filename):
    """The arguments of the first container of a rendered logging workload."""
    doc = load_docs(os.path.join(rendered, "logging", filename))[0]
    return doc["spec"]["template"]["spec"]["containers"][0]["args"]


def replace_flags(args, **values):
    """Swap the in-cluster value of the named flags (-flag=value)."""
    out = []
    for arg in args:
        name = arg.split("=", 1)[0].lstrip("-")
        out.append(f"-{name}={values.pop(name)}" if name in values else arg)
    assert not values, f"flags not in the manifest: {values}"
    return out


def wait_http(url, proc, log, timeout=60):
    """Wait for url to answer 200, failing with the log of proc if it exits."""
    import requests
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, open(log).read()[-3000:]
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def wait_ready(url, proc, log_path, what, timeout=60):
    """Wait for a Prometheus-family server's /-/ready, failing with its log if it exits."""
    import requests
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert proc.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, f"{what} did not become ready"
        time.sleep(0.3)


class WebhookSink(http.server.BaseHTTPRequestHandler):
    """A Slack-compatible (any JSON webhook) sink: keeps every POST."""
    received = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append({"path": self.path, "auth": self.headers.get("Authorization"),
                              "json": json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class SMTPSink(socketserver.StreamRequestHandler):
    """The few SMTP verbs Alertmanager speaks, without STARTTLS or AUTH."""
    mails = []

    def _say(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self._say("220 sink ESMTP")
        mail = {"rcpt": [], "data": ""}
        while True:
            line = self.rfile.readline().decode()
            if not line:
                return
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                self._say("250 sink")
            elif verb == "MAIL":
                mail = {"from": line.strip(), "rcpt": [], "data": ""}
                self._say("250 ok")
            elif verb == "RCPT":
                mail["rcpt"].append(line.split(":", 1)[1].strip().strip("<>"))
                self._say("250 ok")
            elif verb == "DATA":
                self._say("354 go on")
                lines = []
                while (data := self.rfile.readline().decode()) not in (".\r\n", ""):
                    lines.append(data)
                mail["data"] = "".join(lines)
                self.mails.append(mail)
                self._say("250 queued")
            elif verb == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("250 ok")


def start_sinks(host, webhook_port, smtp_port, webhook=WebhookSink, smtp=SMTPSink):
    """Serve the webhook and SMTP sinks on host (port 0: any free port), in threads."""
    hooks = http.server.ThreadingHTTPServer((host, webhook_port), webhook)
    mail = socketserver.ThreadingTCPServer((host, smtp_port), smtp)
    mail.daemon_threads = True
    for server in (hooks, mail):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return hooks, mail
