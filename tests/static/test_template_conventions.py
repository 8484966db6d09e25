"""The manifest templates write labels and security contexts one way only.

Labels come from platform_common_labels (roles/platform/vars/main.yml),
directly, through a role's __<role>_labels derived from it, or through the
template's own `labels` set from one of these, and are written inline:
    labels: {{ <that> | combine({...}) | to_json }}
Security contexts start from platform_pod_security_context or
platform_container_security_context (same file), with only the workload's
differences combined in:
    securityContext: {{ platform_pod_security_context | combine({...}) | to_json }}
Nothing here needs a cluster: it reads the template sources.
"""
import glob
import os
import re

import pytest
import yaml

from static_support import ROOT

# Kubernetes manifests and the partials they include (_pod.j2), not the
# configuration files of the k3s role or of Prometheus/Alertmanager, nor the
# upstream CRDs applied as their projects ship them (their schemas hold
# `labels:` properties; tests/static/test_traefik_pin.py and
# test_gateway_routing.py check those files).
UPSTREAM = {"traefik-crds.yaml.j2", "gateway-api-crds.yaml.j2"}
TEMPLATES = sorted(
    path for path in glob.glob(os.path.join(ROOT, "roles/*/templates/*.j2"))
    if os.path.basename(path) not in UPSTREAM
    and ("apiVersion:" in open(path).read() or os.path.basename(path).startswith("_")))

# Templates whose whole rendered text a pod annotation hashes
# (checksum/config: {{ lookup('superkubernetex.platform.template', 'configmap.yaml.j2') | hash('sha256') }}):
# rewriting their labels would change the hash and restart the pods (the
# app and tenant Deployments, PostgreSQL and Redis, one replica each of the
# last two), so they keep their labels text as it was, the common labels
# first (same source, older form). Convert them, and drop them from here,
# with a change that rolls those pods anyway.
HASHED_AS_TEXT = {
    "roles/app/templates/configmap.yaml.j2",
    "roles/redis/templates/configmap.yaml.j2",
}
HASHED_FORM = re.compile(r"labels:\n +\{\{ platform_common_labels \| to_nice_yaml\(indent=2\) \| indent\(\d+\) \}\}\n")

# Where a `labels:` or `securityContext:` key starts, and the Jinja
# expression (possibly over several lines) that must follow it.
KEY = re.compile(r"(?<![\w-])(?P<key>labels|securityContext):(?P<rest>[^\n]*)")
EXPR = re.compile(r" \{\{ (?P<expr>.+?) \| to_json \}\}", re.S)
LABEL_SOURCES = r"(platform_common_labels|__[a-z]+_[a-z_]*labels)"
LOCAL_LABELS = re.compile(r"\{%-? set labels = " + LABEL_SOURCES + r"\b")
# The keys of a security context: written only in roles/platform/vars/main.yml.
SECURITY_KEYS = re.compile(
    r"^\s*(runAsNonRoot|runAsUser|runAsGroup|fsGroup|seccompProfile|allowPrivilegeEscalation"
    r"|readOnlyRootFilesystem|capabilities|privileged):", re.M)


def rel(path):
    return os.path.relpath(path, ROOT)


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def occurrences(key):
    """(template, line, expression or None, text) of every `key:` in the manifest templates."""
    found = []
    for path in TEMPLATES:
        text = open(path).read()
        for match in KEY.finditer(text):
            if match.group("key") != key:
                continue
            expr = EXPR.match(text, match.end("key") + 1)
            found.append((path, line_of(text, match.start()), expr.group("expr") if expr else None, text))
    return found


def in_container(text, line):
    """Whether the key on that line belongs to a container (a list item) rather than a pod spec."""
    lines = text.splitlines()
    indent = len(lines[line - 1]) - len(lines[line - 1].lstrip())
    for previous in reversed(lines[:line - 1]):
        stripped = previous.strip()
        if not stripped or stripped.startswith(("#", "{%", "{#")):
            continue
        if len(previous) - len(stripped) < indent:
            return stripped.startswith("- ")
    return False


def test_the_templates_are_found():
    assert len(TEMPLATES) > 50
    assert len(occurrences("labels")) > 80
    assert len(occurrences("securityContext")) >= 29


