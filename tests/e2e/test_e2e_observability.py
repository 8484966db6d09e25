"""Observability on the deployed testbed (issue 6, acceptance on the cluster):
every scrape target of the in-cluster Prometheus is up; every dashboard
panel's query returns data from it (except the panels listed below: built on
kube-state-metrics, which the testbed cannot run, on the kubelet's volume
stats, which local-path volumes do not have, or on PostgreSQL replicas
while it runs one member); Patroni's /metrics is scraped on every
PostgreSQL member and names one primary; a real alert rule fires
when Redis goes away and its notification reaches a Slack-compatible webhook
sink and an SMTP sink run here on the node address, then resolves; a line
logged by instance2 is found in VictoriaLogs by its instance label and not
under instance1.

Prometheus, Alertmanager and VictoriaLogs are reached with kubectl
port-forward (their NetworkPolicies admit no one else); the sinks listen where
inventories/testbed points Alertmanager (its egress exception)."""
import contextlib
import glob
import json
import os
import re
import subprocess
import time
import urllib.parse
import uuid

import pytest
import requests

from e2e_support import HOSTS, KUBECTL, ROOT, SETTINGS, https, kubectl, postgres_primary

from lib.monitoring_support import SMTPSink, WebhookSink, start_sinks

MONITORING = "skx-monitoring"
LOGGING = "skx-logging"
NODE_AGENTS = "skx-node-agents"
KSM = SETTINGS.get("monitoring_kube_state_metrics_enabled", True)
DASHBOARDS = os.path.join(ROOT, "roles", "monitoring", "files", "dashboards")
TENANTS = ["instance1", "instance2", "instance3"]
INSTANCE_FIELD = "kubernetes.pod_labels.app.kubernetes.io/instance"

# Panels with no data when kube-state-metrics is off (monitoring_kube_state_metrics_enabled:
# false on the testbed: its module cannot be built here). Every one of them reads kube_*
# series only; any other empty panel fails the test.
EMPTY_WITHOUT_KSM = {
    ("skx-instance.json", "Ready pods"),
    ("skx-instance.json", "Restarts (24h)"),
    ("skx-instance.json", "Replicas (current and HPA maximum)"),
    ("skx-kubernetes.json", "Pods per phase"),
    ("skx-kubernetes.json", "Container restarts (1h)"),
    ("skx-kubernetes.json", "Pods not ready"),
    ("skx-kubernetes.json", "Containers waiting"),
    ("skx-kubernetes.json", "Deployments: available / desired replicas"),
}

# Panels built on the kubelet's volume stats: the kubelet reports none for
# local-path volumes (plain directories of the node, k3s' default storage class
# and the testbed's), so they are empty wherever every volume is local-path.
EMPTY_ON_LOCAL_PATH = {
    ("skx-instance.json", "Files volume used"),
    ("skx-kubernetes.json", "Volumes used"),
}

# Panels with no data while PostgreSQL runs one member (the testbed's
# postgres_replicas): the replay lag exists on replicas only.
EMPTY_WITH_ONE_MEMBER = {
    ("skx-data.json", "PostgreSQL replication lag per replica"),
}


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


@pytest.fixture(scope="module")
def prometheus():
    with port_forward(MONITORING, "svc/prometheus", 9090) as url:
        deadline = time.monotonic() + 180
        while requests.get(f"{url}/-/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "Prometheus is not ready"
            time.sleep(3)
        yield url


def _query(prometheus, expr):
    body = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=20).json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    return body["data"]["result"]


def _wait(predicate, timeout, every=5):
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(every)


