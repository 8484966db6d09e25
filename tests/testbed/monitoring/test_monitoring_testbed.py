"""The rendered scrape configuration against the real testbed cluster.

The Prometheus we ship (built from its Go module with Kubernetes service discovery,
as the production image has it) runs on this machine with the rendered
prometheus.yml, reaching the testbed's API server with the admin kubeconfig
instead of a service account. A throwaway tenant namespace holds one pod that
serves app-shaped metrics. Checked: the pod is discovered through its
annotations and labelled instance=<tenant>, the kubelet and cAdvisor answer
through the API server proxy, and cAdvisor series of the tenant namespace
carry instance=<tenant> too.

Runs, like the rest of tests/testbed, when KUBECONFIG names the testbed's
kubeconfig (tests/run adds the testbed suites then); skipped otherwise, or
when the cluster does not answer. SKX_TESTBED_REQUIRED=1 makes a skip a failure.
"""
import base64
import os
import re
import socket
import subprocess
import time
import uuid

import pytest
import requests
import yaml

from lib.monitoring_support import (configmap_data, container_args, render, replace_flags,
                                    wait_http)

KUBECONFIG = os.environ.get("KUBECONFIG", "")
TENANT = "obs" + uuid.uuid4().hex[:6]
NAMESPACE = f"skx-{TENANT}"
BUSYBOX = "docker.io/library/busybox:1.35.0"


def _kubectl(*args, **kw):
    kubectl = "/var/cache/skx-testbed/bin/kubectl"
    kubectl = kubectl if os.path.exists(kubectl) else "kubectl"
    return subprocess.run([kubectl, f"--kubeconfig={KUBECONFIG}", *args], capture_output=True,
                          text=True, timeout=120, **kw)


def _testbed_up():
    if not KUBECONFIG or not os.path.exists(KUBECONFIG):
        return False
    return _kubectl("get", "--raw", "/readyz").returncode == 0


pytestmark = pytest.mark.skipif(
    not _testbed_up() and os.environ.get("SKX_TESTBED_REQUIRED") != "1",
    reason="no testbed: set KUBECONFIG after testbed/up; SKX_TESTBED_REQUIRED=1 makes this a failure")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


POD = f"""
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: {NAMESPACE}
  labels: {{app.kubernetes.io/name: instance, app.kubernetes.io/instance: {TENANT}}}
  annotations: {{prometheus.io/scrape: "true", prometheus.io/port: "8080", prometheus.io/path: /metrics}}
spec:
  automountServiceAccountToken: false
  securityContext: {{runAsNonRoot: true, runAsUser: 65534, seccompProfile: {{type: RuntimeDefault}}}}
  containers:
    - name: app
      image: {BUSYBOX}
      imagePullPolicy: IfNotPresent
      command: [sh, -c]
      args:
        - printf '%s\\n'
          'http_requests_total{{service="instance",instance="{TENANT}",route="/",code="200"}} 7'
          > /www/metrics && exec busybox httpd -f -p 8080 -h /www
      ports: [{{containerPort: 8080}}]
      resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{cpu: 100m, memory: 32Mi}}}}
      securityContext: {{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {{drop: [ALL]}}}}
      volumeMounts: [{{name: www, mountPath: /www}}]
  volumes: [{{name: www, emptyDir: {{}}}}]
"""


