"""Dashboards as code: the committed JSON is what the generator writes, the
role provisions it with the tenants filled in, and every panel's query runs
on a real Prometheus (the version platform_images.prometheus ships) that
scrapes series named and labelled like the platform's, and returns data."""
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest
import requests
import yaml

import dashboards
from lib.monitoring_support import RULES, configmap_data, wait_ready

TENANTS = ["instance1", "instance2", "instance3"]


def test_committed_dashboards_match_the_generator():
    for name, text in dashboards.render().items():
        with open(os.path.join(dashboards.OUT, name)) as f:
            assert f.read() == text, f"{name} is stale: run python3 roles/monitoring/files/dashboards.py"


def _panels():
    for name, text in dashboards.render().items():
        for panel in json.loads(text)["panels"]:
            yield name, panel


def test_required_dashboards_exist():
    titles = {(n, p["title"]) for n, p in _panels()}
    for required in [("skx-overview.json", "CPU per instance"),
                     ("skx-overview.json", "HTTP requests per service"),
                     ("skx-overview.json", "Response time per instance (p50, p95, p99)"),
                     ("skx-kubernetes.json", "Pods per phase"),
                     ("skx-kubernetes.json", "Container restarts (1h)"),
                     ("skx-data.json", "PostgreSQL database sizes"),
                     ("skx-data.json", "PostgreSQL members: role, synchronous standby, timeline, lag"),
                     ("skx-data.json", "PostgreSQL replication lag per replica"),
                     ("skx-data.json", "Backups: last run per database and kind"),
                     ("skx-overview.json", "Backups: last run per database and kind")]:
        assert required in titles
    instance = json.loads(dashboards.render()["skx-instance.json"])
    assert [v["name"] for v in instance["templating"]["list"]] == ["instance"]


def test_provisioned_dashboards_offer_the_platform_instances(rendered):
    text = configmap_data(rendered, "monitoring", "grafana-dashboards.yaml", "skx-instance.json")
    board = json.loads(text)
    assert board["templating"]["list"][0]["query"] == ",".join(TENANTS)
    assert "__SKX_" not in text
    assert '"kubernetes.pod_namespace\\":=\\"skx-${instance}\\""' in text


def test_datasources_point_at_prometheus_and_the_log_store(rendered):
    sources = yaml.safe_load(configmap_data(rendered, "monitoring", "grafana-provisioning.yaml",
                                            "datasources.yaml"))["datasources"]
    by_uid = {s["uid"]: s for s in sources}
    assert by_uid["prometheus"]["url"] == "http://prometheus.skx-monitoring.svc:9090"
    assert by_uid["logs"]["url"] == "http://victoria-logs.skx-logging.svc:9428"
    assert by_uid["logs"]["type"] == "victoriametrics-logs-datasource"
    used = {t["datasource"]["uid"] for _, p in _panels() for t in p["targets"]}
    assert used <= set(by_uid)


