#!/usr/bin/env python3
"""Grafana dashboards of the platform, as code.

Writes roles/monitoring/files/dashboards/*.json. Edit this file, run it
(python3 roles/monitoring/files/dashboards.py) and commit both: the test
tests/integration/monitoring/test_monitoring_dashboards.py fails when the JSON and this generator
disagree, and runs every panel's query against a real Prometheus.

The `instance` variable offers the tenants of platform_instances: the role
replaces the placeholder __SKX_INSTANCES__ when it builds the ConfigMap.
Label conventions (see roles/monitoring/templates/prometheus.yml.j2):
`instance` is the tenant on every series from a tenant namespace.
"""
import json
import os
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards")
PROM = {"type": "prometheus", "uid": "prometheus"}
LOGS = {"type": "victoriametrics-logs-datasource", "uid": "logs"}


def _grid(panels, width=12, height=8):
    """Lay panels out two per row (or full width when asked)."""
    x = y = 0
    for idx, panel in enumerate(panels):
        w = panel.pop("_width", width)
        if x + w > 24:
            x, y = 0, y + height
        panel["gridPos"] = {"x": x, "y": y, "w": w, "h": height}
        panel["id"] = idx + 1
        x += w
    return panels


def ts(title, targets, unit="short", description="", stack=False):
    return {
        "type": "timeseries", "title": title, "description": description,
        "datasource": PROM,
        "fieldConfig": {"defaults": {"unit": unit, "custom": {
            "stacking": {"mode": "normal" if stack else "none"}}}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom",
                               "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi"}},
        "targets": [dict(t, datasource=PROM, refId=chr(65 + i)) for i, t in enumerate(targets)],
    }


def table(title, targets, unit="short", description="", width=24):
    return {
        "type": "table", "title": title, "description": description, "datasource": PROM,
        "_width": width,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"showHeader": True},
        "transformations": [{"id": "merge"}],
        "targets": [dict(t, datasource=PROM, refId=chr(65 + i), format="table", instant=True)
                    for i, t in enumerate(targets)],
    }


def stat(title, expr, unit="short", description="", width=6):
    return {
        "type": "stat", "title": title, "description": description, "datasource": PROM,
        "_width": width,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
        "targets": [{"expr": expr, "datasource": PROM, "refId": "A", "instant": True}],
    }


def logs(title, query, width=24):
    return {
        "type": "logs", "title": title, "datasource": LOGS, "_width": width,
        "options": {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending"},
        "targets": [{"expr": query, "datasource": LOGS, "refId": "A", "queryType": "instant"}],
    }


def q(expr, legend):
    return {"expr": expr, "legendFormat": legend}


def instance_variable(multi):
    return {
        "name": "instance", "label": "Instance", "type": "custom",
        "query": "__SKX_INSTANCES__", "multi": multi, "includeAll": multi,
        "current": {}, "options": [], "hide": 0,
    }


def dashboard(uid, title, panels, variables=(), tags=()):
    return {
        "uid": uid, "title": title, "tags": ["superkubernetex", *tags],
        "timezone": "browser", "editable": False, "graphTooltip": 1,
        "schemaVersion": 39, "version": 1, "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": list(variables)},
        "annotations": {"list": []},
        "panels": _grid(panels),
    }


RATE = "$__rate_interval"


def quantiles(selector, by):
    return [q(f"histogram_quantile({p}, sum by (le, {by}) "
              f"(rate(http_request_duration_seconds_bucket{{{selector}}}[{RATE}])))",
              f"p{int(p * 100)} {{{{{by}}}}}") for p in (0.5, 0.95, 0.99)]


def backups():
    return table("Backups: last run per database and kind", [
        q("time() - max by (database, redis, kind) (skx_backup_last_success_timestamp_seconds)", "age"),
        q("max by (database, redis, kind) (skx_backup_last_status)", "status"),
        q("max by (database, redis, kind) (skx_backup_last_size_bytes)", "size"),
        q("max by (database, redis, kind) (skx_backup_last_duration_seconds)", "duration"),
    ], unit="s", description="Age of the last successful backup (s), status of the last run (1 ok, 0 failed), "
                             "size (bytes) and duration (s). Pushed by the backup jobs to the Pushgateway.")


