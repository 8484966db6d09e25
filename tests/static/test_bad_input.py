"""Bad input stops the run early with a message naming the variable.

Each case runs the real playbook in render mode (no cluster is contacted) or
the preflight of a role, and asserts on the message an operator would read.
"""
import json

import pytest

from static_support import run_ansible


def render_with(tmp_path, **extra):
    return run_ansible("ansible-playbook", "playbooks/render.yml", "-i", "inventories/vm",
                       "-e", f"platform_render_dir={tmp_path}", "-e", json.dumps(extra), check=False)


@pytest.mark.parametrize("extra, message", [
    ({"platform_instances": "instance1"}, "platform_instances"),
    ({"platform_instances": [{"name": "instance1", "replica": 3}]},
     "platform_instances[0] has unknown field(s) replica"),
    ({"platform_instances": [{"name": "instance1"}, {"name": "instance2", "host": "inst1.superkubernetex.com"}]},
     "platform_instances[1].host 'inst1.superkubernetex.com' is used by another instance"),
    ({"platform_instances": [{"name": "instance1", "host": "auth.superkubernetex.com"}]},
     "host 'auth.superkubernetex.com' is already platform_hosts.auth"),
    ({"platform_domain": "Not A Domain"}, "platform_domain must be a lower-case DNS name"),
    ({"platform_images": {"postgres": "postgres"}}, "platform_images.postgres must be a full image reference"),
    ({"platform_registry": "Registry Example"}, "platform_registry must be a registry host with an optional path"),
    ({"postgres_storage_size": "lots"}, "postgres_storage_size must be a quantity"),
    ({"services_replicas_min": "two"}, "services_replicas_min"),
    # An inventory written before the shared services had a role of their own.
    ({"app_stripe_mock": True}, "app_stripe_mock was renamed services_stripe_mock: rename it in the inventory"),
    # An inventory written before the node agents had their namespace.
    ({"platform_namespaces": {"app": "skx-app", "data": "skx-data", "monitoring": "skx-monitoring",
                              "logging": "skx-logging", "ingress": "kube-system"}},
     "platform_namespaces must map app, data, monitoring, logging, node_agents and ingress"),
    ({"platform_api_server_cidrs": ["api.example.com"]}, "platform_api_server_cidrs must be a list of CIDRs"),
    ({"ingress_hsts_max_age": 600}, "ingress_hsts_max_age was renamed platform_hsts_max_age"),
    # The export turned on in a production inventory whose endpoint and bucket
    # were not filled in.
    ({"backups_s3_enabled": True}, "backups_s3_endpoint must be an http(s) URL (got '')"),
    ({"backups_s3_enabled": True, "backups_s3_endpoint": "https://s3.example.net"},
     "backups_s3_bucket a bucket name (got '')"),
    ({"platform_routing": "gateways"}, "value of platform_routing must be one of: ingress, gateway, got: gateways"),
    ({"platform_routing": "gateway", "ingress_gateway_listener_ports": {"http": 80}},
     "ingress_gateway_listener_ports empty or a mapping {http: PORT, https: PORT}"),
    ({"platform_routing": "gateway", "platform_gateway_name": "My Gateway"},
     "platform_gateway_name must be a DNS label"),
])
def test_render_refuses_bad_input(tmp_path, extra, message):
    proc = render_with(tmp_path, **extra)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not list(tmp_path.glob("*/*.yaml")), "nothing may be written before the input is checked"


def test_an_even_number_of_etcd_servers_is_refused(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    k3s_server:\n      hosts:\n"
        "        s1: {ansible_connection: local}\n        s2: {ansible_connection: local}\n")
    proc = run_ansible("ansible-playbook", "playbooks/cluster.yml", "-i", str(inventory), "--check",
                       "--tags", "k3s_preflight", "-e", "ansible_become=false",
                       "-e", "ansible_python_interpreter=auto_silent", check=False)
    assert proc.returncode != 0
    assert "k3s_server has 2 hosts: embedded etcd needs an odd number" in proc.stdout


@pytest.mark.parametrize("stripe_key, messages", [
    ("{{ vault_stripe_secret_key }}", ["'vault_stripe_secret_key' is undefined", "vault.example.yml"]),
    ("", ["services_stripe_secret_key and services_stripe_webhook_secret must be set"]),
])
def test_missing_stripe_keys_are_named(tmp_path, stripe_key, messages):
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: superkubernetex.platform.services\n"
        "        tasks_from: preflight.yml\n      vars:\n"
        f"        services_stripe_secret_key: {json.dumps(stripe_key)}\n")
    proc = run_ansible("ansible-playbook", str(playbook), "-i", "localhost,", "-c", "local", check=False)
    assert proc.returncode != 0
    for message in messages:
        assert message in proc.stdout
