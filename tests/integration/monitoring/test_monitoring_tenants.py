"""Which tenant a scraped series belongs to, whatever platform_instances
says: the rendered relabelling rules are applied here to discovered targets
and series, as Prometheus applies them. A tenant the list no longer names
keeps being scraped under its own name (its pods carry the tenant label);
alerts of tenants set to state: absent are dropped before Alertmanager."""
import json
import subprocess

import pytest
import yaml

from lib.monitoring_support import configmap_data, relabel, render

UNLISTED = [{"name": "instance9", "namespace": "skx-instance9", "host": "inst9.superkubernetex.com",
             "database": "instance9_db", "lifecycle": "unlisted"}]
INSTANCES = [{"name": "instance1"}, {"name": "instance2", "state": "absent"}]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """prometheus.yml rendered with one listed, one stopped and one tenant
    found on the cluster but no longer in the list."""
    out = render(str(tmp_path_factory.mktemp("render-tenants")), "--tags", "monitoring_prometheus",
                 "-e", json.dumps({"platform_instances": INSTANCES, "platform_instances_unlisted": UNLISTED}))
    return yaml.safe_load(configmap_data(out, "monitoring", "prometheus-config.yaml", "prometheus.yml"))


@pytest.fixture(scope="module")
def config_list_only(tmp_path_factory):
    """prometheus.yml rendered from the list alone (render mode reads no cluster)."""
    out = render(str(tmp_path_factory.mktemp("render-list-only")), "--tags", "monitoring_prometheus")
    return yaml.safe_load(configmap_data(out, "monitoring", "prometheus-config.yaml", "prometheus.yml"))


def _job(config, name):
    return next(j for j in config["scrape_configs"] if j["job_name"] == name)


def _pod(namespace, tenant, service="instance"):
    labels = {"__address__": "10.42.0.7:8080", "__meta_kubernetes_namespace": namespace,
              "__meta_kubernetes_pod_name": f"{service}-abc", "__meta_kubernetes_pod_phase": "Running",
              "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
              "__meta_kubernetes_pod_annotation_prometheus_io_port": "8080",
              "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
              "__meta_kubernetes_pod_label_app_kubernetes_io_name": service}
    if tenant:
        labels["__meta_kubernetes_pod_label_superkubernetex_com_instance"] = tenant
    return labels


@pytest.mark.parametrize("fixture", ["config", "config_list_only"])
def test_a_tenant_pod_is_scraped_under_its_tenant_by_its_label_listed_or_not(fixture, request):
    rules = _job(request.getfixturevalue(fixture), "kubernetes-pods")["relabel_configs"]
    for namespace, tenant in [("skx-instance1", "instance1"), ("skx-instance9", "instance9"),
                              ("skx-instance42", "instance42")]:
        target = relabel(_pod(namespace, tenant), rules)
        assert target is not None, namespace
        assert (target["instance"], target["namespace"], target["__address__"]) == (tenant, namespace, "10.42.0.7:8080")
    assert relabel(_pod("skx-app", "shared", "auth"), rules)["instance"] == "shared"
    assert relabel(_pod("skx-data", None, "postgres"), rules)["instance"] == "shared"


def test_series_that_only_name_a_namespace_follow_the_tenants_found_on_the_cluster(config):
    for job in ("kubelet", "cadvisor", "kube-state-metrics"):
        rules = _job(config, job)["metric_relabel_configs"]
        # kubelet keeps only the series the dashboards and alerts read.
        name = "kubelet_volume_stats_available_bytes" if job == "kubelet" else "container_memory_working_set_bytes"
        series = {"__name__": name, "pod": "instance-abc", "instance": "node1"}
        for namespace, tenant in [("skx-instance1", "instance1"), ("skx-instance2", "instance2"),
                                  ("skx-instance9", "instance9")]:
            out = relabel({**series, "namespace": namespace}, rules)
            assert out and out["instance"] == tenant, (job, namespace, out)
        assert relabel({**series, "namespace": "skx-app"}, rules)["instance"] == "node1"


def test_alerts_of_a_stopped_tenant_are_dropped_and_the_others_sent(config, config_list_only):
    rules = config["alerting"]["alert_relabel_configs"]
    assert relabel({"alertname": "TargetDown", "instance": "instance2"}, rules) is None
    for tenant in ("instance1", "instance9", "shared", "instance22"):
        assert relabel({"alertname": "TargetDown", "instance": tenant}, rules) is not None, tenant
    # Nothing is dropped when no tenant is stopped.
    assert "alert_relabel_configs" not in config_list_only["alerting"]


def test_the_alerting_section_with_a_stopped_tenant_passes_promtool(config, tools, tmp_path):
    """The alerting section as rendered, checked by the promtool of the
    Prometheus we ship."""
    promtool = tools["promtool"]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump({"global": config["global"], "alerting": config["alerting"],
                                    "scrape_configs": [_job(config, "prometheus")]}))
    proc = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