def overview():
    sel = 'instance=~"$instance"'
    return dashboard("skx-overview", "SuperKuberneteX / Overview", [
        ts("CPU per instance", [q(
            f'sum by (instance) (rate(container_cpu_usage_seconds_total{{job="cadvisor", container="", {sel}}}[{RATE}]))',
            "{{instance}}")], unit="cores", description="CPU used by every pod of each tenant instance (per-pod cgroup series, container=\"\")."),
        ts("Memory per instance", [q(
            f'sum by (instance) (container_memory_working_set_bytes{{job="cadvisor", container="", {sel}}})',
            "{{instance}}")], unit="bytes"),
        ts("HTTP requests per service", [q(
            f"sum by (service) (rate(http_requests_total[{RATE}]))", "{{service}}")],
            unit="reqps", stack=True),
        # "or 0 * ...": a service without any 5xx shows 0, not "No data".
        ts("HTTP 5xx ratio per service", [q(
            f'(sum by (service) (rate(http_requests_total{{code=~"5.."}}[{RATE}]))'
            f" or 0 * sum by (service) (rate(http_requests_total[{RATE}])))"
            f" / sum by (service) (rate(http_requests_total[{RATE}]))", "{{service}}")],
            unit="percentunit", description="The SLO allows 0.1% (99.9% availability)."),
        ts("Response time per instance (p50, p95, p99)", quantiles(sel, "instance"), unit="s",
           description="From the http_request_duration_seconds histogram of the apps."),
        ts("Scrape targets down", [q("sum by (job) (1 - up)", "{{job}}")], unit="short"),
        table("Firing alerts", [q('sum by (alertname, severity, instance) (ALERTS{alertstate="firing"})',
                                  "alerts")]),
        backups(),
    ], variables=[instance_variable(True)], tags=["overview"])


def instance():
    sel = 'instance="$instance"'
    return dashboard("skx-instance", "SuperKuberneteX / Instance", [
        stat("Ready pods", f'sum(kube_pod_status_ready{{condition="true", {sel}}})'),
        stat("Restarts (24h)", f"sum(increase(kube_pod_container_status_restarts_total{{{sel}}}[24h]))"),
        stat("Database size", 'sum(pg_database_size_bytes{datname="${instance}_db"})', unit="bytes"),
        stat("Files volume used",
             f"max(1 - kubelet_volume_stats_available_bytes{{{sel}}} / kubelet_volume_stats_capacity_bytes{{{sel}}})",
             unit="percentunit"),
        ts("Requests per route", [q(f"sum by (route) (rate(http_requests_total{{{sel}}}[{RATE}]))",
                                    "{{route}}")], unit="reqps", stack=True),
        ts("Responses per status code", [q(f"sum by (code) (rate(http_requests_total{{{sel}}}[{RATE}]))",
                                           "{{code}}")], unit="reqps", stack=True),
        ts("Response time (p50, p95, p99)", quantiles(sel, "service"), unit="s"),
        ts("CPU", [q(f'sum by (pod) (rate(container_cpu_usage_seconds_total{{job="cadvisor", container="", {sel}}}[{RATE}]))',
                     "{{pod}}")], unit="cores"),
        ts("Memory", [q(f'sum by (pod) (container_memory_working_set_bytes{{job="cadvisor", container="", {sel}}})',
                        "{{pod}}")], unit="bytes"),
        ts("Replicas (current and HPA maximum)", [
            q(f"sum(kube_horizontalpodautoscaler_status_current_replicas{{{sel}}})", "current"),
            q(f"sum(kube_horizontalpodautoscaler_spec_max_replicas{{{sel}}})", "max"),
        ]),
        logs("Logs", '"kubernetes.pod_namespace":="__SKX_NAMESPACE_PREFIX__${instance}"'),
    ], variables=[instance_variable(False)], tags=["instance"])