# --- a real Prometheus scraping platform-shaped series -----------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Exporter(http.server.BaseHTTPRequestHandler):
    """Series named and labelled as the scrape config produces them
    (instance = tenant). Counters grow with time so rates are non-zero."""
    start = time.time()

    def do_GET(self):  # noqa: N802
        t = time.time() - self.start + 1
        lines = []
        for i, tenant in enumerate(TENANTS, 1):
            ns, pod = f"skx-{tenant}", f"instance-{i}"
            base = f'namespace="{ns}",instance="{tenant}",pod="{pod}"'
            lines += [
                # Per-pod cgroup series (no container label) and per container.
                f'container_cpu_usage_seconds_total{{job="cadvisor",{base}}} {0.1 * i * t}',
                f'container_cpu_usage_seconds_total{{job="cadvisor",{base},container="app"}} {0.09 * i * t}',
                f'container_memory_working_set_bytes{{job="cadvisor",{base}}} {50e6 * i}',
                f'container_memory_working_set_bytes{{job="cadvisor",{base},container="app"}} {45e6 * i}',
                f'kube_pod_status_ready{{job="kube-state-metrics",{base},condition="true"}} 1',
                f'kube_pod_status_ready{{job="kube-state-metrics",{base},condition="false"}} {1 if i == 3 else 0}',
                f'kube_pod_status_phase{{job="kube-state-metrics",{base},phase="Running"}} 1',
                f'kube_pod_container_status_restarts_total{{job="kube-state-metrics",{base},container="app"}} {int(t) * i}',
                f'kube_pod_container_status_waiting_reason{{job="kube-state-metrics",{base},container="app",reason="CrashLoopBackOff"}} {1 if i == 3 else 0}',
                f'kube_deployment_status_replicas_available{{job="kube-state-metrics",namespace="{ns}",instance="{tenant}",deployment="instance"}} 2',
                f'kube_deployment_spec_replicas{{job="kube-state-metrics",namespace="{ns}",instance="{tenant}",deployment="instance"}} 2',
                f'kube_horizontalpodautoscaler_status_current_replicas{{job="kube-state-metrics",namespace="{ns}",instance="{tenant}",horizontalpodautoscaler="instance"}} 2',
                f'kube_horizontalpodautoscaler_spec_max_replicas{{job="kube-state-metrics",namespace="{ns}",instance="{tenant}",horizontalpodautoscaler="instance"}} 5',
                f'kubelet_volume_stats_available_bytes{{job="kubelet",namespace="{ns}",instance="{tenant}",persistentvolumeclaim="files"}} {8e8}',
                f'kubelet_volume_stats_capacity_bytes{{job="kubelet",namespace="{ns}",instance="{tenant}",persistentvolumeclaim="files"}} {1e9}',
                f'pg_database_size_bytes{{job="kubernetes-pods",namespace="skx-data",pod="postgres-0",instance="shared",datname="{tenant}_db"}} {1e7 * i}',
                f'pg_stat_activity_count{{job="kubernetes-pods",namespace="skx-data",pod="postgres-0",instance="shared",datname="{tenant}_db",state="idle"}} {i}',
                f'skx_backup_last_success_timestamp_seconds{{job="skx-backup",instance="shared",database="{tenant}_db",kind="pg_dump"}} {self.start}',
                f'skx_backup_last_status{{job="skx-backup",instance="shared",database="{tenant}_db",kind="pg_dump"}} 1',
                f'skx_backup_last_size_bytes{{job="skx-backup",instance="shared",database="{tenant}_db",kind="pg_dump"}} {1e6 * i}',
                f'skx_backup_last_duration_seconds{{job="skx-backup",instance="shared",database="{tenant}_db",kind="pg_dump"}} {3 * i}',
            ]
            for route, code, rate in (("/", "200", 10), ("/files", "200", 3), ("/", "500", 0.1)):
                lines.append(f'http_requests_total{{job="kubernetes-pods",service="instance",instance="{tenant}",'
                             f'route="{route}",code="{code}"}} {rate * i * t}')
                for le, share in (("0.1", 0.5), ("0.5", 0.9), ("1", 0.99), ("+Inf", 1)):
                    lines.append(f'http_request_duration_seconds_bucket{{job="kubernetes-pods",service="instance",'
                                 f'instance="{tenant}",route="{route}",code="{code}",le="{le}"}} {share * rate * i * t}')
        lines += [
            f'node_cpu_seconds_total{{job="node-exporter",instance="node1",cpu="0",mode="idle"}} {0.7 * t}',
            'node_memory_MemAvailable_bytes{job="node-exporter",instance="node1"} 4e9',
            'node_memory_MemTotal_bytes{job="node-exporter",instance="node1"} 8e9',
            'pg_settings_max_connections{job="kubernetes-pods",namespace="skx-data",pod="postgres-0",instance="shared"} 100',
            'pg_up{job="kubernetes-pods",namespace="skx-data",pod="postgres-0",instance="shared"} 1',
            'redis_up{job="kubernetes-pods",namespace="skx-data",pod="redis-0",instance="shared"} 1',
            'redis_memory_used_bytes{job="kubernetes-pods",namespace="skx-data",pod="redis-0",instance="shared"} 2e7',
            'redis_memory_max_bytes{job="kubernetes-pods",namespace="skx-data",pod="redis-0",instance="shared"} 1e8',
            'redis_connected_clients{job="kubernetes-pods",namespace="skx-data",pod="redis-0",instance="shared"} 7',
            f'redis_commands_processed_total{{job="kubernetes-pods",namespace="skx-data",pod="redis-0",instance="shared"}} {50 * t}',
            f'skx_backup_last_success_timestamp_seconds{{job="skx-backup",instance="shared",redis="redis",kind="redis_rdb"}} {self.start}',
            'skx_backup_last_status{job="skx-backup",instance="shared",redis="redis",kind="redis_rdb"} 1',
        ]
        # Patroni's /metrics of three members (job patroni): postgres-0 is
        # the primary, postgres-1 its synchronous standby, postgres-2 lags.
        flushed = 1e9 + 1e6 * t
        for i, (role, sync, replayed) in enumerate(
                (("primary", 0, 0), ("replica", 1, flushed), ("replica", 0, flushed - 5e6))):
            member = (f'job="patroni",namespace="skx-data",pod="postgres-{i}",instance="shared",service="postgres",'
                      f'synchronous_mode="true",scope="postgres",name="postgres-{i}"')
            lines += [
                f'patroni_primary{{{member}}} {int(role == "primary")}',
                f'patroni_replica{{{member}}} {int(role == "replica")}',
                f"patroni_postgres_running{{{member}}} 1",
                f"patroni_sync_standby{{{member}}} {sync}",
                f"patroni_postgres_timeline{{{member}}} 4",
                f'patroni_xlog_location{{{member}}} {flushed if role == "primary" else 0}',
                f"patroni_xlog_replayed_location{{{member}}} {replayed}",
            ]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def prometheus(tools, tmp_path_factory):
    binary = tools["prometheus"]
    tmp = tmp_path_factory.mktemp("prometheus")
    exporter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    shutil.copy(RULES, tmp / "skx-alerts.yml")
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "skx-alerts.yml")],
        "scrape_configs": [{
            "job_name": "platform", "honor_labels": True,
            "static_configs": [{"targets": [f"127.0.0.1:{exporter.server_address[1]}"]}],
        }],
    }))
    port = _free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, tmp / "log", "Prometheus")
        # Enough samples for rates over 1m windows.
        time.sleep(12)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        exporter.shutdown()