# --------------------------------------------------------------- targets
def test_every_scrape_target_is_up(prometheus):
    def targets():
        return requests.get(f"{prometheus}/api/v1/targets", params={"state": "active"},
                            timeout=20).json()["data"]["activeTargets"]

    # Right after a deployment some targets have not been scraped yet, and
    # a Prometheus that just restarted has not discovered any.
    _wait(lambda: (found := targets()) and all(t["health"] == "up" for t in found), timeout=120)
    active = targets()
    down = [(t["labels"].get("job"), t["scrapeUrl"], t["health"], t["lastError"])
            for t in active if t["health"] != "up"]
    assert not down, f"targets not up: {down}"
    jobs = {t["labels"]["job"] for t in active}
    expected = {"prometheus", "alertmanager", "pushgateway", "node-exporter", "kubelet", "cadvisor",
                "kubernetes-pods", "patroni"} | ({"kube-state-metrics"} if KSM else set())
    assert jobs == expected
    # Every kind of pod that asks to be scraped is, each labelled with its instance.
    pods = {(t["labels"]["namespace"], t["labels"].get("service"), t["labels"]["instance"])
            for t in active if t["labels"]["job"] == "kubernetes-pods"}
    for tenant in TENANTS:
        assert (f"skx-{tenant}", "instance", tenant) in pods
    for service in ("frontend", "auth", "payment"):
        assert ("skx-app", service, "shared") in pods
    for service in ("postgres", "redis"):
        assert ("skx-data", service, "shared") in pods
    assert (NODE_AGENTS, "vlagent", "shared") in pods and (LOGGING, "victoria-logs", "shared") in pods
    # An exporter's target is up even when it cannot reach its database: each
    # must also report its database up (the exporters' own login works), one
    # series per member (one exporter beside each PostgreSQL or Redis member).
    for metric, statefulset in (("pg_up", "postgres"), ("redis_up", "redis")):
        members = _replicas("statefulset", statefulset)
        assert _wait(lambda: [r["value"][1] for r in _query(prometheus, metric)] == ["1"] * members, timeout=90), \
            f"{metric}, {members} members: {_query(prometheus, metric)}"
    # Patroni's REST API on every PostgreSQL member (job patroni, port
    # 8008: the NetworkPolicy admits Prometheus), labelled like the
    # exporter's series; exactly one member runs as primary.
    members = _replicas("statefulset", "postgres")
    patroni = {(t["labels"]["namespace"], t["labels"]["pod"], t["labels"]["service"], t["labels"]["instance"])
               for t in active if t["labels"]["job"] == "patroni"}
    assert patroni == {("skx-data", f"postgres-{i}", "postgres", "shared") for i in range(members)}, patroni
    assert all(t["scrapeUrl"].endswith(":8008/metrics") for t in active if t["labels"]["job"] == "patroni")
    primaries = _query(prometheus, 'patroni_primary{job="patroni"} == 1')
    assert [r["metric"]["pod"] for r in primaries] == [postgres_primary()], f"patroni_primary: {primaries}"
    print(f"{len(active)} targets up: " + ", ".join(
        f"{job}={sum(t['labels']['job'] == job for t in active)}" for job in sorted(jobs)))


# ----------------------------------------------------------- dashboards
def _dashboard_queries():
    for path in sorted(glob.glob(os.path.join(DASHBOARDS, "*.json"))):
        with open(path) as f:
            board = json.load(f)
        multi = any(v.get("multi") for v in board["templating"]["list"])
        for panel in board["panels"]:
            exprs = [t["expr"] for t in panel.get("targets", []) if t["datasource"]["uid"] == "prometheus"]
            if exprs:
                yield os.path.basename(path), panel["title"], multi, exprs


def _substitute(expr, multi):
    # What Grafana sends: every tenant for a multi-value variable, one otherwise
    # (instance2, the one the other tests exercise); $__rate_interval is four
    # scrape intervals.
    value = "(" + "|".join(TENANTS) + ")" if multi else "instance2"
    expr = expr.replace("$__rate_interval", "2m").replace("$__interval", "30s").replace("$__range", "1h")
    return re.sub(r"\$\{instance\}|\$instance", value, expr)


def _traffic():
    """Requests on every service and tenant, so the HTTP panels have rates."""
    for host in HOSTS.values():
        for _ in range(5):
            https(host, "/")


