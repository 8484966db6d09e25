# Copyright: SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE)
"""Filters deriving every per-instance fact from the one instances list."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: instances
short_description: Resolve the tenant instances list with every derived field
description:
  - Takes C(platform_instances) and returns one dict per instance with the
    defaults filled in (host, namespace, database, sizes), so that every role
    derives names from the same place.
  - Fails with a message naming the variable on an invalid name, an unknown
    field, a duplicate name or a duplicate host.
positional: domain, namespace_prefix
options:
  _input:
    description: The C(platform_instances) list.
    type: list
    elements: dict
    required: true
  domain:
    description: The base domain (C(platform_domain)).
    type: str
    required: true
  namespace_prefix:
    description: Prefix of the instance namespaces.
    type: str
    default: skx-
notes:
  - Each item also gets the names derived from it, computed here only,
    C(namespace), C(database), C(db_owner) (the database's NOLOGIN owner
    role; its login roles are C(<db_owner>_a) and C(<db_owner>_b)) and
    C(backup_cronjob) (the CronJob of its daily dump).
  - Each item also gets C(lifecycle), what the platform does with that
    tenant. C(serving) for C(state=present); C(stopped) for C(state=absent)
    (no workloads, data kept); C(deleted) for C(state=absent) with
    C(delete_data=true) (final dump, then namespace, files, database and
    roles deleted).
"""

NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
HOST_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")

DEFAULTS = {
    "state": "present",
    "replicas_min": 2,
    "replicas_max": 5,
    "storage_size": "1Gi",
    "db_connection_limit": 20,
    "delete_data": False,
}
FIELDS = {"name", "host"} | set(DEFAULTS)

# Labels and annotation of a tenant namespace (roles/namespaces/templates/namespace.yaml.j2).
TENANT_LABEL = "superkubernetex.com/instance"
HOST_ANNOTATION = "superkubernetex.com/host"


def _derived_names(name, namespace):
    """Every name derived from an instance name: the one place they are made."""
    owner = name.replace("-", "_")
    return {
        "namespace": namespace,
        "database": f"{owner}_db",
        "db_owner": owner,
        "backup_cronjob": f"backup-{name}-db",
    }


def _lifecycle(item):
    if item["state"] == "present":
        return "serving"
    return "deleted" if item["delete_data"] else "stopped"


def _default_host(name, domain):
    match = re.fullmatch(r"instance(\d+)", name)
    return f"inst{match.group(1)}.{domain}" if match else f"{name}.{domain}"


def resolve_instances(instances, domain, namespace_prefix="skx-"):
    var = "platform_instances"
    if not isinstance(instances, list):
        raise AnsibleFilterError(f"{var} must be a list of dicts, got {type(instances).__name__}")
    resolved, names, hosts = [], set(), set()
    for idx, entry in enumerate(instances):
        where = f"{var}[{idx}]"
        if not isinstance(entry, dict):
            raise AnsibleFilterError(f"{where} must be a dict with at least a 'name', got {entry!r}")
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            raise AnsibleFilterError(
                f"{where} has unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(FIELDS))}")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise AnsibleFilterError(
                f"{where}.name must be a DNS label of 1-32 lowercase letters, digits or '-', "
                f"starting with a letter; got {name!r}")
        if name in names:
            raise AnsibleFilterError(f"{where}.name {name!r} is used twice; instance names must be unique")
        names.add(name)
        item = dict(DEFAULTS)
        item.update(entry)
        item["host"] = str(item.get("host") or _default_host(name, domain)).lower()
        if not HOST_RE.match(item["host"]):
            raise AnsibleFilterError(f"{where}.host must be a DNS name, got {item['host']!r}")
        if item["host"] in hosts:
            raise AnsibleFilterError(f"{where}.host {item['host']!r} is used by another instance")
        hosts.add(item["host"])
        if item["state"] not in ("present", "absent"):
            raise AnsibleFilterError(f"{where}.state must be 'present' or 'absent', got {item['state']!r}")
        for key in ("replicas_min", "replicas_max", "db_connection_limit"):
            if isinstance(item[key], bool) or not isinstance(item[key], int) or item[key] < 1:
                raise AnsibleFilterError(f"{where}.{key} must be a positive integer, got {item[key]!r}")
        if item["replicas_min"] > item["replicas_max"]:
            raise AnsibleFilterError(
                f"{where}.replicas_min ({item['replicas_min']}) must not exceed replicas_max ({item['replicas_max']})")
        if not isinstance(item["storage_size"], str) or not re.fullmatch(r"\d+(Mi|Gi|Ti)", item["storage_size"]):
            raise AnsibleFilterError(f"{where}.storage_size must be a quantity like '1Gi', got {item['storage_size']!r}")
        if not isinstance(item["delete_data"], bool):
            raise AnsibleFilterError(f"{where}.delete_data must be true or false, got {item['delete_data']!r}")
        item.update(_derived_names(name, f"{namespace_prefix}{name}"))
        item["lifecycle"] = _lifecycle(item)
        resolved.append(item)
    return resolved


