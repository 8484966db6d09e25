"""The rendered Prometheus and Alertmanager configurations pass their own
tools (promtool with Kubernetes service discovery, amtool), route alerts
where the docs say, and carry no secret."""
import os
import re
import shutil
import subprocess

import pytest
import yaml

from lib.monitoring_support import FAKE_SECRETS, RULES, configmap_data, load_docs

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _prometheus_config(rendered, tmp_path):
    """The rendered prometheus.yml with the in-cluster paths moved under
    tmp_path (promtool checks that the files it names exist)."""
    text = configmap_data(rendered, "monitoring", "prometheus-config.yaml", "prometheus.yml")
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "ca.crt").write_text("")
    (sa / "token").write_text("token")
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(RULES, rules / "skx-alerts.yml")
    text = text.replace(SA_DIR, str(sa)).replace("/etc/prometheus/rules", str(rules))
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    return path, yaml.safe_load(text)


def test_prometheus_config_passes_promtool(rendered, tools, tmp_path):
    path, _ = _prometheus_config(rendered, tmp_path)
    proc = subprocess.run([tools["promtool"], "check", "config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(RULES) as f:
        count = sum(len(g["rules"]) for g in yaml.safe_load(f)["groups"])
    assert f"SUCCESS: {count} rules found" in proc.stdout


def test_prometheus_scrapes_every_source_the_platform_needs(rendered, tmp_path):
    _, config = _prometheus_config(rendered, tmp_path)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) >= {"prometheus", "alertmanager", "pushgateway", "kube-state-metrics",
                         "node-exporter", "kubelet", "cadvisor", "kubernetes-pods", "patroni"}
    # Backups' labels (job skx-backup, database, kind) survive the scrape.
    assert jobs["pushgateway"]["honor_labels"] is True
    assert jobs["pushgateway"]["static_configs"][0]["targets"] == ["pushgateway.skx-monitoring.svc:9091"]
    # kubelet and cAdvisor go through the API server proxy.
    assert "/api/v1/nodes/$1/proxy/metrics/cadvisor" in yaml.safe_dump(jobs["cadvisor"])
    # Pods opt in with prometheus.io/scrape and choose port and path.
    pods = yaml.safe_dump(jobs["kubernetes-pods"])
    for key in ("prometheus_io_scrape", "prometheus_io_port", "prometheus_io_path"):
        assert f"__meta_kubernetes_pod_annotation_{key}" in pods
    # Series from the tenant namespaces are labelled with the tenant name: by
    # the pods' tenant label, or by the tenant namespaces for the series that
    # only carry a namespace (test_monitoring_tenants.py applies the rules).
    assert "__meta_kubernetes_pod_label_superkubernetex_com_instance" in pods
    for job in ("cadvisor", "kubelet", "kube-state-metrics"):
        assert r"skx\-(instance1|instance2|instance3)" in yaml.safe_dump(jobs[job], width=1000), job
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager.skx-monitoring.svc:9093"]


def test_every_job_the_rules_select_is_a_scrape_job(rendered, tmp_path):
    """A rule that selects a job by name (the Patroni alerts: job patroni)
    finds it among the rendered scrape jobs: renaming one without the other
    would silence the rule."""
    _, config = _prometheus_config(rendered, tmp_path)
    with open(RULES) as f:
        selected = set(re.findall(r'job="([^"]+)"', f.read()))
    assert "patroni" in selected
    assert selected <= {j["job_name"] for j in config["scrape_configs"]}


def _alertmanager_config(outdir, tmp_path, name):
    text = configmap_data(outdir, "monitoring", "alertmanager-config.yaml", "alertmanager.yml")
    path = tmp_path / name
    path.write_text(text)
    return path, text


@pytest.mark.parametrize("which", ["rendered", "rendered_defaults"])
def test_alertmanager_config_passes_amtool(which, request, tools, tmp_path):
    path, _ = _alertmanager_config(request.getfixturevalue(which), tmp_path, "alertmanager.yml")
    proc = subprocess.run([tools["amtool"], "check-config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alertmanager_reads_credentials_from_secret_files_only(rendered, tmp_path):
    _, text = _alertmanager_config(rendered, tmp_path, "alertmanager.yml")
    config = yaml.safe_load(text)
    secret_dir = "/var/run/secrets/superkubernetex/alertmanager-receivers"
    assert config["global"]["smtp_auth_password_file"] == f"{secret_dir}/smtp_password"
    slack = [s for r in config["receivers"] for s in r.get("slack_configs", [])]
    assert slack and all(s["api_url_file"] == f"{secret_dir}/slack_webhook_url" for s in slack)
    assert all("api_url" not in s for s in slack)
    dms = next(r for r in config["receivers"] if r["name"] == "deadmansswitch")
    assert dms["webhook_configs"][0]["url_file"] == f"{secret_dir}/deadmansswitch_url"
    assert "url" not in dms["webhook_configs"][0]
    assert dms["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"] == \
        f"{secret_dir}/deadmansswitch_token"
    # The StatefulSet mounts that Secret there.
    sts = load_docs(os.path.join(rendered, "monitoring", "alertmanager-statefulset.yaml"))[0]
    pod = sts["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == secret_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "alertmanager-receivers"


def test_no_secret_reaches_a_rendered_file(rendered):
    for dirpath, _, files in os.walk(rendered):
        for name in files:
            with open(os.path.join(dirpath, name)) as f:
                text = f.read()
            for secret in FAKE_SECRETS:
                assert secret not in text, f"{secret} leaked into {name}"


ROUTES = [
    # labels -> receivers
    ({"alertname": "Watchdog", "severity": "none"}, "deadmansswitch"),
    ({"alertname": "KubeDeploymentUnavailable", "severity": "critical", "instance": "instance2"}, "instance2-critical"),
    ({"alertname": "HTTPLatencyP95High", "severity": "warning", "instance": "instance2"}, "instance2-warning"),
    ({"alertname": "HTTPLatencyP95High", "severity": "warning", "instance": "instance1"}, "instance1-warning"),
    ({"alertname": "PostgresDown", "severity": "critical", "instance": "shared"}, "critical"),
    ({"alertname": "TargetDown", "severity": "warning", "instance": "shared"}, "warning"),
    ({"alertname": "CertificateExpiring", "severity": "critical"}, "critical"),
]


@pytest.mark.parametrize("labels,receiver", ROUTES)
def test_alertmanager_routes_by_severity_and_instance(rendered, tools, tmp_path, labels, receiver):
    path, _ = _alertmanager_config(rendered, tmp_path, "alertmanager.yml")
    proc = subprocess.run(
        [tools["amtool"], "config", "routes", "test", f"--config.file={path}", f"--verify.receivers={receiver}",
         *[f"{k}={v}" for k, v in labels.items()]], capture_output=True, text=True)
    assert proc.returncode == 0, f"{labels} went to {proc.stdout.strip()}, expected {receiver}"


def test_tenant_critical_receiver_mails_the_tenant_contact_too(rendered, tmp_path):
    _, text = _alertmanager_config(rendered, tmp_path, "alertmanager.yml")
    receivers = {r["name"]: r for r in yaml.safe_load(text)["receivers"]}
    assert receivers["instance2-critical"]["email_configs"][0]["to"] == \
        "oncall@superkubernetex.test, tenant2@superkubernetex.test"
    assert receivers["instance1-critical"]["email_configs"][0]["to"] == "oncall@superkubernetex.test"
    # Warnings go to chat only.
    assert "email_configs" not in receivers["warning"]
    assert receivers["warning"]["slack_configs"][0]["channel"] == "#alerts-warning"


def test_default_alertmanager_config_drops_the_watchdog_without_a_switch(rendered_defaults, tools, tmp_path):
    path, text = _alertmanager_config(rendered_defaults, tmp_path, "alertmanager.yml")
    proc = subprocess.run([tools["amtool"], "config", "routes", "test", f"--config.file={path}",
                           "--verify.receivers=null", "alertname=Watchdog"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    config = yaml.safe_load(text)
    assert "smtp_smarthost" not in config["global"]
    assert all(set(r) == {"name"} for r in config["receivers"]), "no receiver configured by default"