def _out_of_cluster(config, tmp):
    """In-cluster service-account access becomes the admin kubeconfig."""
    with open(KUBECONFIG) as f:
        kube = yaml.safe_load(f)
    cluster, user = kube["clusters"][0]["cluster"], kube["users"][0]["user"]
    for key, name in (("certificate-authority-data", "ca.crt"), ("client-certificate-data", "client.crt"),
                      ("client-key-data", "client.key")):
        source = cluster if key.startswith("certificate-authority") else user
        (tmp / name).write_bytes(base64.b64decode(source[key]))
    server = cluster["server"].split("//", 1)[1]
    config["global"]["scrape_interval"] = "2s"
    config["global"]["evaluation_interval"] = "2s"
    config["global"]["scrape_timeout"] = "2s"
    config["rule_files"] = []
    for job in config["scrape_configs"]:
        for sd in job.get("kubernetes_sd_configs", []):
            sd["kubeconfig_file"] = KUBECONFIG
        if job["job_name"] in ("kubelet", "cadvisor"):
            job["tls_config"] = {"ca_file": str(tmp / "ca.crt"), "cert_file": str(tmp / "client.crt"),
                                 "key_file": str(tmp / "client.key")}
            job.pop("authorization")
            for rule in job["relabel_configs"]:
                if rule.get("replacement") == "kubernetes.default.svc:443":
                    rule["replacement"] = server
    return config


@pytest.fixture(scope="module")
def testbed_prometheus(tmp_path_factory, tools):
    binary = tools["prometheus"]
    tmp = tmp_path_factory.mktemp("testbed")
    out = render(str(tmp / "render"), "--tags", "monitoring_prometheus",
                 "-e", '{"platform_instances": [{"name": "%s"}]}' % TENANT)
    config = yaml.safe_load(configmap_data(out, "monitoring", "prometheus-config.yaml", "prometheus.yml"))
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(_out_of_cluster(config, tmp)))
    port = _free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "log", "w"))
    try:
        yield f"http://127.0.0.1:{port}", tmp
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def tenant_pod():
    created = _kubectl("create", "namespace", NAMESPACE)
    assert created.returncode == 0, created.stderr
    try:
        applied = _kubectl("apply", "-f", "-", input=POD)
        assert applied.returncode == 0, applied.stderr
        ready = _kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "pod/app", "--timeout=90s")
        assert ready.returncode == 0, ready.stderr + _kubectl("-n", NAMESPACE, "describe", "pod", "app").stdout[-2000:]
        yield NAMESPACE
    finally:
        _kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def _poll(url, query, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
            if result:
                return result
        except requests.ConnectionError:
            pass
        time.sleep(2)
    return []


def test_kubelet_and_cadvisor_answer_through_the_api_server_proxy(testbed_prometheus):
    url, tmp = testbed_prometheus
    for job in ("kubelet", "cadvisor"):
        assert _poll(url, f'up{{job="{job}"}} == 1'), f"{job} down: " + (tmp / "log").read_text()[-2000:]
    nodes = _kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    up = _poll(url, 'up{job="cadvisor"}')
    assert sorted(s["metric"]["instance"] for s in up) == sorted(nodes)


def test_a_tenant_pod_is_discovered_by_annotation_and_labelled_with_its_instance(testbed_prometheus, tenant_pod):
    url, tmp = testbed_prometheus
    up = _poll(url, f'up{{job="kubernetes-pods", namespace="{NAMESPACE}"}} == 1')
    assert up, (tmp / "log").read_text()[-3000:]
    labels = up[0]["metric"]
    assert labels["instance"] == TENANT and labels["pod"] == "app" and labels["service"] == "instance"
    assert _poll(url, f'http_requests_total{{instance="{TENANT}", service="instance", namespace="{NAMESPACE}"}}')
    # cAdvisor series of the tenant's containers carry the tenant too.
    cpu = _poll(url, f'container_cpu_usage_seconds_total{{job="cadvisor", namespace="{NAMESPACE}"}}')
    assert cpu and all(s["metric"]["instance"] == TENANT for s in cpu)


# --- logs: the real collector on the testbed node, the real store -----------

def _log_pod(namespace, tenant, marker):
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: {namespace}
  labels: {{app.kubernetes.io/name: instance, app.kubernetes.io/instance: {tenant}}}
spec:
  automountServiceAccountToken: false
  securityContext: {{runAsNonRoot: true, runAsUser: 65534, seccompProfile: {{type: RuntimeDefault}}}}
  containers:
    - name: app
      image: {BUSYBOX}
      imagePullPolicy: IfNotPresent
      command: [sh, -c, 'echo "order {marker} accepted for {tenant}"; exec sleep 3600']
      resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{cpu: 100m, memory: 32Mi}}}}
      securityContext: {{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {{drop: [ALL]}}}}