def unlisted_instances(namespaces, resolved, domain):
    """The tenants found on the cluster that platform_instances no longer names.

    namespaces: Namespace objects read from the cluster (k8s_info resources),
    those carrying the tenant label that roles/namespaces puts on every tenant
    namespace. Returns one dict per tenant not in resolved, with the fields of
    resolve_instances and lifecycle "unlisted"; the host comes from the
    namespace's host annotation. Namespaces being deleted are left out.
    """
    if not isinstance(namespaces, list) or not isinstance(resolved, list):
        raise AnsibleFilterError("unlisted_instances takes a list of Namespace objects and platform_instances_resolved")
    listed = {item["name"] for item in resolved}
    found = {}
    for ns in namespaces:
        meta = ns.get("metadata") or {}
        name = (meta.get("labels") or {}).get(TENANT_LABEL)
        if not name or name in listed or meta.get("deletionTimestamp"):
            continue
        if not isinstance(name, str) or not NAME_RE.match(name):
            continue
        host = (meta.get("annotations") or {}).get(HOST_ANNOTATION) or _default_host(name, domain)
        if not HOST_RE.match(str(host).lower()):
            host = _default_host(name, domain)
        item = dict(DEFAULTS, name=name, host=str(host).lower(), lifecycle="unlisted",
                    **_derived_names(name, meta.get("name")))
        found[name] = item
    return [found[name] for name in sorted(found)]


def check_hosts(hosts):
    """Fail when two services share a host name: the ingress would route one of them nowhere."""
    seen = {}
    for service, host in hosts.items():
        if not isinstance(host, str) or not HOST_RE.match(host.lower()):
            raise AnsibleFilterError(f"platform_hosts.{service} must be a DNS name, got {host!r}")
        if host.lower() in seen:
            raise AnsibleFilterError(
                f"host {host!r} is used by both {seen[host.lower()]} and {service}; every service needs its own host")
        seen[host.lower()] = service
    return hosts


def check_instance_names(instances, namespaces, hosts, reserved_roles=()):
    """Fail when an instance's derived names collide with a platform name or another instance's.

    ``instances`` is the resolved list (``instances`` filter), ``namespaces`` the
    ``platform_namespaces`` mapping, ``hosts`` the ``platform_hosts`` mapping,
    ``reserved_roles`` the PostgreSQL roles the platform itself uses.
    Returns the list unchanged so it can be chained.
    """
    var = "platform_instances"
    taken_ns = {ns: f"platform_namespaces.{concern}" for concern, ns in dict(namespaces).items()}
    taken_hosts = {str(h).lower(): f"platform_hosts.{service}" for service, h in dict(hosts).items()}
    taken_roles = {}
    for role in reserved_roles:
        taken_roles[role] = "the platform"
    # The shared superkube database's roles (roles/postgres/vars/main.yml):
    # its owner, the login roles auth and payment shared before they had
    # their own, and each service's owner role with its two login roles.
    for role in ("superkube", "superkube_a", "superkube_b") + tuple(
            f"superkube_{service}{suffix}" for service in ("auth", "payment") for suffix in ("", "_a", "_b")):
        taken_roles.setdefault(role, "the shared superkube database")
    for idx, item in enumerate(instances):
        where = f"{var}[{idx}] ({item['name']!r})"
        if item["namespace"] in taken_ns:
            raise AnsibleFilterError(
                f"{where}: its namespace {item['namespace']!r} is already {taken_ns[item['namespace']]}; "
                "choose another instance name")
        taken_ns[item["namespace"]] = f"the namespace of {var}[{idx}]"
        if item["host"] in taken_hosts:
            raise AnsibleFilterError(
                f"{where}.host {item['host']!r} is already {taken_hosts[item['host']]}; every service needs its own host")
        taken_hosts[item["host"]] = f"the host of {var}[{idx}]"
        owner = item["db_owner"]
        if owner.startswith("pg_"):
            raise AnsibleFilterError(
                f"{where}: its database role {owner!r} would start with pg_, which PostgreSQL reserves; "
                "choose another instance name")
        for role in (owner, f"{owner}_a", f"{owner}_b"):
            if role in taken_roles:
                raise AnsibleFilterError(
                    f"{where}: its database role {role!r} is already used by {taken_roles[role]}; "
                    "choose another instance name")
        for role in (owner, f"{owner}_a", f"{owner}_b"):
            taken_roles[role] = f"{var}[{idx}]"
    return instances


def kubeconfig_target(kubeconfig, context=None):
    """Return the context name and API URL a kubeconfig selects (never its credentials)."""
    if not isinstance(kubeconfig, dict):
        return {"context": context or "", "server": ""}
    name = context or kubeconfig.get("current-context") or ""
    contexts = {c.get("name"): c.get("context") or {} for c in kubeconfig.get("contexts") or [] if isinstance(c, dict)}
    clusters = {c.get("name"): c.get("cluster") or {} for c in kubeconfig.get("clusters") or [] if isinstance(c, dict)}
    if name not in contexts:
        return {"context": f"{name} (not in the kubeconfig)" if name else "", "server": ""}
    cluster = clusters.get(contexts[name].get("cluster"), {})
    return {"context": name, "server": str(cluster.get("server", ""))}


class FilterModule:
    def filters(self):
        return {"instances": resolve_instances, "check_hosts": check_hosts,
                "check_instance_names": check_instance_names, "kubeconfig_target": kubeconfig_target,
                "unlisted_instances": unlisted_instances}
