"""No health or metrics endpoint from outside (issue 14), in the rendered
manifests of inventories/vm: every service built from apps/ listens on its
operations port (platform_app_ops_port, the apps' OPS_PORT) for /healthz,
/readyz and /metrics; the probes and the Prometheus annotations point there;
no Service exposes it, so no Ingress can route it; Grafana's own /metrics is
off. The network side (Prometheus alone opens that port) is in
test_network_flows.py."""
import glob
import os

import pytest
import yaml

from static_support import ROOT

OPS_PORT = yaml.safe_load(open(os.path.join(ROOT, "roles", "platform", "defaults", "main.yml")))["platform_app_ops_port"]
APP_IMAGES = ("/frontend:", "/auth:", "/payment:", "/instance:")
WORKLOADS = ["skx-app/frontend", "skx-app/auth", "skx-app/payment",
             "skx-instance1/instance", "skx-instance2/instance", "skx-instance3/instance"]


def objects(rendered, kind):
    found = {}
    for path in sorted(glob.glob(f"{rendered}/*/*.yaml")):
        for doc in yaml.safe_load_all(open(path)):
            if doc and doc["kind"] == kind:
                found[f"{doc['metadata']['namespace']}/{doc['metadata']['name']}"] = doc
    return found


@pytest.fixture(scope="module")
def apps(rendered):
    """The Deployments running an image built from apps/."""
    return {name: d for name, d in objects(rendered, "Deployment").items()
            if any(image in c["image"] for c in d["spec"]["template"]["spec"]["containers"] for image in APP_IMAGES)}


def test_every_app_workload_is_found(apps):
    assert sorted(apps) == sorted(WORKLOADS)


@pytest.mark.parametrize("name", WORKLOADS)
def test_probes_and_scrapes_use_the_operations_port(apps, name):
    template = apps[name]["spec"]["template"]
    [container] = template["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "ops": OPS_PORT}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "ops", f"{name} {probe}"
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(OPS_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", WORKLOADS)
def test_the_app_is_told_its_ports(rendered, apps, name):
    [source] = apps[name]["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    namespace = name.split("/")[0]
    config = objects(rendered, "ConfigMap")[f"{namespace}/{source['configMapRef']['name']}"]["data"]
    assert (config["PORT"], config["OPS_PORT"]) == ("8080", str(OPS_PORT))


def test_no_service_exposes_the_operations_port_and_every_ingress_routes_http(rendered, apps):
    services = objects(rendered, "Service")
    for name in WORKLOADS:
        ports = services[name]["spec"]["ports"]
        assert [(p["name"], p["port"], p["targetPort"]) for p in ports] == [("http", 8080, "http")], name
    for name, ingress in objects(rendered, "Ingress").items():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                port = path["backend"]["service"]["port"]
                service = services[f"{ingress['metadata']['namespace']}/{path['backend']['service']['name']}"]
                [exposed] = [p for p in service["spec"]["ports"] if p["name"] == port.get("name")
                             or p["port"] == port.get("number")]
                assert exposed["port"] != OPS_PORT and exposed.get("targetPort") != "ops", name


def test_grafana_serves_no_metrics_through_its_ingress(rendered):
    """Grafana's /metrics answers without a login by default; nothing scrapes it."""
    [container] = objects(rendered, "Deployment")["skx-monitoring/grafana"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "GF_METRICS_ENABLED", "value": "false"} in container["env"]
