"""On a cluster without an ingress controller the ingress role installs Traefik.

Runs on a testbed started without its own Traefik (`testbed/up --no-ingress`,
then site.yml -i inventories/testbed), told so by SKX_TESTBED_INGRESS=none;
skipped otherwise. Proves that the Traefik serving 127.0.0.1:443 is the
collection's (roles/ingress/templates/traefik.yaml.j2, pinned by
platform_images.traefik), installed by the role with its CRDs, and that every
host of the platform answers through it over HTTPS with its own certificate
and the HSTS middleware.
"""
import json
import os

import pytest
import yaml

from e2e_support import HOSTS, ROOT, https, kubectl

pytestmark = pytest.mark.skipif(
    os.environ.get("SKX_TESTBED_INGRESS") != "none",
    reason="needs a testbed without its own Traefik: testbed/up --no-ingress, site.yml, SKX_TESTBED_INGRESS=none")

MANAGED_BY = "app.kubernetes.io/managed-by"
with open(os.path.join(ROOT, "roles", "platform", "defaults", "main.yml")) as f:
    IMAGE = yaml.safe_load(f)["platform_images"]["traefik"]


def get(*args):
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def test_the_role_installed_traefik():
    deployment = get("-n", "kube-system", "deployment", "traefik")
    assert deployment["metadata"]["labels"][MANAGED_BY] == "superkubernetex"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert deployment["status"].get("readyReplicas") == 1
    ingress_class = get("ingressclass", "traefik")
    assert ingress_class["spec"]["controller"] == "traefik.io/ingress-controller"
    assert ingress_class["metadata"]["labels"][MANAGED_BY] == "superkubernetex"
    crds = {c["metadata"]["name"] for c in get("crd")["items"]}
    assert {"middlewares.traefik.io", "tlsoptions.traefik.io", "ingressroutes.traefik.io"} <= crds
    for kind, name in (("serviceaccount", "traefik"), ("service", "traefik")):
        assert get("-n", "kube-system", kind, name)["metadata"]["labels"][MANAGED_BY] == "superkubernetex"
    for kind in ("clusterrole", "clusterrolebinding"):
        assert get(kind, "traefik-kube-system")["metadata"]["labels"][MANAGED_BY] == "superkubernetex"


@pytest.mark.parametrize("service", sorted(HOSTS))
def test_every_host_answers_over_https_through_it(service):
    r = https(HOSTS[service], "/")
    assert r.status < 500, f"{HOSTS[service]}: HTTP {r.status}"
    # The HSTS middleware the role applies: Traefik's CRDs are served.
    assert "max-age=" in r.headers.get("strict-transport-security", "")
