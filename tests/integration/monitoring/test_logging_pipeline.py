"""The log pipeline end to end, without a cluster: the real vlagent
(Kubernetes collector) and the real VictoriaLogs, built from their Go
modules, run on loopback with the arguments of the rendered manifests. A
small stand-in for the Kubernetes API lists the pods of one node; their log
files are written in the CRI format the container runtime uses. A line
logged by instance2 must be found by its instance label, and never returned
by a query scoped to instance1."""
import datetime
import http.server
import json
import os
import socket
import subprocess
import threading
import time
import uuid

import pytest
import requests

from lib.monitoring_support import container_args, replace_flags, wait_http

INSTANCE_LABEL = "app.kubernetes.io/instance"
INSTANCE_FIELD = f"kubernetes.pod_labels.{INSTANCE_LABEL}"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pod(name, namespace, tenant, cid):
    return {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "10",
                     "labels": {"app.kubernetes.io/name": "instance", INSTANCE_LABEL: tenant}},
        "spec": {"nodeName": "node1", "containers": [{"name": "app"}]},
        "status": {"podIP": "10.42.0.10", "containerStatuses": [{"name": "app", "containerID": f"containerd://{cid}"}]},
    }


PODS = [_pod("instance-aaa", "skx-instance1", "instance1", "a" * 64),
        _pod("instance-bbb", "skx-instance2", "instance2", "b" * 64)]


class _FakeKubeAPI(http.server.BaseHTTPRequestHandler):
    """Just what vlagent reads: nodes, namespaces, the node's pods, a watch
    that stays open without events."""
    stop = threading.Event()

    def _json(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        path, _, query = self.path.partition("?")
        if path == "/api/v1/nodes":
            return self._json({"items": [{"metadata": {"name": "node1"}}]})
        if path == "/api/v1/nodes/node1":
            return self._json({"metadata": {"name": "node1"}})
        if path == "/api/v1/namespaces":
            return self._json({"items": [{"metadata": {"name": p["metadata"]["namespace"]}} for p in PODS]})
        if path == "/api/v1/pods" and "watch=true" not in query:
            return self._json({"items": PODS, "metadata": {"resourceVersion": "10"}})
        if path == "/api/v1/pods":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.flush()
            self.stop.wait(120)
            return None
        self.send_response(404)
        self.end_headers()
        return None

    def log_message(self, *args):
        pass


def _cri(line, ts=None):
    ts = ts or datetime.datetime.now(datetime.timezone.utc)
    return f"{ts.strftime('%Y-%m-%dT%H:%M:%S.%fZ')} stdout F {line}\n"


def _log_path(logs_dir, pod):
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    return os.path.join(logs_dir, f"{pod['metadata']['name']}_{pod['metadata']['namespace']}_app-{cid}.log")


@pytest.fixture(scope="module")
def pipeline(rendered, tools, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("logs")
    procs = []
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeKubeAPI)
    api.daemon_threads = True
    threading.Thread(target=api.serve_forever, daemon=True).start()
    store_port, agent_port = _free_port(), _free_port()
    store = f"http://127.0.0.1:{store_port}"
    logs_dir = tmp / "containers"
    logs_dir.mkdir()
    for pod in PODS:
        with open(_log_path(str(logs_dir), pod), "w") as f:
            f.write(_cri(json.dumps({"msg": f"{pod['metadata']['name']} started", "level": "info"})))
    (tmp / "kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{api.server_address[1]}"}}],
        "users": [{"name": "fake", "user": {"token": "fake-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(KUBECONFIG=str(tmp / "kubeconfig"), HOSTNAME="vlagent-test")
    store_args = replace_flags(container_args(rendered, "victoria-logs-statefulset.yaml"),
                               storageDataPath=tmp / "storage", httpListenAddr=f"127.0.0.1:{store_port}")
    agent_args = replace_flags(container_args(rendered, "vlagent-daemonset.yaml"),
                               **{"kubernetesCollector.logsPath": logs_dir,
                                  "remoteWrite.url": f"{store}/insert/native",
                                  "tmpDataPath": tmp / "vlagent",
                                  "httpListenAddr": f"127.0.0.1:{agent_port}"})
    try:
        for name, binary, args in (("store", tools["victoria-logs"], store_args),
                                   ("agent", tools["vlagent"], agent_args)):
            log = tmp / f"{name}.log"
            procs.append(subprocess.Popen([binary, *args], env=env, stdout=open(log, "w"),
                                          stderr=subprocess.STDOUT))
            port = store_port if name == "store" else agent_port
            wait_http(f"http://127.0.0.1:{port}/health", procs[-1], log)
        yield {"store": store, "logs_dir": str(logs_dir), "store_args": store_args, "tmp": tmp}
    finally:
        _FakeKubeAPI.stop.set()
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        api.shutdown()


def query(store, logsql):
    resp = requests.get(f"{store}/select/logsql/query", params={"query": logsql}, timeout=10)
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def _wait_for(store, logsql, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = query(store, logsql)
        if rows:
            return rows
        time.sleep(1)
    return []


def test_a_line_from_instance2_is_found_by_its_instance_and_not_under_instance1(pipeline):
    store = pipeline["store"]
    marker = f"order-{uuid.uuid4().hex}"
    with open(_log_path(pipeline["logs_dir"], PODS[1]), "a") as f:
        f.write(_cri(json.dumps({"msg": f"payment accepted {marker}", "level": "info"})))
    rows = _wait_for(store, f'"{INSTANCE_FIELD}":="instance2" AND "{marker}"')
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["_msg"] == f"payment accepted {marker}"
    assert row[INSTANCE_FIELD] == "instance2"
    assert row["kubernetes.pod_namespace"] == "skx-instance2"
    assert row["kubernetes.pod_name"] == "instance-bbb"
    assert row["kubernetes.container_name"] == "app"
    # The instance is a stream field: indexed, and filterable as a stream.
    assert f'{INSTANCE_FIELD}="instance2"' in row["_stream"]
    assert len(query(store, f'{{"{INSTANCE_FIELD}"="instance2"}} AND "{marker}"')) == 1
    # Scoped to instance1, the same search finds nothing...
    assert query(store, f'"{INSTANCE_FIELD}":="instance1" AND "{marker}"') == []
    assert query(store, f'{{"{INSTANCE_FIELD}"="instance1"}} AND "{marker}"') == []
    # ...while instance1's own lines are there (the scope is not just empty).
    own = _wait_for(store, f'"{INSTANCE_FIELD}":="instance1"')
    assert own and all(r["kubernetes.pod_namespace"] == "skx-instance1" for r in own)


def test_the_store_keeps_seven_days_only(pipeline):
    assert "-retentionPeriod=7d" in pipeline["store_args"]
    store = pipeline["store"]
    marker = uuid.uuid4().hex
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [json.dumps({"_msg": f"{age}d {marker}", "_time": (now - datetime.timedelta(days=age)).isoformat(),
                         "kubernetes.pod_namespace": "skx-instance3"}) for age in (6, 8)]
    resp = requests.post(f"{store}/insert/jsonline", params={"_stream_fields": "kubernetes.pod_namespace"},
                         data="\n".join(lines) + "\n", timeout=10)
    assert resp.status_code == 200, resp.text
    requests.get(f"{store}/internal/force_flush", timeout=10)
    rows = _wait_for(store, f'"{marker}" _time:10d')
    assert [r["_msg"] for r in rows] == [f"6d {marker}"]
