"""The network flows the rendered NetworkPolicies allow (inventories/vm):
docs/network-flows.md must be what the policies say, so that a policy change
is reviewed as a diff of allowed flows; and two promises of the platform are
checked on every port: tenants cannot reach each other, and the internet
reaches pods only through the ingress controller."""
import difflib
import json
import os

import pytest
import yaml

from lib.netpol import Cluster, allowed, pod, verdict
from lib.network_flows import (API_SERVER, BEGIN, END, INGRESS_CONTROLLER, INTERNET, OUTSIDE_SOURCES, REGENERATE,
                               candidate_ports, generated_part, load_objects, table, tenant_namespaces, workloads)
from static_support import ROOT, run_ansible

DOC = os.path.join(ROOT, "docs", "network-flows.md")


@pytest.fixture(scope="module")
def platform(rendered):
    """The policies and pods of the session's render of inventories/vm (the
    `rendered` fixture of conftest.py: one render for every static test).
    Besides the workloads, one unlabelled pod per namespace: the default-deny
    policies protect the pods no other policy selects, and without such a pod
    losing one would go unnoticed (every rendered pod is also selected by a
    narrower policy)."""
    objects = load_objects(rendered)
    cluster, pods = Cluster(objects), workloads(objects)
    bare = [pod(ns, {}, [(8080, "TCP", "http")], name=f"{ns}/(unlabelled pod)")
            for ns in sorted({p.namespace for p in pods})]
    return cluster, pods + bare


def test_flow_table_matches_the_rendered_policies(rendered):
    with open(DOC) as f:
        text = f.read()
    assert BEGIN in text and END in text, f"{DOC} lost its generated-part markers"
    documented, generated = generated_part(text), table(rendered)
    diff = "".join(difflib.unified_diff(documented.splitlines(True), generated.splitlines(True),
                                        "docs/network-flows.md", "rendered policies", n=1))
    if documented != generated:
        pytest.fail(f"docs/network-flows.md disagrees with the rendered NetworkPolicies:\n{diff}\n"
                    f"Review the change, then regenerate it from the repository root:\n  {REGENERATE}")


def summary(flows):
    """One line per destination: a refused-everywhere invariant that breaks
    tends to break on every probed port."""
    by_destination = {}
    for source, destination, port in flows:
        by_destination.setdefault((source, destination), []).append(port)
    return "\n".join(f"{s} -> {d}: {', '.join(ports[:6])}{' ...' if len(ports) > 6 else ''} ({len(ports)} port/protocol pairs)"
                     for (s, d), ports in by_destination.items())


def tenant_pods(cluster, pods):
    return [p for p in pods if p.namespace in tenant_namespaces(cluster)]


def test_the_render_has_three_tenants(platform):
    """The invariants below would pass vacuously without tenant pods."""
    cluster, pods = platform
    assert {p.namespace for p in tenant_pods(cluster, pods)} == {"skx-instance1", "skx-instance2", "skx-instance3"}


def test_no_tenant_reaches_another_tenant_on_any_port(platform):
    cluster, pods = platform
    tenants = tenant_pods(cluster, pods)
    leaks = [(s.name, d.name, f"{n}/{proto}")
             for s in tenants for d in tenants if s.namespace != d.namespace
             for n, proto in candidate_ports(cluster, d) if allowed(cluster, s, d, n, proto)]
    assert not leaks, "a tenant reaches another tenant:\n" + summary(leaks)


def test_the_internet_reaches_no_pod_directly(platform):
    """Only the ingress controller (kube-system, outside the platform's
    policies) faces the internet; every pod of the platform refuses it."""
    cluster, pods = platform
    open_ = [(INTERNET.name, d.name, f"{n}/{proto}") for d in pods
             for n, proto in candidate_ports(cluster, d) if allowed(cluster, INTERNET, d, n, proto)]
    assert not open_, "pods admitting the internet (203.0.113.10) directly:\n" + summary(open_)