"""


@pytest.fixture(scope="module")
def testbed_logs(rendered, tools, tmp_path_factory):
    """VictoriaLogs on loopback and vlagent on this machine (the testbed's
    node), both with the rendered arguments; vlagent reads the node's real
    /var/log/containers and finds the pods through the API (kubeconfig)."""
    tmp = tmp_path_factory.mktemp("testbed-logs")
    store_port, agent_port = _free_port(), _free_port()
    store = f"http://127.0.0.1:{store_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(KUBECONFIG=KUBECONFIG, HOSTNAME="vlagent-testbed-check")
    store_args = replace_flags(container_args(rendered, "victoria-logs-statefulset.yaml"),
                               storageDataPath=tmp / "storage", httpListenAddr=f"127.0.0.1:{store_port}")
    agent_args = replace_flags(container_args(rendered, "vlagent-daemonset.yaml"),
                               **{"remoteWrite.url": f"{store}/insert/native", "tmpDataPath": tmp / "vlagent",
                                  "httpListenAddr": f"127.0.0.1:{agent_port}"})
    assert "-kubernetesCollector.logsPath=/var/log/containers" in agent_args
    procs = []
    try:
        for name, binary, args, port in (("store", tools["victoria-logs"], store_args, store_port),
                                         ("agent", tools["vlagent"], agent_args, agent_port)):
            log = tmp / f"{name}.log"
            procs.append(subprocess.Popen([binary, *args], env=env, stdout=open(log, "w"),
                                          stderr=subprocess.STDOUT))
            wait_http(f"http://127.0.0.1:{port}/health", procs[-1], log)
        yield store, tmp
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def test_a_line_logged_by_instance2_on_the_testbed_is_found_by_its_instance_only(testbed_logs):
    from test_logging_pipeline import INSTANCE_FIELD, _wait_for, query

    store, tmp = testbed_logs
    tag = uuid.uuid4().hex[:6]
    tenants = {"one": f"obsa{tag}", "two": f"obsb{tag}"}
    markers = {key: uuid.uuid4().hex for key in tenants}
    try:
        for key, tenant in tenants.items():
            namespace = f"skx-{tenant}"
            assert _kubectl("create", "namespace", namespace).returncode == 0
            applied = _kubectl("apply", "-f", "-", input=_log_pod(namespace, tenant, markers[key]))
            assert applied.returncode == 0, applied.stderr
        for tenant in tenants.values():
            ready = _kubectl("-n", f"skx-{tenant}", "wait", "--for=condition=Ready", "pod/app", "--timeout=90s")
            assert ready.returncode == 0, ready.stderr
        two = tenants["two"]
        rows = _wait_for(store, f'"{INSTANCE_FIELD}":="{two}" AND "{markers["two"]}"', timeout=90)
        assert len(rows) == 1, (tmp / "agent.log").read_text()[-3000:]
        assert rows[0]["_msg"] == f"order {markers['two']} accepted for {two}"
        assert rows[0]["kubernetes.pod_namespace"] == f"skx-{two}"
        assert rows[0]["kubernetes.container_name"] == "app"
        # Scoped to the other tenant, the line is not there; that tenant's own line is.
        one = tenants["one"]
        assert query(store, f'"{INSTANCE_FIELD}":="{one}" AND "{markers["two"]}"') == []
        assert _wait_for(store, f'"{INSTANCE_FIELD}":="{one}" AND "{markers["one"]}"', timeout=60)
    finally:
        for tenant in tenants.values():
            _kubectl("delete", "namespace", f"skx-{tenant}", "--wait=false")
