"""Tenant lifecycle in render mode (no cluster): a stopped tenant (state:
absent) renders no workload and no Ingress but keeps its namespace objects,
its files volume and its backup; delete_data: true renders nothing of the
tenant; alerts of stopped tenants are dropped (docs/user-guide.md, "Adding
and removing a tenant")."""
import json

import pytest
import yaml

from static_support import run_ansible
from test_manifests import documents

INSTANCES = [
    {"name": "instance1"},
    {"name": "instance2", "state": "absent"},
    {"name": "instance3", "state": "absent", "delete_data": True},
]


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    """Render only the steps that act on tenants, with one tenant of each lifecycle."""
    out = tmp_path_factory.mktemp("lifecycle")
    run_ansible("ansible-playbook", "playbooks/render.yml", "-i", "inventories/vm",
                "--tags", "namespaces,ingress,instances,monitoring,backups",
                "-e", f"platform_render_dir={out}", "-e", json.dumps({"platform_instances": INSTANCES}))
    return {(doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]): doc
            for _, doc in documents(out)}, out


def _in(objects, namespace):
    return {(kind, name) for kind, ns, name in objects if ns == namespace}


def test_a_serving_tenant_renders_its_workloads(lifecycle):
    objects, _ = lifecycle
    assert {("Deployment", "instance"), ("Ingress", "instance"), ("Service", "instance"),
            ("HorizontalPodAutoscaler", "instance"), ("PodDisruptionBudget", "instance"),
            ("PersistentVolumeClaim", "instance-files")} <= _in(objects, "skx-instance1")


def test_a_stopped_tenant_renders_no_workload_but_keeps_its_namespace_volume_and_backup(lifecycle):
    objects, _ = lifecycle
    kept = _in(objects, "skx-instance2")
    assert not {k for k, _ in kept} & {"Deployment", "Ingress", "Service", "HorizontalPodAutoscaler",
                                       "PodDisruptionBudget", "ConfigMap"}, kept
    assert ("PersistentVolumeClaim", "instance-files") in kept
    assert any(kind == "ResourceQuota" for kind, _ in kept), kept
    assert {("NetworkPolicy", "default-deny"), ("NetworkPolicy", "allow-web-to-data")} <= kept, kept
    namespace = objects[("Namespace", "", "skx-instance2")]
    assert namespace["metadata"]["labels"]["superkubernetex.com/instance"] == "instance2"
    assert namespace["metadata"]["annotations"]["superkubernetex.com/host"] == "inst2.superkubernetex.com"
    assert ("CronJob", "skx-data", "backup-instance2-db") in objects
    verify = objects[("CronJob", "skx-data", "backup-verify")]
    args = verify["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--database=instance2_db" in args


def test_a_tenant_deleted_with_its_data_renders_nothing(lifecycle):
    objects, _ = lifecycle
    assert _in(objects, "skx-instance3") == set()
    assert ("Namespace", "", "skx-instance3") not in objects
    assert ("CronJob", "skx-data", "backup-instance3-db") not in objects
    verify = objects[("CronJob", "skx-data", "backup-verify")]
    assert "--database=instance3_db" not in json.dumps(verify)


def test_alerts_of_stopped_tenants_are_dropped_before_alertmanager(lifecycle):
    objects, _ = lifecycle
    config = yaml.safe_load(objects[("ConfigMap", "skx-monitoring", "prometheus-config")]["data"]["prometheus.yml"])
    [drop] = config["alerting"]["alert_relabel_configs"]
    assert drop == {"source_labels": ["instance"], "regex": "instance2|instance3", "action": "drop"}


def test_every_tenant_namespace_carries_the_label_runs_find_it_by(lifecycle):
    objects, _ = lifecycle
    tenants = {name: doc["metadata"]["labels"].get("superkubernetex.com/instance")
               for (kind, _, name), doc in objects.items()
               if kind == "Namespace" and doc["metadata"]["labels"].get("superkubernetex.com/concern") == "instance"}
    assert tenants == {"skx-instance1": "instance1", "skx-instance2": "instance2"}


def test_the_instances_tag_renders_every_object_of_each_tenant(tmp_path):
    """docs/user-guide.md: --tags instances applies all of a tenant's objects."""
    out = tmp_path / "instances"
    run_ansible("ansible-playbook", "playbooks/render.yml", "-i", "inventories/vm", "--tags", "instances",
                "-e", f"platform_render_dir={out}")
    assert sorted(p.name for p in out.iterdir()) == ["instance1", "instance2", "instance3"]
    kinds = {doc["kind"] for path, doc in documents(out) if path.startswith("instance2/")}
    assert kinds == {"Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy", "Secret", "PersistentVolumeClaim",
                     "ConfigMap", "Deployment", "Service", "Ingress", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget", "CronJob"}