@pytest.mark.parametrize("source, target, port, opens", [
    ("auth", "postgres", 5432, True), ("payment", "postgres", 5432, True), ("frontend", "postgres", 5432, False),
    ("frontend", "redis", 6379, True), ("auth", "redis", 6379, False), ("payment", "redis", 6379, False)])
def test_the_web_tiers_own_egress_opens_only_the_store_it_needs(platform, source, target, port, opens):
    """Each end of a flow follows the need (docs/architecture.md): the source's
    egress alone, not only the data side's ingress, refuses a store the
    service does not use (auth and payment keep their data in PostgreSQL, the
    frontend its sessions in Redis)."""
    cluster, pods = platform
    [src] = [p for p in pods if p.namespace == "skx-app" and p.labels.get("app.kubernetes.io/name") == source]
    [dst] = [p for p in pods if p.namespace == "skx-data" and p.labels.get("app.kubernetes.io/name") == target]
    assert bool(verdict(cluster, src, dst, port).egress) == opens


OPS_PORT = yaml.safe_load(open(os.path.join(ROOT, "roles", "platform", "defaults", "main.yml")))["platform_app_ops_port"]


def test_only_prometheus_opens_the_apps_operations_port(platform):
    """/metrics, /healthz and /readyz live on the apps' operations port
    (platform_app_ops_port): of every source, Prometheus alone may open it on
    every web pod, and may not open their application port; the ingress
    controller opens the application port only."""
    cluster, pods = platform
    web = [p for p in pods if p.labels.get("superkubernetex.com/tier") == "web"]
    assert sorted(p.name for p in web) == ["skx-app/auth", "skx-app/frontend", "skx-app/payment",
                                           "skx-instance1/instance", "skx-instance2/instance",
                                           "skx-instance3/instance"]
    for destination in web:
        openers = sorted(s.name for s in pods + list(OUTSIDE_SOURCES) if allowed(cluster, s, destination, OPS_PORT))
        assert openers == ["skx-monitoring/prometheus"], f"{destination.name}:{OPS_PORT} opened by {openers}"
        [prometheus] = [p for p in pods if p.name == "skx-monitoring/prometheus"]
        assert not allowed(cluster, prometheus, destination, 8080), destination.name
        assert allowed(cluster, INGRESS_CONTROLLER, destination, 8080), destination.name
        assert not allowed(cluster, INGRESS_CONTROLLER, destination, OPS_PORT), destination.name


def test_only_prometheus_and_the_members_open_patronis_rest_api(platform, rendered):
    """Patroni's REST API (the members' port named patroni) answers the
    other members (leader race, failsafe mode) and Prometheus, which scrapes
    /metrics there; no other source opens it, and Prometheus no other port
    of the members than it and the exporter's."""
    cluster, pods = platform
    [statefulset] = [o for o in load_objects(rendered) if o["kind"] == "StatefulSet"
                     and o["metadata"]["name"] == "postgres"]
    ports = {p.get("name"): p["containerPort"] for c in statefulset["spec"]["template"]["spec"]["containers"]
             for p in c.get("ports", [])}
    api_port, exporter_port = ports["patroni"], ports["metrics"]
    [member] = [p for p in pods if p.name == "skx-data/postgres"]
    openers = sorted(s.name for s in pods + list(OUTSIDE_SOURCES) if allowed(cluster, s, member, api_port))
    assert openers == ["skx-data/postgres", "skx-monitoring/prometheus"], openers
    [prometheus] = [p for p in pods if p.name == "skx-monitoring/prometheus"]
    scraped = sorted(n for n, proto in candidate_ports(cluster, member) if allowed(cluster, prometheus, member, n, proto))
    assert scraped == sorted([api_port, exporter_port]), scraped


def internet_ports_of(cluster, pods, name):
    """The (port, protocol) pairs the named pod may open to an internet address."""
    [source] = [p for p in pods if p.labels.get("app.kubernetes.io/name") == name]
    return [(port, "TCP") for port in THIRD_PARTY_PORTS if allowed(cluster, source, INTERNET, port, "TCP")]