def _substitute(expr, multi):
    value = "(" + "|".join(TENANTS) + ")" if multi else TENANTS[1]
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$__range", "1h")
    return re.sub(r"\$\{instance\}|\$instance", value, expr)


def _prometheus_targets():
    for name, text in dashboards.render().items():
        board = json.loads(text)
        multi = any(v.get("multi") for v in board["templating"]["list"])
        for panel in board["panels"]:
            for target in panel["targets"]:
                if target["datasource"]["uid"] == "prometheus":
                    yield pytest.param(_substitute(target["expr"], multi),
                                       id=f"{name}:{panel['title']}:{target['refId']}")


@pytest.mark.parametrize("expr", list(_prometheus_targets()))
def test_every_panel_query_runs_and_returns_data(prometheus, expr):
    resp = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "success", f"{expr}: {body.get('error')}"
    assert body["data"]["result"], f"no data for {expr}"


def test_the_real_prometheus_loads_the_alert_rules(prometheus):
    groups = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    with open(RULES) as f:
        assert len(rules) == sum(len(g["rules"]) for g in yaml.safe_load(f)["groups"])
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]


def test_the_members_table_shows_each_members_role_and_lag(prometheus):
    """The members table's queries, as the dashboard sends them, give each
    member its role and each replica its lag (the exporter above: postgres-0
    primary, postgres-2 5 MB behind)."""
    board = json.loads(dashboards.render()["skx-data.json"])
    [table] = [p for p in board["panels"] if p["title"].startswith("PostgreSQL members")]
    role, _, _, lag = (t["expr"] for t in table["targets"])

    def query(expr):
        resp = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
        return resp["data"]["result"]

    assert {r["metric"]["pod"]: r["metric"]["role"] for r in query(role)} == {
        "postgres-0": "primary", "postgres-1": "replica", "postgres-2": "replica"}
    lags = {r["metric"]["pod"]: float(r["value"][1]) for r in query(lag)}
    assert set(lags) == {"postgres-1", "postgres-2"}, "the primary has no lag"
    # One scrape holds both positions: the lag is exact (up to float rounding).
    assert abs(lags["postgres-2"] - 5e6) < 1 and abs(lags["postgres-1"]) < 1, lags