def _ensure_backup_results(prometheus):
    """The backup panels show what the backup jobs pushed: on a fresh
    Pushgateway, run instance2's database backup once (a real backup)."""
    if _query(prometheus, "skx_backup_last_success_timestamp_seconds"):
        return
    job = f"backup-instance2-db-e2e-{uuid.uuid4().hex[:6]}"
    kubectl("-n", "skx-data", "create", "job", job, "--from=cronjob/backup-instance2-db")
    try:
        kubectl("-n", "skx-data", "wait", "--for=condition=complete", "--timeout=300s", f"job/{job}", timeout=320)
    finally:  # the backup stays (the retention prunes it), not its Job
        kubectl("-n", "skx-data", "delete", "job", job, "--wait=false", check=False)
    assert _wait(lambda: _query(prometheus, "skx_backup_last_success_timestamp_seconds"), timeout=90), \
        "the backup's results did not reach Prometheus"


def test_every_dashboard_panel_has_data_from_the_cluster_prometheus(prometheus):
    _ensure_backup_results(prometheus)
    _traffic()
    panels = list(_dashboard_queries())

    def empty_panels():
        return {(board, title) for board, title, multi, exprs in panels
                if not any(_query(prometheus, _substitute(e, multi)) for e in exprs)}

    classes = json.loads(kubectl("get", "storageclasses", "-o", "json").stdout)["items"]
    local_path_only = {c["provisioner"] for c in classes} == {"rancher.io/local-path"}
    one_member = _replicas("statefulset", "postgres") == 1
    reasons = {**({} if KSM else dict.fromkeys(EMPTY_WITHOUT_KSM, r"\bkube_")),
               **(dict.fromkeys(EMPTY_ON_LOCAL_PATH, r"\bkubelet_volume_stats_") if local_path_only else {}),
               **(dict.fromkeys(EMPTY_WITH_ONE_MEMBER, r"\bnamespace_pod:patroni_replay_lag:bytes\b")
                  if one_member else {})}
    expected = set(reasons)
    def settled():  # rates need two scrapes after the traffic above
        empty = empty_panels()
        return (empty,) if empty <= expected else None

    found = _wait(settled, timeout=150, every=15)
    empty = found[0] if found else empty_panels()
    assert empty - expected == set(), f"panels without data: {sorted(empty - expected)}"
    assert empty == expected, f"expected empty (see the lists above) but with data: {sorted(expected - empty)}"
    for board, title, _, exprs in panels:
        if (board, title) in expected:
            assert all(re.search(reasons[board, title], e) for e in exprs), f"{board} {title}: {exprs}"
    print(f"{len(panels) - len(empty)} of {len(panels)} panels with data; empty as expected: "
          f"{len(empty & EMPTY_WITHOUT_KSM)} without kube-state-metrics, "
          f"{len(empty & EMPTY_ON_LOCAL_PATH)} on local-path volumes")


# ---------------------------------------------------------------- alert
class _Hooks(WebhookSink):
    received = []


class _Mails(SMTPSink):
    mails = []


def _sink_addresses():
    webhook = urllib.parse.urlsplit(SETTINGS["monitoring_alertmanager_slack_webhook_url"])
    smtp_host, smtp_port = SETTINGS["monitoring_alertmanager_smtp_smarthost"].rsplit(":", 1)
    assert webhook.hostname == smtp_host, "the test runs both sinks on one address"
    return smtp_host, webhook.port, int(smtp_port), webhook.path


def _replicas(kind, name):
    return int(kubectl("-n", "skx-data", "get", kind, name, "-o", "jsonpath={.spec.replicas}").stdout)


