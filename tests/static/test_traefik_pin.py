"""One Traefik: the ingress role installs the version the testbed runs.

roles/ingress/templates/traefik.yaml.j2 and traefik-crds.yaml.j2 are the
only Traefik manifests of the repository: the ingress role installs them on
a cluster without an ingress controller, testbed/up renders them
(testbed/lib/render_traefik.py). The image pin (platform_images.traefik),
the testbed's build (testbed/versions.env TRAEFIK_VERSION) and the version
the committed CRDs come from must be one version. Nothing here needs a
cluster.
"""
import os
import re
import subprocess
import sys

import yaml

from static_support import ROOT

TEMPLATES = os.path.join(ROOT, "roles", "ingress", "templates")


def pinned_testbed_version():
    with open(os.path.join(ROOT, "testbed", "versions.env")) as f:
        found = re.search(r"^TRAEFIK_VERSION=(v[0-9.]+)\s*$", f.read(), re.M)
    assert found, "testbed/versions.env sets no TRAEFIK_VERSION"
    return found.group(1)


def test_the_image_pin_is_the_testbed_version():
    with open(os.path.join(ROOT, "roles", "platform", "defaults", "main.yml")) as f:
        image = yaml.safe_load(f)["platform_images"]["traefik"]
    assert image == f"docker.io/traefik:{pinned_testbed_version()}", (
        f"platform_images.traefik is {image}, the testbed builds Traefik {pinned_testbed_version()}")


def test_the_committed_crds_are_of_that_version():
    with open(os.path.join(TEMPLATES, "traefik-crds.yaml.j2")) as f:
        text = f.read()
    header = re.match(r"# Traefik (v[0-9.]+) CRDs", text)
    assert header and header.group(1) == pinned_testbed_version(), (
        "traefik-crds.yaml.j2 must start with '# Traefik <TRAEFIK_VERSION> CRDs' and hold that version's CRDs")
    names = sorted(d["metadata"]["name"] for d in yaml.safe_load_all(text) if d)
    assert "middlewares.traefik.io" in names and "tlsoptions.traefik.io" in names
    assert all(name.endswith(".traefik.io") for name in names), names
    # Applied through the manifests action, which templates it: no Jinja syntax in it.
    assert not re.search(r"\{\{|\{%|\{#", text)


def test_the_testbed_renders_the_collections_traefik(tmp_path):
    """testbed/up applies what render_traefik.py writes: the collection's
    Traefik on the host network, default class, labelled as the testbed's
    (the ingress role then uses it as a Traefik it did not install)."""
    try:
        import jinja2  # noqa: F401
    except ImportError:  # the venv has it; the testbed's system Python gets python3-jinja2
        import pytest
        pytest.skip("no jinja2")
    subprocess.run([sys.executable, os.path.join(ROOT, "testbed", "lib", "render_traefik.py"), pinned_testbed_version(),
                    str(tmp_path)], check=True)
    assert not os.path.exists(os.path.join(ROOT, "testbed", "manifests", "40-traefik.yaml"))
    with open(tmp_path / "35-traefik-crds.yaml") as f, open(os.path.join(TEMPLATES, "traefik-crds.yaml.j2")) as g:
        assert f.read() == g.read()
    docs = {d["kind"]: d for d in yaml.safe_load_all(open(tmp_path / "40-traefik.yaml")) if d}
    assert set(docs) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "IngressClass", "Service", "Deployment"}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["containers"][0]["image"] == f"docker.io/traefik:{pinned_testbed_version()}"
    assert docs["IngressClass"]["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    assert docs["Deployment"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "superkubernetex"