# Every port a receiver, the catalogue or Stripe could use below, and the
# ones the previous policies opened to any address.
THIRD_PARTY_PORTS = (25, 80, 443, 465, 587, 2525, 8443, 9090, 9428)


THIRD_PARTIES_OFF = dict(monitoring_alertmanager_email_to="", monitoring_alertmanager_slack_webhook_url="",
                         monitoring_alertmanager_deadmansswitch_url="", monitoring_grafana_plugins=[],
                         services_stripe_mock=True)
THIRD_PARTIES_ON = dict(monitoring_alertmanager_email_to="ops@example.com",
                        monitoring_alertmanager_smtp_smarthost="smtp.example.com:2525",
                        monitoring_alertmanager_smtp_from="alerts@example.com",
                        monitoring_alertmanager_smtp_egress_cidrs=["198.51.100.0/24"],
                        monitoring_alertmanager_slack_webhook_url="https://hooks.slack.com/services/T/B/x",
                        monitoring_alertmanager_slack_egress_cidrs=["203.0.113.0/24"],
                        monitoring_alertmanager_deadmansswitch_url="https://dms.example.com:8443/ping",
                        monitoring_grafana_plugins=["victoriametrics-logs-datasource"],
                        monitoring_grafana_plugins_egress_cidrs=["192.0.2.0/24"])


@pytest.mark.parametrize("settings, expected", [
    (THIRD_PARTIES_OFF, {"alertmanager": [], "grafana": [], "payment": []}),
    # 203.0.113.10 (the probe address) is inside Slack's list only: SMTP and
    # the plugin catalogue are limited to their own lists.
    (THIRD_PARTIES_ON, {"alertmanager": [(443, "TCP"), (8443, "TCP")], "grafana": [], "payment": [(443, "TCP")]}),
], ids=["none-configured", "all-configured"])
def test_third_parties_are_reachable_only_when_configured_on_their_port_and_list(tmp_path, settings, expected):
    """Egress to a third party (mail relay, Slack, the dead man's switch, the
    plugin catalogue, Stripe) exists only while that integration is set, on
    its port, towards its operator-set CIDR list (docs/user-guide.md)."""
    out = tmp_path / "manifests"
    run_ansible("ansible-playbook", "playbooks/render.yml", "-i", "inventories/vm", "--tags", "namespaces,apps,monitoring",
                "-e", f"platform_render_dir={out}", "-e", json.dumps(settings))
    objects = load_objects(out)
    cluster, pods = Cluster(objects), workloads(objects)
    for name, ports in expected.items():
        assert internet_ports_of(cluster, pods, name) == ports, name


API_CALLERS = ("prometheus", "kube-state-metrics", "vlagent", "postgres")


@pytest.mark.parametrize("cidrs, internet", [
    ([], [(443, "TCP"), (6443, "TCP")]),
    (["192.0.2.11/32"], []),
], ids=["render-without-cluster", "addresses-known"])
def test_the_pods_that_call_the_api_reach_its_addresses_only_once_known(tmp_path, cidrs, internet):
    """The API callers' egress on 443 and 6443 goes to the API server's
    addresses (platform_api_server_cidrs, or read from the cluster at deploy
    time, which tests/e2e/test_e2e_observability.py relies on); a render
    without them writes any address."""
    out = tmp_path / "manifests"
    run_ansible("ansible-playbook", "playbooks/render.yml", "-i", "inventories/vm",
                "--tags", "namespaces,postgres,monitoring,logging",
                "-e", f"platform_render_dir={out}", "-e", json.dumps({"platform_api_server_cidrs": cidrs}))
    objects = load_objects(out)
    cluster, pods = Cluster(objects), workloads(objects)
    for name in API_CALLERS:
        [source] = [p for p in pods if p.labels.get("app.kubernetes.io/name") == name]
        assert allowed(cluster, source, API_SERVER, 6443, "TCP"), name
        assert [(port, "TCP") for port in (443, 6443) if allowed(cluster, source, INTERNET, port, "TCP")] == internet
