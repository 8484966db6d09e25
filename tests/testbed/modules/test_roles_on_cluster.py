"""roles/postgres/tasks/databases.yml (the shared database, then each
tenant's through tasks/tenant.yml, as the instance role calls it) and roles/secrets (--tags rotate-secrets,
databases only) on the testbed, in namespaces of their own: databases and
Secrets are made, a re-run changes nothing, a rotation switches every login to
its other role, and a re-run of the databases afterwards keeps the rotation."""
import base64
import json
import os
import subprocess
import time
import uuid

import pytest
import yaml
from kubernetes import client, config

from lib.modrun import ROOT
from test_modules_on_cluster import PG_IMAGE, SUPERUSER_PW, consumer, secret, server_pod
from lib.testbed import KUBECONFIG, Kube

# The database tasks reach the pod Patroni labels primary
# (platform_postgres_primary_selector): the test's single server carries
# those labels, as the primary of a one-member cluster does.
with open(os.path.join(ROOT, "roles", "platform", "vars", "main.yml")) as f:
    PRIMARY_LABELS = dict(pair.split("=", 1) for pair in
                          yaml.safe_load(f)["platform_postgres_primary_selector"].split(","))

PLAY = """
- name: Exercise the database and rotation wiring
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/kubernetes.core.k8s:
      kubeconfig: "{{ platform_kubeconfig }}"
    group/superkubernetex.platform.kubernetes:
      kubeconfig: "{{ platform_kubeconfig }}"
  tasks:
    - name: Check the shared platform settings
      ansible.builtin.import_role:
        name: superkubernetex.platform.platform
    - name: Provision the shared database (roles/postgres/tasks/databases.yml only)
      ansible.builtin.include_role:
        name: superkubernetex.platform.postgres
        tasks_from: databases.yml
        apply:
          tags: [postgres_databases]
      tags: [postgres_databases]
    - name: Provision each tenant's database, as the instance role does
      ansible.builtin.include_role:
        name: superkubernetex.platform.postgres
        tasks_from: tenant.yml
        apply:
          tags: [postgres_databases]
      vars:
        instance_spec: "{{ __tenant }}"
      loop: "{{ platform_instances_resolved }}"
      loop_control:
        loop_var: __tenant
      tags: [postgres_databases]
    - name: Rotate the platform credentials
      ansible.builtin.import_role:
        name: superkubernetex.platform.secrets
"""


def playbook(tmp_path, prefix, tags):
    path = tmp_path / "play.yml"
    path.write_text(PLAY)
    extra = {
        "platform_kubeconfig": KUBECONFIG,
        "platform_namespaces": {"app": prefix + "app", "data": prefix + "data", "monitoring": prefix + "mon",
                                "logging": prefix + "log", "node_agents": prefix + "agents", "ingress": "kube-system"},
        "platform_instance_namespace_prefix": prefix,
        "platform_instances": [{"name": "instance1"}, {"name": "instance2"}],
        "postgres_metrics_role": "skx_metrics",
        "postgres_superkube_connection_limit": 40,
        "postgres_final_dump_dir": str(tmp_path / "dumps"),
        "secrets_rotate": ["databases"],
        "secrets_rollout_timeout": 180,
    }
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    proc = subprocess.run(["ansible-playbook", str(path), "--tags", tags, "-e", json.dumps(extra),
                           # A filled vault: the example's placeholders are refused.
                           "-e", "@tests/static/data/vault.test-values.yml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    doc = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("\n{") + 1:])[0]
    assert proc.returncode == 0, json.dumps(doc["plays"][0]["tasks"][-1], indent=1)[-3000:] + proc.stderr[-2000:]
    # A task run once per database (the shared one, then each tenant's)
    # reports changed when any of its runs changed.
    tasks = {}
    for t in doc["plays"][0]["tasks"]:
        result = t["hosts"]["localhost"]
        name = t["task"]["name"].split(" : ")[-1]
        if name in tasks:
            result = dict(result, changed=bool(tasks[name].get("changed")) or bool(result.get("changed")))
        tasks[name] = result
    return tasks, proc.stdout


def usernames(prefix):
    core = client.CoreV1Api(config.new_client_from_config(config_file=KUBECONFIG))
    result = {}
    for ns, name in ((prefix + "app", "auth-db"), (prefix + "app", "payment-db"),
                     (prefix + "instance1", "db-credentials"), (prefix + "instance2", "db-credentials")):
        data = core.read_namespaced_secret(name, ns).data
        result["%s/%s" % (ns, name)] = base64.b64decode(data["username"]).decode()
    return result


@pytest.fixture
def platform_namespaces(kube):
    prefix = "tbx%s-" % uuid.uuid4().hex[:5]
    names = [prefix + n for n in ("data", "app", "instance1", "instance2")]
    for name in names:
        kube.run("create", "namespace", name, namespaced=False)
    data = Kube(prefix + "data")
    server = server_pod("postgres-0", PG_IMAGE, {"POSTGRES_PASSWORD": SUPERUSER_PW})
    server["metadata"]["labels"].update(PRIMARY_LABELS)
    data.apply([server,
                secret("postgres-superuser", {"username": "postgres", "password": SUPERUSER_PW})])
    data.wait_pod_ready("postgres-0", timeout=300)
    yield prefix
    for name in names:
        kube.run("delete", "namespace", name, "--wait=false", check=False, namespaced=False)


def test_databases_then_rotation_then_databases_again(platform_namespaces, tmp_path):
    prefix = platform_namespaces
    data = Kube(prefix + "data")
    for attempt in range(60):  # the server restarts once after initdb
        if data.exec("postgres-0", "pg_isready", "-U", "postgres", check=False).returncode == 0:
            break
        time.sleep(2)

    first, out = playbook(tmp_path, prefix, "postgres_databases")
    created = first["Create each database with its owner and login roles"]
    assert created["changed"] is True
    assert SUPERUSER_PW not in out
    assert usernames(prefix) == {prefix + "app/auth-db": "superkube_auth_a",
                                 prefix + "app/payment-db": "superkube_payment_a",
                                 prefix + "instance1/db-credentials": "instance1_a",
                                 prefix + "instance2/db-credentials": "instance2_a"}

    again, out = playbook(tmp_path, prefix, "postgres_databases")
    assert again["Create each database with its owner and login roles"]["changed"] is False
    assert again["Apply the database credential Secrets"]["changed"] is False

    app = Kube(prefix + "app")
    app.apply([consumer("auth", "auth-db"), consumer("payment", "payment-db")])
    for n in ("instance1", "instance2"):
        Kube(prefix + n).apply([consumer("instance", "db-credentials")])
    for kube, name in ((app, "auth"), (app, "payment"), (Kube(prefix + "instance1"), "instance"),
                       (Kube(prefix + "instance2"), "instance")):
        kube.wait_rollout("deployment/" + name)

    rotated, out = playbook(tmp_path, prefix, "rotate-secrets")
    assert "Create each database with its owner and login roles" not in rotated  # nothing else ran
    assert rotated["Rotate the database login of each instance"]["changed"] is True
    names = usernames(prefix)
    assert set(names.values()) == {"superkube_auth_b", "superkube_payment_b", "instance1_b", "instance2_b"}

    after, out = playbook(tmp_path, prefix, "postgres_databases")
    assert after["Create each database with its owner and login roles"]["changed"] is False
    assert usernames(prefix) == names
