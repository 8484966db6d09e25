#!/usr/bin/python3
"""Render the collection's Traefik manifests for the testbed.

    render_traefik.py TRAEFIK_VERSION OUT_DIR

The testbed runs the same Traefik the ingress role installs on a cluster
without an ingress controller: roles/ingress/templates/traefik.yaml.j2 and
traefik-crds.yaml.j2, with the Gateway API's CRDs (gateway-api-crds.yaml.j2)
and provider on, rendered here with plain Jinja2 (the Debian package
python3-jinja2) and the testbed's values: on the host network (127.0.0.1:80
and :443), IngressClass "traefik" as the default class, in kube-system. Its
labels say the testbed manages it, not the platform: a platform run finds
a Traefik it did not install and uses it as it is, as on k3s.
"""
import json
import os
import sys

import jinja2
import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TEMPLATES = os.path.join(ROOT, "roles", "ingress", "templates")


def load(path):
    with open(os.path.join(ROOT, path)) as f:
        return yaml.safe_load(f)


def combine(*dicts):
    out = {}
    for d in dicts:
        out.update(d)
    return out


def to_bool(value):
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")


def main(version, out_dir):
    platform_defaults = load("roles/platform/defaults/main.yml")
    platform_vars = load("roles/platform/vars/main.yml")
    ingress_defaults = load("roles/ingress/defaults/main.yml")
    values = dict(
        platform_common_labels={"app.kubernetes.io/part-of": "skx-testbed",
                                "app.kubernetes.io/managed-by": "skx-testbed"},
        platform_ingress_controller_labels=platform_defaults["platform_ingress_controller_labels"],
        platform_pod_security_context=platform_vars["platform_pod_security_context"],
        platform_container_security_context=platform_vars["platform_container_security_context"],
        platform_namespaces={"ingress": "kube-system"},
        platform_images={"traefik": "docker.io/traefik:" + version},
        platform_image_pull_policy="IfNotPresent",
        platform_ingress_class="traefik",
        ingress_traefik_host_network=True,
        ingress_traefik_default_class=True,
        ingress_traefik_service_type="ClusterIP",
        ingress_traefik_resources=ingress_defaults["ingress_traefik_resources"],
        # Its Gateway API provider on, with the Gateway API CRDs, as k3s'
        # Traefik chart ships them: the platform runs in either routing mode.
        platform_routing="gateway",
    )
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters.update(to_json=json.dumps, combine=combine, bool=to_bool)
    for template, name in (("gateway-api-crds.yaml.j2", "34-gateway-api-crds.yaml"),
                           ("traefik-crds.yaml.j2", "35-traefik-crds.yaml"), ("traefik.yaml.j2", "40-traefik.yaml")):
        text = env.get_template(template).render(**values)
        list(yaml.safe_load_all(text))  # fails here on a template that does not render to YAML
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