def kubernetes():
    return dashboard("skx-kubernetes", "SuperKuberneteX / Pods and nodes", [
        ts("Pods per phase", [q("sum by (namespace, phase) (kube_pod_status_phase) > 0",
                                "{{namespace}} {{phase}}")], stack=True),
        ts("Container restarts (1h)", [q(
            "sum by (namespace, pod) (increase(kube_pod_container_status_restarts_total[1h])) > 0",
            "{{namespace}}/{{pod}}")]),
        table("Pods not ready", [q('sum by (namespace, pod) (kube_pod_status_ready{condition="false"}) > 0',
                                   "not ready")]),
        table("Containers waiting", [q("sum by (namespace, pod, container, reason) "
                                       "(kube_pod_container_status_waiting_reason) > 0", "waiting")]),
        ts("Deployments: available / desired replicas", [q(
            "sum by (namespace, deployment) (kube_deployment_status_replicas_available)"
            " / sum by (namespace, deployment) (kube_deployment_spec_replicas)",
            "{{namespace}}/{{deployment}}")], unit="percentunit"),
        ts("Volumes used", [q("1 - kubelet_volume_stats_available_bytes / kubelet_volume_stats_capacity_bytes",
                              "{{namespace}}/{{persistentvolumeclaim}}")], unit="percentunit"),
        ts("Node CPU", [q(f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{RATE}]))',
                          "{{instance}}")], unit="percentunit"),
        ts("Node memory available", [q("node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
                                       "{{instance}}")], unit="percentunit"),
    ], tags=["kubernetes"])


# Patroni's /metrics on every PostgreSQL member (scrape job patroni), and
# the replay lag recorded by roles/monitoring/files/rules/skx-alerts.yml.
REPLAY_LAG = "namespace_pod:patroni_replay_lag:bytes"
ROLE = ('label_replace(patroni_primary == 1, "role", "primary", "", "")'
        ' or label_replace(patroni_replica == 1, "role", "replica", "", "")')


def postgres_members():
    members = table("PostgreSQL members: role, synchronous standby, timeline, lag", [
        q(f"max by (pod, role) ({ROLE})", "role"),
        q("max by (pod) (patroni_sync_standby)", "synchronous standby"),
        q("max by (pod) (patroni_postgres_timeline)", "timeline"),
        q(f"max by (pod) ({REPLAY_LAG})", "lag"),
    ], description="One row per member (Patroni's /metrics): its role, 1 on the synchronous standby, "
                   "its PostgreSQL timeline (it goes up at each promotion), and on a replica how far "
                   "its replay is behind the primary's flushed WAL.")
    members["fieldConfig"]["overrides"] = [{"matcher": {"id": "byName", "options": "Value #D"},
                                            "properties": [{"id": "unit", "value": "bytes"}]}]
    return [
        members,
        ts("PostgreSQL replication lag per replica", [q(f"max by (pod) ({REPLAY_LAG})", "{{pod}}")],
           unit="bytes", description="Replay position behind the primary's flushed WAL. Past Patroni's "
                                     "maximum_lag_on_failover it would not promote the replica, and "
                                     "postgres-replica stops routing to it (alert PatroniReplicationLag)."),
        ts("PostgreSQL primary per member", [q("max by (pod) (patroni_primary)", "{{pod}}")],
           description="1 on the member that runs as primary: a failover or switchover shows as the 1 "
                       "moving to another member."),
    ]


def data():
    return dashboard("skx-data", "SuperKuberneteX / PostgreSQL, Redis and backups", [
        *postgres_members(),
        ts("PostgreSQL database sizes", [q("sum by (datname) (pg_database_size_bytes)", "{{datname}}")],
           unit="bytes"),
        ts("PostgreSQL connections per database", [
            q("sum by (datname) (pg_stat_activity_count)", "{{datname}}"),
            q("max(pg_settings_max_connections)", "max_connections"),
        ]),
        stat("PostgreSQL up", "min(pg_up)"),
        stat("Redis up", "min(redis_up)"),
        stat("Redis memory used", "max(redis_memory_used_bytes)", unit="bytes"),
        stat("Redis clients", "sum(redis_connected_clients)"),
        ts("Redis memory (used and limit)", [
            q("max by (pod) (redis_memory_used_bytes)", "used {{pod}}"),
            q("max by (pod) (redis_memory_max_bytes)", "limit {{pod}}"),
        ], unit="bytes"),
        ts("Redis commands", [q(f"sum(rate(redis_commands_processed_total[{RATE}]))", "commands")],
           unit="ops"),
        backups(),
        ts("Backup sizes", [q("max by (database, redis, kind) (skx_backup_last_size_bytes)",
                              "{{kind}} {{database}}{{redis}}")], unit="bytes"),
    ], tags=["data"])


DASHBOARDS = {
    "skx-overview.json": overview,
    "skx-instance.json": instance,
    "skx-kubernetes.json": kubernetes,
    "skx-data.json": data,
}


def render():
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, text in render().items():
        with open(os.path.join(OUT, name), "w") as f:
            f.write(text)
        print(f"wrote {os.path.normpath(os.path.join(OUT, name))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
