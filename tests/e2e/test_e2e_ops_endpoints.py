"""No health or metrics endpoint from outside (issue 14): through the ingress,
over HTTPS with each host's SNI and our CA, every host refuses /metrics,
/readyz and /healthz (404, or 403); inside the cluster the apps serve them
on their operations port (platform_app_ops_port), which Prometheus scrapes:
every target stays up, and each app pod is scraped on that port."""
import json
import os
import subprocess
import time
import urllib.parse

import pytest
import requests
import yaml

from e2e_support import DOMAIN, HOSTS, INGRESS_ADDRESS, ROOT, https, kubectl, port_forward

# The one source of the port: roles/platform/defaults (the testbed inventory
# may override it).
PLATFORM_DEFAULTS = yaml.safe_load(open(os.path.join(ROOT, "roles", "platform", "defaults", "main.yml")))
TESTBED = yaml.safe_load(open(os.path.join(ROOT, "inventories", "testbed", "group_vars", "all", "main.yml")))
OPS_PORT = int(TESTBED.get("platform_app_ops_port", PLATFORM_DEFAULTS["platform_app_ops_port"]))

# Every host of the platform: the web services, the tenants, and Grafana's.
# Without Grafana (the testbed) that host has no Ingress, hence no
# certificate of ours either: the ingress answers it with its own default
# certificate and a 404, which the test checks without verifying the
# certificate.
ALL_HOSTS = {**HOSTS, "monitoring": f"monitoring.{DOMAIN}"}
GRAFANA = TESTBED.get("monitoring_grafana_enabled", True)
OPS_PATHS = ["/metrics", "/readyz", "/healthz"]
# The services built from apps/, by the app.kubernetes.io/name of their pods.
APP_SERVICES = {"frontend", "auth", "payment", "instance"}


def unrouted_status(host, path):
    """(status, body) of a host the ingress has no route for, over HTTPS with
    that SNI, the certificate not checked (none of ours exists for it)."""
    proc = subprocess.run(["curl", "-sSk", "--max-time", "10", "--resolve", f"{host}:443:{INGRESS_ADDRESS}",
                           "-w", "\n%{http_code}", f"https://{host}{path}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    body, _, status = proc.stdout.rpartition("\n")
    return int(status), body


@pytest.mark.parametrize("path", OPS_PATHS)
@pytest.mark.parametrize("service", sorted(ALL_HOSTS))
def test_the_ingress_refuses_the_ops_endpoints(service, path):
    host = ALL_HOSTS[service]
    if service == "monitoring" and not GRAFANA:
        status, body = unrouted_status(host, path)
        assert status == 404, f"https://{host}{path} answered {status}: {body[:200]}"
        return
    r = https(host, path)
    assert r.status in (403, 404), f"https://{host}{path} answered {r.status}: {r.body[:200]}"
    assert "http_requests_total" not in r.body and '"status"' not in r.body, r.body[:200]
    # Routed to the service (its router adds HSTS): the service itself refuses.
    assert "max-age=" in r.headers.get("strict-transport-security", "")


def test_the_public_port_refuses_them_inside_the_cluster_too():
    """The Service port (the one the Ingress routes) answers 404 to a pod
    that may call it, and serves the app's own paths."""
    pod = next(p["metadata"]["name"] for p in json.loads(
        kubectl("-n", "skx-instance1", "get", "pods", "-o", "json").stdout)["items"]
        if p["status"].get("phase") == "Running")
    code = ("import urllib.request,urllib.error,sys\n"
            "for url in sys.argv[1:]:\n"
            " try: print(urllib.request.urlopen(url, timeout=5).status)\n"
            " except urllib.error.HTTPError as e: print(e.code)\n")
    base = "http://auth.skx-app.svc.cluster.local:8080"
    out = kubectl("-n", "skx-instance1", "exec", pod, "--", "python3", "-c", code,
                  f"{base}/.well-known/jwks.json", *[base + p for p in OPS_PATHS]).stdout.split()
    assert out == ["200"] + ["404"] * len(OPS_PATHS), out


@pytest.fixture(scope="module")
def prometheus():
    with port_forward("skx-monitoring", "svc/prometheus", 9090) as url:
        deadline = time.monotonic() + 180
        while requests.get(f"{url}/-/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "Prometheus is not ready"
            time.sleep(3)
        yield url


def test_prometheus_scrapes_every_app_pod_on_the_ops_port_and_every_target_is_up(prometheus):
    def targets():
        return requests.get(f"{prometheus}/api/v1/targets", params={"state": "active"},
                            timeout=20).json()["data"]["activeTargets"]

    def apps(active):
        return [t for t in active if t["labels"].get("job") == "kubernetes-pods"
                and t["labels"].get("service") in APP_SERVICES]

    def settled():
        active = targets()
        return active if all(t["health"] == "up" for t in active) and {
            urllib.parse.urlsplit(t["scrapeUrl"]).port for t in apps(active)} == {OPS_PORT} else None

    # Right after a rollout new pods may not have been discovered or scraped yet.
    deadline = time.monotonic() + 180
    active = settled()
    while active is None and time.monotonic() < deadline:
        time.sleep(5)
        active = settled()
    active = active or targets()
    down = [(t["labels"].get("job"), t["scrapeUrl"], t["health"], t["lastError"])
            for t in active if t["health"] != "up"]
    assert not down, f"targets not up: {down}"
    scraped = apps(active)
    wrong = [t["scrapeUrl"] for t in scraped if urllib.parse.urlsplit(t["scrapeUrl"]).port != OPS_PORT]
    assert not wrong, f"app pods scraped elsewhere than the ops port {OPS_PORT}: {wrong}"
    # Every service and tenant is among them.
    assert {(t["labels"]["namespace"], t["labels"]["service"]) for t in scraped} == {
        ("skx-app", "frontend"), ("skx-app", "auth"), ("skx-app", "payment"),
        ("skx-instance1", "instance"), ("skx-instance2", "instance"), ("skx-instance3", "instance")}
    print(f"{len(active)} targets up, {len(scraped)} app pods scraped on :{OPS_PORT}/metrics")