def test_redis_down_fires_notifies_slack_and_email_and_resolves(prometheus):
    """A real outage: Redis stops (StatefulSet scaled to zero), the RedisDown
    rule fires (absent(redis_up) for 2m), Alertmanager reads the webhook URL
    from its Secret file and notifies both sinks, and once Redis is back the
    alert resolves on both."""
    host, hook_port, smtp_port, hook_path = _sink_addresses()
    hooks, mail = start_sinks(host, hook_port, smtp_port, _Hooks, _Mails)

    def slack(status):
        return [m for m in _Hooks.received if m["path"] == hook_path
                and any(a["title"].startswith(f"[{SETTINGS['platform_domain']}] {status}")
                        and "RedisDown" in a["title"] for a in m["json"].get("attachments", []))]

    def email(status):
        return [m for m in _Mails.mails if "RedisDown" in m["data"]
                and f"Subject: [{SETTINGS['platform_domain']}] {status}" in m["data"]]

    replicas = _replicas("statefulset", "redis")
    assert replicas >= 1
    start = time.monotonic()
    try:
        kubectl("-n", "skx-data", "scale", "statefulset", "redis", "--replicas=0")
        kubectl("-n", "skx-data", "wait", "--for=delete", "pod", "-l", "app.kubernetes.io/name=redis",
                "--timeout=120s", check=False, timeout=130)
        fired = _wait(lambda: slack("FIRING") and email("FIRING"), timeout=420)
        fired_after = time.monotonic() - start
        assert slack("FIRING"), f"RedisDown did not reach the Slack sink: {_Hooks.received}"
        assert email("FIRING"), f"RedisDown did not reach the SMTP sink: {_Mails.mails}"
        assert fired
        message = slack("FIRING")[0]["json"]
        assert message["channel"] == SETTINGS.get("monitoring_alertmanager_slack_channel_critical", "#alerts")
        assert "Redis is down" in message["attachments"][0]["text"]
        assert email("FIRING")[0]["rcpt"] == [SETTINGS["monitoring_alertmanager_email_to"]]
    finally:
        kubectl("-n", "skx-data", "scale", "statefulset", "redis", f"--replicas={replicas}")
        kubectl("-n", "skx-data", "rollout", "status", "statefulset/redis", "--timeout=300s", timeout=310)
    restored = time.monotonic()
    try:
        resolved = _wait(lambda: slack("RESOLVED") and email("RESOLVED"), timeout=420)
        assert slack("RESOLVED"), "no RESOLVED RedisDown on the Slack sink"
        assert email("RESOLVED"), "no RESOLVED RedisDown e-mail"
        assert resolved
        print(f"RedisDown notified {fired_after:.0f}s after Redis stopped, resolved "
              f"{time.monotonic() - restored:.0f}s after it was back")
    finally:
        hooks.shutdown()
        mail.shutdown()
        hooks.server_close()
        mail.server_close()


def test_the_receiver_credentials_are_files_from_a_secret():
    config = kubectl("-n", MONITORING, "get", "configmap", "alertmanager-config",
                     "-o", "jsonpath={.data.alertmanager\\.yml}").stdout
    assert SETTINGS["monitoring_alertmanager_slack_webhook_url"] not in config
    assert "api_url_file: /var/run/secrets/superkubernetex/alertmanager-receivers/slack_webhook_url" in config
    sts = json.loads(kubectl("-n", MONITORING, "get", "statefulset", "alertmanager", "-o", "json").stdout)
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["receivers"]["secret"]["secretName"] == "alertmanager-receivers"


# ----------------------------------------------------------------- logs
def _logsql(store, query):
    resp = requests.get(f"{store}/select/logsql/query", params={"query": query}, timeout=20)
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def test_a_line_logged_by_instance2_is_found_by_its_labels_and_not_under_instance1():
    marker = f"e2e-{uuid.uuid4().hex}"
    response = https(f"inst2.{SETTINGS['platform_domain']}", f"/pages/{marker}", headers={"X-Request-ID": marker})
    assert response.status == 404 and response.headers.get("x-instance") == "instance2"
    with port_forward(LOGGING, "svc/victoria-logs", 9428) as store:
        scoped = f'"{INSTANCE_FIELD}":="instance2" AND request_id:="{marker}"'
        rows = _wait(lambda: _logsql(store, scoped), timeout=120, every=3)
        assert rows, f"the instance2 line is not in VictoriaLogs: {scoped}"
        assert all(r["kubernetes.pod_namespace"] == "skx-instance2" and r["path"] == f"/pages/{marker}"
                   for r in rows)
        # as a stream filter too (what the dashboards' logs panel sends)
        assert _logsql(store, f'{{"{INSTANCE_FIELD}"="instance2"}} AND request_id:="{marker}"')
        everywhere = _logsql(store, f'request_id:="{marker}"')
        assert {r[INSTANCE_FIELD] for r in everywhere} == {"instance2"}
        assert _logsql(store, f'"{INSTANCE_FIELD}":="instance1" AND request_id:="{marker}"') == []
        print(f"log line {marker}: {len(rows)} row(s) under instance2, {len(everywhere)} in all, 0 under instance1")
