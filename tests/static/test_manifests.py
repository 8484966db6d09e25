"""The rendered manifests: schema-valid, no secret values, the brief's names."""
import glob
import os

import kubernetes_validate
import pytest
import yaml

# The Kubernetes version the manifests target: the minor of the k3s default.
K3S_DEFAULTS = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "../../roles/k3s/defaults/main.yml")))
TARGET = K3S_DEFAULTS["k3s_version"].lstrip("v").rsplit(".", 1)[0]

# Custom resources of Traefik and k3s: no OpenAPI schema ships with
# kubernetes-validate, so their apiVersion is checked instead.
CUSTOM_KINDS = {"Middleware": "traefik.io/v1alpha1", "TLSOption": "traefik.io/v1alpha1",
                "HelmChartConfig": "helm.cattle.io/v1"}


def documents(root):
    for path in sorted(glob.glob(f"{root}/*/*.yaml")):
        for doc in yaml.safe_load_all(open(path)):
            if doc:
                yield os.path.relpath(path, root), doc


def test_every_manifest_is_valid_for_the_target_kubernetes(rendered):
    errors, count = [], 0
    for path, doc in documents(rendered):
        count += 1
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"] == CUSTOM_KINDS[doc["kind"]], path
            continue
        try:
            kubernetes_validate.validate(doc, TARGET, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{path} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    print(f"{count} objects rendered, validated against Kubernetes {TARGET}")
    assert not errors, "\n".join(errors)
    assert count > 50


# Keys that name an account rather than hold a secret.
# Connection settings, not credentials (the db-credentials Secrets carry them
# next to the password).
NOT_SECRET_KEYS = {"username", "database", "host", "port"}


def test_secrets_carry_placeholders_only(rendered):
    secrets = [(p, d) for p, d in documents(rendered) if d["kind"] == "Secret"]
    assert len(secrets) > 5
    for path, doc in secrets:
        values = {**doc.get("stringData", {}), **doc.get("data", {})}
        for key, value in values.items():
            if key in NOT_SECRET_KEYS:
                continue
            assert "CHANGE_ME" in value or value == '{"keys": []}', f"{path}: {key} holds a real value"


def test_the_brief_deliverable_names_are_there(rendered):
    names = {os.path.basename(p) for p in glob.glob(f"{rendered}/*/*.yaml")}
    for wanted in ["deployment.yaml", "service.yaml", "ingress.yaml", "secret.yaml", "configmap.yaml",
                   "statefulset.yaml", "persistentvolumeclaim.yaml", "hpa.yaml", "pdb.yaml", "networkpolicy.yaml"]:
        assert wanted in names


def test_one_ingress_host_per_service_with_tls(rendered):
    hosts = {}
    for path, doc in documents(rendered):
        if doc["kind"] == "Ingress":
            [rule] = doc["spec"]["rules"]
            assert doc["spec"]["tls"][0]["hosts"] == [rule["host"]]
            assert rule["host"] not in hosts, f"{rule['host']} twice"
            hosts[rule["host"]] = path
    expected = {"superkubernetex.com", "auth.superkubernetex.com", "pay.superkubernetex.com",
                "inst1.superkubernetex.com", "inst2.superkubernetex.com", "inst3.superkubernetex.com"}
    assert expected <= set(hosts)


def test_every_ingress_has_the_same_class_tls_and_hsts(rendered):
    """Every host, Grafana's included, is served on the TLS entry point only,
    through the platform's ingress class and its HSTS middleware (one set of
    annotations, platform_ingress_annotations)."""
    middlewares = {f"{d['metadata']['namespace']}-{d['metadata']['name']}@kubernetescrd"
                   for _, d in documents(rendered) if d["kind"] == "Middleware"}
    ingresses = {(d["metadata"]["namespace"], d["metadata"]["name"]): d
                 for _, d in documents(rendered) if d["kind"] == "Ingress"}
    assert ("skx-monitoring", "grafana") in ingresses
    seen = {(d["spec"]["ingressClassName"], tuple(sorted(d["metadata"]["annotations"].items())))
            for d in ingresses.values()}
    assert len(seen) == 1, f"Ingresses differ in class or annotations: {seen}"
    [(_, annotations)] = seen
    annotations = dict(annotations)
    assert annotations["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure"
    assert annotations["traefik.ingress.kubernetes.io/router.tls"] == "true"
    assert annotations["traefik.ingress.kubernetes.io/router.middlewares"] in middlewares


def test_stripe_and_jwt_secrets_are_mounted_only_where_needed(rendered):
    mounts = {}
    for path, doc in documents(rendered):
        if doc["kind"] in ("Deployment", "StatefulSet"):
            volumes = doc["spec"]["template"]["spec"].get("volumes", [])
            mounts[doc["metadata"]["name"]] = {v["secret"]["secretName"] for v in volumes if "secret" in v}
    holders = lambda secret: sorted(name for name, secrets in mounts.items() if secret in secrets)  # noqa: E731
    assert holders("payment-stripe") == ["payment"]
    assert holders("auth-jwt") == ["auth"]


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "CronJob"])
def test_workloads_run_restricted(rendered, kind):
    for path, doc in documents(rendered):
        if doc["kind"] != kind:
            continue
        spec = doc["spec"]["template"]["spec"] if kind != "CronJob" else doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            where = f"{path} {doc['metadata']['name']}/{c['name']}"
            assert "resources" in c and c["resources"].get("limits"), f"{where} has no limits"
            if doc["metadata"]["namespace"].endswith(("monitoring", "logging")) and kind == "DaemonSet":
                continue  # node agents: justified in the monitoring and logging roles
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where


