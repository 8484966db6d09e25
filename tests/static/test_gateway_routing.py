"""Gateway routing (platform_routing: gateway) in the rendered manifests of
inventories/vm: the Gateway API objects replace the Ingresses, one HTTPS
listener per host that presents that host's own certificate and admits
routes from that host's namespace only, one HTTPRoute per host attached to
its own listener with the HSTS headers, one ReferenceGrant per TLS Secret,
the HTTP listener only redirecting, the Gateway API CRDs of the version the
collection's Traefik implements, and Traefik's gateway provider. The
testbed runs the same objects (tests/testbed/test_gateway_mode.py)."""
import os
import re

import pytest
import yaml

from static_support import ROOT, run_ansible
from test_manifests import documents

GATEWAY_API = "gateway.networking.k8s.io"
TEMPLATES = os.path.join(ROOT, "roles", "ingress", "templates")


@pytest.fixture(scope="module")
def gateway_render(tmp_path_factory):
    out = tmp_path_factory.mktemp("gateway")
    run_ansible("ansible-playbook", "playbooks/render.yml", "-i", "inventories/vm",
                "-e", f"platform_render_dir={out}", "-e", "platform_routing=gateway",
                "-e", "ingress_install_traefik=always")
    return out


def by_kind(root, kind):
    return [(path, doc) for path, doc in documents(root) if doc["kind"] == kind]


def test_no_ingress_and_one_gateway(gateway_render):
    assert not by_kind(gateway_render, "Ingress")
    [(path, gateway)] = by_kind(gateway_render, "Gateway")
    assert path == "ingress/gateway.yaml"
    [(_, gateway_class)] = by_kind(gateway_render, "GatewayClass")
    assert gateway_class["spec"]["controllerName"] == "traefik.io/gateway-controller"
    assert gateway["spec"]["gatewayClassName"] == gateway_class["metadata"]["name"]


