"""Per-host TLS Secrets in the rendered manifests of inventories/vm (issue 14,
least privilege): each tenant folder's TLS Secret is for its own host only,
and a namespace holds a TLS Secret for each host its Ingresses serve and for
no other. Render mode writes placeholders: the Secret says its host in the
annotation superkubernetex.com/host (tests/e2e/test_e2e_tls.py reads the
certificates themselves on the testbed)."""
import collections
import os

from test_manifests import TENANTS, documents

HOST_ANNOTATION = "superkubernetex.com/host"


def tls_secrets(rendered):
    return [(path, doc) for path, doc in documents(rendered)
            if doc["kind"] == "Secret" and doc.get("type") == "kubernetes.io/tls"]


def ingress_hosts(rendered):
    """(namespace, host) -> (folder, secretName) of every Ingress."""
    served = {}
    for path, doc in documents(rendered):
        if doc["kind"] != "Ingress":
            continue
        rules = {rule["host"] for rule in doc["spec"]["rules"]}
        for tls in doc["spec"].get("tls", []):
            assert len(tls["hosts"]) == 1, f"{path}: one host per TLS entry, each with its own Secret"
            assert set(tls["hosts"]) <= rules, path
            served[(doc["metadata"]["namespace"], tls["hosts"][0])] = (os.path.dirname(path), tls["secretName"])
    return served


def test_each_tenant_folder_holds_one_tls_secret_for_its_own_host_only(rendered):
    served = ingress_hosts(rendered)
    for tenant in TENANTS:
        namespace = f"skx-{tenant}"
        hosts = [host for ns, host in served if ns == namespace]
        assert len(hosts) == 1, f"{tenant}: its Ingress serves {hosts}"
        secrets = [(path, doc) for path, doc in tls_secrets(rendered) if doc["metadata"]["namespace"] == namespace]
        assert [path for path, _ in secrets] == [f"{tenant}/secret-tls.yaml"], secrets
        doc = secrets[0][1]
        assert doc["metadata"]["annotations"] == {HOST_ANNOTATION: hosts[0]}
        assert served[(namespace, hosts[0])] == (tenant, doc["metadata"]["name"])
        assert set(doc["stringData"].values()) == {"CHANGE_ME"}


def test_every_ingress_names_a_secret_of_its_namespace_made_for_its_host(rendered):
    made = {(doc["metadata"]["namespace"], doc["metadata"]["name"]): doc["metadata"]["annotations"][HOST_ANNOTATION]
            for _, doc in tls_secrets(rendered)}
    for (namespace, host), (folder, secret) in ingress_hosts(rendered).items():
        assert made.get((namespace, secret)) == host, f"{folder}: the Ingress of {host} names {namespace}/{secret}"


def test_a_namespace_holds_tls_secrets_for_the_hosts_its_ingresses_serve_and_no_other(rendered):
    held = collections.defaultdict(list)
    for _, doc in tls_secrets(rendered):
        held[doc["metadata"]["namespace"]].append(doc["metadata"]["annotations"][HOST_ANNOTATION])
    served = collections.defaultdict(list)
    for namespace, host in ingress_hosts(rendered):
        served[namespace].append(host)
    assert {ns: sorted(h) for ns, h in held.items()} == {ns: sorted(h) for ns, h in served.items()}
    # The shared hosts: frontend, auth and payment in the app namespace, Grafana's in the monitoring one.
    assert sorted(held["skx-app"]) == ["auth.superkubernetex.com", "pay.superkubernetex.com", "superkubernetex.com"]
    assert held["skx-monitoring"] == ["monitoring.superkubernetex.com"]
