"""The validation play (playbooks/validate.yml) runs first for every shipped
inventory: well-formed values pass it, each bad value stops the run with a
message naming the variable before any host or cluster is contacted.

For inventories/vm the k3s hosts are pointed at a loopback port nothing
listens on: a run that got past the validation fails with a connection
error to that port, a run stopped by the validation never tries to connect.
"""
import json
import shutil
import socket

import pytest
import yaml

from static_support import ROOT, run_ansible

VALUES = f"{ROOT}/tests/static/data/vault.test-values.yml"
INVENTORIES = ["vm", "existing", "local", "testbed"]
K3S_PLAY = "PLAY [Install the k3s servers"


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_inventory(tmp_path, name):
    """A copy of a shipped inventory with its vault filled with test values;
    the vm hosts are moved to a closed loopback port."""
    dest = tmp_path / name
    shutil.copytree(f"{ROOT}/inventories/{name}", dest)
    vault = dest / "group_vars" / "all" / "vault.yml"
    if (dest / "group_vars" / "all" / "vault.example.yml").exists():
        shutil.copy(VALUES, vault)
    if name == "vm":
        hosts = yaml.safe_load((dest / "hosts.yml").read_text())
        port = closed_port()
        k3s = hosts["all"]["children"]["k3s_cluster"]["children"]
        for group in k3s.values():
            for host in group["hosts"].values():
                host.update(ansible_host="127.0.0.1", ansible_port=port)
        (dest / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return dest


def site(inventory, extra=None, env=None):
    args = ["ansible-playbook", "site.yml", "-i", str(inventory)]
    if extra:
        args += ["-e", json.dumps(extra)]
    proc = run_ansible(*args, env=env, check=False)
    return proc, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", INVENTORIES)
def test_well_formed_values_pass_the_validation(tmp_path, name):
    inventory = copy_inventory(tmp_path, name)
    proc = run_ansible("ansible-playbook", "playbooks/validate.yml", "-i", str(inventory), check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "failed=0" in proc.stdout


def test_vm_reaches_the_hosts_only_after_the_validation(tmp_path):
    """With good values the run goes on to the k3s hosts (and fails there:
    nothing listens on their port), so the bad-value cases below prove that
    the validation, not the connection, stopped them."""
    proc, out = site(copy_inventory(tmp_path, "vm"))
    assert proc.returncode != 0
    assert K3S_PLAY in out
    assert "UNREACHABLE" in out or "Connection refused" in out, out[-3000:]


BAD = [
    ({"vault_stripe_secret_key": "pk_live_51HxYzPublishableKey"}, "services_stripe_secret_key must be a Stripe secret"),
    ({"vault_stripe_secret_key": "sk_live_CHANGE_ME"}, "vault_stripe_secret_key"),
    ({"vault_stripe_webhook_secret": "not-a-webhook-secret"}, "services_stripe_webhook_secret a webhook signing secret"),
    ({"vault_alertmanager_slack_webhook_url": "http://hooks.slack.com/services/T0/B0/x"},
     "monitoring_alertmanager_slack_webhook_url and monitoring_alertmanager_deadmansswitch_url must be\nhttps://"),
    ({"monitoring_alertmanager_email_to": "ops@example.com", "monitoring_alertmanager_smtp_from": "am@example.com",
      "monitoring_alertmanager_smtp_smarthost": "smtp.example.com:99999"}, "with a port of 1-65535"),
    ({"platform_instances": [{"name": "app"}]}, "its namespace 'skx-app' is already platform_namespaces.app"),
    ({"platform_instances": [{"name": "monitoring"}]}, "is already platform_namespaces.monitoring"),
    ({"platform_instances": [{"name": "superkube"}]}, "its database role 'superkube' is already used"),
    ({"platform_instances": [{"name": "postgres-exporter"}]}, "its database role 'postgres_exporter' is already used"),
    ({"platform_instances": [{"name": "shop"}, {"name": "shop-a"}]}, "its database role 'shop_a' is already used"),
    ({"platform_instances": [{"name": "pg-shop"}]}, "would start with pg_"),
    ({"platform_instances": [{"name": "instance1", "replica": 3}]}, "platform_instances[0] has unknown field(s) replica"),
    ({"platform_instances": [{"name": "instance1", "host": "monitoring.superkubernetex.com"}]},
     "platform_instances[0] ('instance1').host 'monitoring.superkubernetex.com' is already platform_hosts.monitoring"),
    ({"monitoring_grafana_admin_password": "short"}, "monitoring_grafana_admin_password, when set, must have"),
    ({"secrets_rotate": ["databases", "everything"]}, "value of secrets_rotate must be one or more of"),
    ({"k3s_version": "1.33"}, "k3s_version must look like v1.33.5+k3s1"),
    ({"platform_jwt_ttl_seconds": 30}, "platform_jwt_ttl_seconds must be a number of seconds from 60 to 604800"),
    ({"platform_app_ops_port": 8080}, "platform_app_ops_port must be a port from 1 to 65535 other than 8080"),
    ({"ingress_tls_min_version": "VersionTLS11"}, "value of ingress_tls_min_version must be one of"),
    ({"ingress_tls_cipher_suites": ["ECDHE-RSA-AES128-SHA"]}, "ingress_tls_cipher_suites must be a non-empty list"),
    ({"backups_s3_enabled": True, "backups_s3_endpoint": "https://s3.example.net", "backups_s3_bucket": "skx-backups",
      "backups_s3_egress_cidrs": ["s3.example.net"]}, "backups_s3_egress_cidrs must be a non-empty list of CIDRs"),
    ({"namespaces_ingress_controller_extra_peers": [{"ipBlock": {"cidr": "10.0.0.5/32"}}]},
     "namespaces_ingress_controller_extra_peers was renamed platform_ingress_controller_extra_peers"),
    ({"monitoring_alertmanager_slack_egress_cidrs": ["hooks.slack.com"]},
     "monitoring_alertmanager_slack_egress_cidrs must be a non-empty list of CIDRs"),
]


def flat(text):
    return " ".join(text.split())


@pytest.mark.parametrize("extra, message", BAD, ids=[m[:40] for _, m in BAD])
def test_vm_bad_value_stops_before_any_host(tmp_path, extra, message):
    proc, out = site(copy_inventory(tmp_path, "vm"), extra)
    assert proc.returncode != 0
    assert flat(message) in flat(out), out[-3000:]
    assert K3S_PLAY not in out, "the k3s hosts were reached before the settings were checked"
    assert "UNREACHABLE" not in out
    for secret in ("pk_live_51HxYzPublishableKey", "not-a-webhook-secret", "sk_test_4eC39HqLyjWDarjtT1zdp7dc"):
        assert secret not in out, "a secret value appeared in the output"


@pytest.mark.parametrize("name", ["existing", "local", "testbed"])
@pytest.mark.parametrize("extra, message", [
    ({"services_stripe_secret_key": "pk_test_123"}, "services_stripe_secret_key must be a Stripe secret"),
    ({"platform_instances": [{"name": "data"}]}, "is already platform_namespaces.data"),
])
def test_other_inventories_stop_bad_values_before_the_cluster(tmp_path, name, extra, message):
    env = {"KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}
    proc, out = site(copy_inventory(tmp_path, name), extra, env=env)
    assert proc.returncode != 0
    assert flat(message) in flat(out), out[-3000:]
    assert "Kubernetes API of the cluster did not answer" not in out, "the cluster was contacted first"


def test_an_unreachable_cluster_is_named(tmp_path):
    """existing: the reachability check names the kubeconfig, context and API URL."""
    port = closed_port()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "customer",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}", "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "customer", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token-9f8e"}}]}))
    proc, out = site(copy_inventory(tmp_path, "existing"), env={"KUBECONFIG": str(kubeconfig)})
    assert proc.returncode != 0
    text = flat(out)
    assert "The Kubernetes API of the cluster did not answer" in text, out[-3000:]
    assert f"kubeconfig: {kubeconfig}" in text
    assert "context: customer" in text
    assert f"API URL: https://127.0.0.1:{port}" in text
    assert "not-a-real-token-9f8e" not in out
    assert "changed=0" in out


def test_vm_without_a_vault_stops_on_the_example_placeholders(tmp_path):
    """A new user who has not written vault.yml yet: the example's CHANGE_ME
    values (loaded from group_vars/all) are refused, by name, before SSH."""
    inventory = copy_inventory(tmp_path, "vm")
    (inventory / "group_vars" / "all" / "vault.yml").unlink()
    proc, out = site(inventory)
    assert proc.returncode != 0
    assert "still hold a placeholder (CHANGE_ME) of vault.example.yml" in flat(out)
    assert "vault_stripe_secret_key" in out
    assert K3S_PLAY not in out