def test_each_host_has_its_listener_route_certificate_and_grant(gateway_render):
    [(_, gateway)] = by_kind(gateway_render, "Gateway")
    gw_ns, gw_name = gateway["metadata"]["namespace"], gateway["metadata"]["name"]
    listeners = {item["name"]: item for item in gateway["spec"]["listeners"]}
    https = {name: item for name, item in listeners.items() if item["protocol"] == "HTTPS"}
    routes = [doc for _, doc in by_kind(gateway_render, "HTTPRoute") if doc["metadata"]["namespace"] != gw_ns]
    grants = {(doc["metadata"]["namespace"], to["name"]): doc
              for _, doc in by_kind(gateway_render, "ReferenceGrant") for to in doc["spec"]["to"]}
    secrets = {(doc["metadata"]["namespace"], doc["metadata"]["name"]): doc
               for _, doc in by_kind(gateway_render, "Secret") if doc.get("type") == "kubernetes.io/tls"}
    # Frontend, auth, payment, Grafana and the three tenants: one listener,
    # one route each, and a route per listener.
    assert len(https) == len(routes) == 7, (sorted(https), [r["metadata"]["name"] for r in routes])
    served = set()
    for route in routes:
        ns = route["metadata"]["namespace"]
        [parent] = route["spec"]["parentRefs"]
        assert (parent["namespace"], parent["name"], parent["kind"]) == (gw_ns, gw_name, "Gateway")
        listener = https[parent["sectionName"]]
        [host] = route["spec"]["hostnames"]
        assert listener["hostname"] == host and host not in served
        served.add(host)
        # The listener admits HTTPRoutes of this namespace only.
        allowed = listener["allowedRoutes"]
        assert allowed["namespaces"] == {"from": "Selector",
                                         "selector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        assert allowed["kinds"] == [{"group": GATEWAY_API, "kind": "HTTPRoute"}]
        # Its certificate: the TLS Secret made for this host, in this namespace,
        # readable by the Gateway through a grant naming that Secret alone.
        [ref] = listener["tls"]["certificateRefs"]
        assert listener["tls"]["mode"] == "Terminate" and ref["kind"] == "Secret" and ref["namespace"] == ns
        secret = secrets[(ns, ref["name"])]
        assert secret["metadata"]["annotations"]["superkubernetex.com/host"] == host
        grant = grants[(ns, ref["name"])]
        assert grant["spec"]["from"] == [{"group": GATEWAY_API, "kind": "Gateway", "namespace": gw_ns}]
        assert grant["spec"]["to"] == [{"group": "", "kind": "Secret", "name": ref["name"]}]
        # HSTS and the safe headers on every answer, as the Middleware sets them.
        [rule] = route["spec"]["rules"]
        [header_filter] = rule["filters"]
        headers = {h["name"]: h["value"] for h in header_filter["responseHeaderModifier"]["set"]}
        assert re.fullmatch(r"max-age=\d{7,}; includeSubDomains", headers["Strict-Transport-Security"])
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
        [backend] = rule["backendRefs"]
        assert backend["name"] == route["metadata"]["name"]
    assert len(grants) == len(https)
    assert {host.split(".", 1)[0] for host in served} >= {"auth", "pay", "monitoring", "inst1", "inst2", "inst3"}


def test_plain_http_only_redirects_to_https(gateway_render):
    [(_, gateway)] = by_kind(gateway_render, "Gateway")
    [http] = [item for item in gateway["spec"]["listeners"] if item["protocol"] == "HTTP"]
    assert http["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    [redirect] = [doc for _, doc in by_kind(gateway_render, "HTTPRoute")
                  if doc["metadata"]["namespace"] == gateway["metadata"]["namespace"]]
    assert redirect["spec"]["parentRefs"][0]["sectionName"] == "http"
    assert redirect["spec"]["rules"] == [{"filters": [{"type": "RequestRedirect", "requestRedirect":
                                                       {"scheme": "https", "statusCode": 301}}]}]


def test_traefik_gets_the_gateway_provider_and_its_rights(gateway_render, rendered):
    gateway_traefik = {doc["kind"]: doc for path, doc in documents(gateway_render) if path == "ingress/traefik.yaml"}
    args = gateway_traefik["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--providers.kubernetesgateway=true" in args
    groups = [g for rule in gateway_traefik["ClusterRole"]["rules"] for g in rule["apiGroups"]]
    assert GATEWAY_API in groups
    # The default render (ingress routing) holds no Gateway API object.
    assert not [d for _, d in documents(rendered) if d["apiVersion"].startswith(GATEWAY_API + "/")]
    helm = [d for _, d in documents(gateway_render) if d["kind"] == "HelmChartConfig"]
    values = yaml.safe_load(helm[0]["spec"]["valuesContent"])
    assert values["providers"]["kubernetesGateway"] == {"enabled": True}
    # The role makes the class and the Gateway, not k3s' chart.
    assert values["gatewayClass"] == values["gateway"] == {"enabled": False}


def test_the_gateway_api_crds_are_the_release_traefik_implements(gateway_render):
    with open(os.path.join(TEMPLATES, "gateway-api-crds.yaml.j2")) as f:
        text = f.read()
    header = re.match(r"# Gateway API (v[0-9.]+) CRDs, standard channel", text)
    assert header, "gateway-api-crds.yaml.j2 must start with '# Gateway API <version> CRDs, standard channel'"
    crds = [d for d in yaml.safe_load_all(text) if d]
    names = sorted(d["spec"]["names"]["plural"] for d in crds)
    # What Traefik's gateway provider reads without its experimental channel.
    assert names == ["backendtlspolicies", "gatewayclasses", "gateways", "grpcroutes", "httproutes",
                     "referencegrants"]
    for crd in crds:
        annotations = crd["metadata"]["annotations"]
        assert annotations["gateway.networking.k8s.io/bundle-version"] == header.group(1)
        assert annotations["gateway.networking.k8s.io/channel"] == "standard"
    assert not re.search(r"\{\{|\{%|\{#", text)
    rendered_crds = [d for p, d in documents(gateway_render) if p == "ingress/gateway-api-crds.yaml"]
    assert rendered_crds == crds
