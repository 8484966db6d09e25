"""Prometheus scrapes Patroni's /metrics on every PostgreSQL member (job
patroni): the rendered scrape configuration's relabelling, applied as
Prometheus applies it to the targets its pod discovery makes of the rendered
pods (one per container port), keeps exactly each member's port named
patroni, labelled like the exporters' series, with the synchronous mode the
members are configured with. Rendered from inventories/vm (3 members)."""
import glob
import os

import yaml

from lib.monitoring_support import relabel
from lib.network_flows import load_objects, pod_template


def _docs(rendered, component, filename):
    with open(os.path.join(rendered, component, filename)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def _patroni_job(rendered):
    [configmap] = _docs(rendered, "monitoring", "prometheus-config.yaml")
    config = yaml.safe_load(configmap["data"]["prometheus.yml"])
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "patroni"]
    return job


def _patroni_yml(rendered):
    [configmap] = [d for d in _docs(rendered, "postgres", "configmap.yaml") if d["kind"] == "ConfigMap"]
    return yaml.safe_load(configmap["data"]["patroni.yml"])


def _label(name):
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _targets(workload, pod_name, extra_labels=None):
    """What Prometheus' pod discovery makes of one pod of a workload: a
    target per container port, with the pod's labels and namespace."""
    template = pod_template(workload)
    labels = {**(template["metadata"].get("labels") or {}), **(extra_labels or {})}
    base = {"__meta_kubernetes_namespace": workload["metadata"]["namespace"],
            "__meta_kubernetes_pod_name": pod_name, "__meta_kubernetes_pod_phase": "Running",
            **{f"__meta_kubernetes_pod_label_{_label(k)}": str(v) for k, v in labels.items()},
            **{f"__meta_kubernetes_pod_annotation_{_label(k)}": str(v)
               for k, v in (template["metadata"].get("annotations") or {}).items()}}
    for container in template["spec"]["containers"]:
        for port in container.get("ports", []):
            yield {**base, "__address__": f"10.42.0.9:{port['containerPort']}",
                   "__meta_kubernetes_pod_container_name": container["name"],
                   "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                   "__meta_kubernetes_pod_container_port_number": str(port["containerPort"])}


def test_the_job_keeps_each_members_patroni_port_only(rendered):
    rules = _patroni_job(rendered)["relabel_configs"]
    objects = load_objects(rendered)
    [statefulset] = [o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "postgres"]
    [patroni_port] = [p["containerPort"] for c in pod_template(statefulset)["spec"]["containers"]
                      for p in c.get("ports", []) if p.get("name") == "patroni"]
    namespace = statefulset["metadata"]["namespace"]
    synchronous = _patroni_yml(rendered)["bootstrap"]["dcs"]["synchronous_mode"]
    assert statefulset["spec"]["replicas"] == 3 and synchronous is True, "inventories/vm renders 3 members"
    for ordinal, role in enumerate(["primary", "replica", "replica"]):
        pod = f"postgres-{ordinal}"
        # Patroni adds its role label to the members' own.
        kept = [t for t in (relabel(t, rules) for t in _targets(statefulset, pod, {"role": role})) if t]
        assert len(kept) == 1, f"{pod}: {kept}"
        target = kept[0]
        assert target["__address__"] == f"10.42.0.9:{patroni_port}"
        assert {k: v for k, v in target.items() if not k.startswith("__")} == {
            "namespace": namespace, "pod": pod, "service": "postgres", "instance": "shared",
            "synchronous_mode": "true"}
    # The members' scope label is what selects them, not the name alone.
    outsider = {**statefulset, "spec": {**statefulset["spec"], "template": {
        **pod_template(statefulset), "metadata": {**pod_template(statefulset)["metadata"], "labels": {
            "app.kubernetes.io/name": "postgres"}}}}}
    assert not [t for t in _targets(outsider, "postgres-x") if relabel(t, rules)]
    # No other pod of any namespace yields a target.
    others = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
              and o is not statefulset]
    assert others
    for workload in others:
        assert not [t for t in _targets(workload, "x-0") if relabel(t, rules)], workload["metadata"]["name"]


def test_a_single_member_render_labels_the_scrape_without_synchronous_mode(tmp_path):
    """The label follows postgres_synchronous_mode as Patroni gets it: off
    with one member (the default)."""
    from static_support import run_ansible
    run_ansible("ansible-playbook", "playbooks/render.yml", "-i", "inventories/vm", "--tags", "postgres,monitoring",
                "-e", f"platform_render_dir={tmp_path}", "-e", "postgres_replicas=1")
    assert _patroni_yml(tmp_path)["bootstrap"]["dcs"]["synchronous_mode"] is False
    [replace] = [r for r in _patroni_job(tmp_path)["relabel_configs"] if r.get("target_label") == "synchronous_mode"]
    assert replace["replacement"] == "false"


def test_metrics_are_plain_http_without_credentials(rendered):
    """Patroni 4.1.5 checks credentials, client certificates and its
    allowlist only on the requests that change something (POST, PUT, PATCH,
    DELETE): GET /metrics answers anyone the NetworkPolicy lets through, over
    plain HTTP as long as patroni.yml sets no certificate."""
    restapi = _patroni_yml(rendered)["restapi"]
    assert "certfile" not in restapi and "verify_client" not in restapi
    job = _patroni_job(rendered)
    assert job.get("scheme", "http") == "http"
    assert not {"basic_auth", "authorization", "tls_config"} & set(job)
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_no_rendered_file_names_the_rest_api_password(rendered):
    """The job mounts no credential: neither the Secret nor its password
    file reaches the monitoring manifests."""
    for path in glob.glob(os.path.join(rendered, "monitoring", "*.yaml")):
        with open(path) as f:
            text = f.read()
        assert "postgres-patroni" not in text and "restapi-password" not in text, path