def test_deployments_under_an_hpa_leave_replicas_to_it(rendered):
    scaled = {(d["metadata"]["namespace"], d["spec"]["scaleTargetRef"]["name"])
              for _, d in documents(rendered) if d["kind"] == "HorizontalPodAutoscaler"}
    for path, doc in documents(rendered):
        if doc["kind"] == "Deployment" and (doc["metadata"]["namespace"], doc["metadata"]["name"]) in scaled:
            assert "replicas" not in doc["spec"], path
            strategy = doc["spec"]["strategy"]["rollingUpdate"]
            assert strategy == {"maxUnavailable": 0, "maxSurge": 1}, path


TENANTS = ["instance1", "instance2", "instance3"]  # inventories/vm
TENANT_FILES = {"namespace.yaml", "resourcequota.yaml", "limitrange.yaml", "networkpolicy.yaml", "secret-tls.yaml",
                "db-credentials.yaml", "persistentvolumeclaim.yaml", "configmap.yaml", "deployment.yaml",
                "service.yaml", "ingress.yaml", "hpa.yaml", "pdb.yaml", "cronjob.yaml"}


def _tenant_of(doc):
    """The tenant an object belongs to, from its own fields (None: shared)."""
    meta = doc["metadata"]
    for name in TENANTS:
        if meta.get("namespace") == f"skx-{name}" or (doc["kind"] == "Namespace" and meta["name"] == f"skx-{name}"):
            return name
        if doc["kind"] == "CronJob" and meta["name"] == f"backup-{name}-db":
            return name
    return None


def test_a_tenant_folder_holds_every_object_of_that_tenant_and_nothing_else(rendered):
    """docs/development.md, "Where each object comes from"."""
    misplaced = [(path, doc["kind"], doc["metadata"]["name"]) for path, doc in documents(rendered)
                 if (_tenant_of(doc) or os.path.dirname(path)) != os.path.dirname(path)
                 or (os.path.dirname(path) in TENANTS and _tenant_of(doc) is None)]
    assert misplaced == []
    for name in TENANTS:
        assert set(os.listdir(os.path.join(rendered, name))) == TENANT_FILES, name