def test_every_labels_key_is_written_inline_from_the_common_labels():
    wrong = []
    for path, line, expr, text in occurrences("labels"):
        if rel(path) in HASHED_AS_TEXT:
            continue
        if expr is None:
            wrong.append(f"{rel(path)}:{line}: labels written by hand (not `labels: {{{{ ... | to_json }}}}`)")
        elif re.match(r"labels\b", expr):
            if not LOCAL_LABELS.search(text):
                wrong.append(f"{rel(path)}:{line}: `labels` is not set from platform_common_labels in this template")
        elif not re.match(LABEL_SOURCES + r"\b", expr):
            wrong.append(f"{rel(path)}:{line}: labels do not start from platform_common_labels: {expr}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(HASHED_AS_TEXT))
def test_the_hashed_templates_keep_their_labels_text(name):
    role, template = name.split("/")[1], os.path.basename(name)
    hashed = f"lookup('superkubernetex.platform.template', '{template}') | hash("
    assert any(hashed in open(path).read() for path in glob.glob(os.path.join(ROOT, "roles", role, "templates/*.j2"))), (
        f"{name} is no longer hashed: write its labels like every other template and remove it from HASHED_AS_TEXT")
    text = open(os.path.join(ROOT, name)).read()
    labels = [m for m in KEY.finditer(text) if m.group("key") == "labels"]
    assert len(labels) == len(HASHED_FORM.findall(text)) == 1, f"{name}: labels must stay in their hashed form"


def test_the_role_labels_derive_from_the_common_labels():
    defined = {}
    for path in glob.glob(os.path.join(ROOT, "roles/*/vars/main.yml")) + glob.glob(
            os.path.join(ROOT, "roles/*/defaults/main.yml")):
        for name, value in (yaml.safe_load(open(path)) or {}).items():
            if re.fullmatch(r"__[a-z]+_[a-z_]*labels", name):
                defined[name] = (rel(path), value)
    assert defined
    for name, (path, value) in defined.items():
        assert isinstance(value, str) and re.match(r"\{\{ " + LABEL_SOURCES + r" \| combine\(", value), (
            f"{path}: {name} must be platform_common_labels (or another role labels variable) | combine(...)")
    for path, line, expr, _ in occurrences("labels"):
        head = re.match(r"__\w+", expr or "")
        assert not head or head.group(0) in defined, f"{rel(path)}:{line}: {head.group(0)} is not defined"


def test_every_security_context_starts_from_the_platform_defaults():
    wrong = []
    for path, line, expr, text in occurrences("securityContext"):
        wanted = "platform_container_security_context" if in_container(text, line) else "platform_pod_security_context"
        if expr is None or not re.match(wanted + r"\b", expr):
            wrong.append(f"{rel(path)}:{line}: securityContext must be `{{{{ {wanted} | combine(...) | to_json }}}}`")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", TEMPLATES, ids=rel)
def test_no_security_key_is_written_by_hand(path):
    text = open(path).read()
    found = [f"{rel(path)}:{line_of(text, m.start())}: {m.group(0).strip()}" for m in SECURITY_KEYS.finditer(text)]
    assert not found, "security context keys belong in platform_*_security_context:\n" + "\n".join(found)


def test_the_platform_defaults_are_restricted():
    platform = yaml.safe_load(open(os.path.join(ROOT, "roles/platform/vars/main.yml")))
    assert platform["platform_pod_security_context"] == {
        "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert platform["platform_container_security_context"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


# A pod annotation computed from a template that renders a Secret.
SECRET_HASH = re.compile(r"lookup\('ansible\.builtin\.template', '([^']+)'\) \| ([\w.]+)")


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: os.path.relpath(p, ROOT))
def test_a_restart_annotation_from_a_secret_reveals_nothing_of_it(path):
    """A plain hash of a Secret in a pod template lets whoever reads the
    Deployment test password guesses offline: a Secret's annotation is an
    HMAC (keyed_digest) with the key kept in the cluster."""
    folder = os.path.dirname(path)
    for template, digest in SECRET_HASH.findall(open(path).read()):
        source = os.path.join(folder, template)
        if "kind: Secret" in open(source).read():
            assert digest == "superkubernetex.platform.keyed_digest", (
                f"{os.path.relpath(path, ROOT)} hashes the Secret template {template} with {digest}")
