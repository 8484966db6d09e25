# Copyright: SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE)
"""Filters deriving a namespace's ResourceQuota from what its workloads may reach."""

from __future__ import annotations

import math
import re

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: workload_quota
short_description: ResourceQuota (hard) that fits the worst case of a namespace's workloads
description:
  - Adds up what the given workloads may hold at the same time and returns
    the C(spec.hard) of a ResourceQuota that admits all of it, so that no pod
    the platform itself starts (an HPA at its maximum with a rolling update
    under way, every backup job at once) is refused by the quota.
  - Each pod counts with its effective requests and limits, as Kubernetes
    computes them for quotas and scheduling; per resource the larger of the
    sum of its containers and its largest init container (init containers
    run one after the other, before the containers). Containers without a
    request or limit get I(default_resources), the namespace's LimitRange
    defaults; a container with a limit and no request requests its limit.
  - Returns C(requests.cpu), C(requests.memory), C(limits.cpu),
    C(limits.memory) (CPU in cores or millicores, memory in Mi or Gi) and
    C(persistentvolumeclaims).
positional: default_resources
options:
  _input:
    description:
      - The workloads of one namespace. Each is a dict with C(name) (for
        messages), C(pods) (how many of its pods may exist at once, default
        0), C(containers) and C(init_containers) (lists of container
        resources, each with optional C(requests) and C(limits) of C(cpu)
        and C(memory)), and C(pvcs) (PersistentVolumeClaims it owns,
        default 0).
    type: list
    elements: dict
    required: true
  default_resources:
    description: The LimitRange defaults, C(requests) and C(limits) of C(cpu) and C(memory).
    type: dict
    required: true
"""

RESOURCES = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory")
QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def _quantity(value, kind, where):
    """A Kubernetes quantity as an integer: millicores for cpu, bytes for memory."""
    match = QUANTITY_RE.match(str(value).strip()) if value is not None and not isinstance(value, bool) else None
    if not match:
        raise AnsibleFilterError(f"{where}: {value!r} is not a Kubernetes {kind} quantity")
    number, suffix = float(match.group(1)), match.group(2)
    if kind == "cpu":
        if suffix == "m":
            return math.ceil(number)
        if suffix:
            raise AnsibleFilterError(f"{where}: {value!r} is not a CPU quantity (cores or millicores)")
        return math.ceil(number * 1000)
    if suffix == "m":
        raise AnsibleFilterError(f"{where}: {value!r} is not a memory quantity")
    return math.ceil(number * SUFFIXES.get(suffix, 1))


def _container(resources, defaults, where):
    if resources is None:
        resources = {}
    if not isinstance(resources, dict):
        raise AnsibleFilterError(f"{where} must be a dict of requests and limits, got {resources!r}")
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    out = {}
    for kind in ("cpu", "memory"):
        limit = limits.get(kind, defaults["limits"].get(kind))
        request = requests.get(kind, limits.get(kind, defaults["requests"].get(kind)))
        out[f"limits.{kind}"] = _quantity(limit, kind, f"{where}.limits.{kind}")
        out[f"requests.{kind}"] = _quantity(request, kind, f"{where}.requests.{kind}")
    return out


def pod_resources(containers, init_containers, defaults, where="pod"):
    """Effective requests and limits of one pod (integers, see _quantity)."""
    running = [_container(c, defaults, f"{where}.containers[{i}]") for i, c in enumerate(containers or [])]
    inits = [_container(c, defaults, f"{where}.init_containers[{i}]") for i, c in enumerate(init_containers or [])]
    return {r: max([sum(c[r] for c in running)] + [c[r] for c in inits]) for r in RESOURCES}


def _format(resource, amount):
    if resource.endswith(".cpu"):
        return str(amount // 1000) if amount % 1000 == 0 else f"{amount}m"
    if resource.endswith(".memory"):
        if amount == 0:
            return "0"
        if amount % 2**30 == 0:
            return f"{amount // 2**30}Gi"
        return f"{math.ceil(amount / 2**20)}Mi"
    return str(amount)


def _count(value, where):
    if isinstance(value, bool):
        raise AnsibleFilterError(f"{where} must be a non-negative integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"{where} must be a non-negative integer, got {value!r}") from None
    if number < 0 or str(number) != str(value).strip():
        raise AnsibleFilterError(f"{where} must be a non-negative integer, got {value!r}")
    return number


def workload_quota(workloads, default_resources):
    if not isinstance(workloads, list):
        raise AnsibleFilterError(f"workload_quota expects a list of workloads, got {type(workloads).__name__}")
    if not isinstance(default_resources, dict):
        raise AnsibleFilterError("workload_quota: default_resources must be a dict of requests and limits")
    defaults = {"requests": default_resources.get("requests") or {}, "limits": default_resources.get("limits") or {}}
    totals = dict.fromkeys(RESOURCES, 0)
    pvcs = 0
    for idx, workload in enumerate(workloads):
        if not isinstance(workload, dict):
            raise AnsibleFilterError(f"workload_quota: workload {idx} must be a dict, got {workload!r}")
        where = str(workload.get("name") or f"workload {idx}")
        pods = _count(workload.get("pods", 0), f"{where}: pods")
        pvcs += _count(workload.get("pvcs", 0), f"{where}: pvcs")
        if pods:
            res = pod_resources(workload.get("containers"), workload.get("init_containers"), defaults, where)
            for resource in RESOURCES:
                totals[resource] += pods * res[resource]
    hard = {resource: _format(resource, amount) for resource, amount in totals.items()}
    hard["persistentvolumeclaims"] = str(pvcs)
    return hard


def quota_shortfall(quota, needed):
    """The keys of needed (a workload_quota result) that quota sets lower."""
    short = []
    for key, value in (quota or {}).items():
        if key not in needed:
            continue
        kind = "cpu" if key.endswith(".cpu") else "memory" if key.endswith(".memory") else None
        if kind:
            have, need = _quantity(value, kind, key), _quantity(needed[key], kind, key)
        else:
            have, need = _count(value, key), _count(needed[key], key)
        if have < need:
            short.append(key)
    return sorted(short)


class FilterModule:
    def filters(self):
        return {"workload_quota": workload_quota, "quota_shortfall": quota_shortfall}
