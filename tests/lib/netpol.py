"""Kubernetes NetworkPolicy semantics in plain Python, without a cluster.

The rendered manifests say which flows the platform means to allow; what a
cluster enforces follows from the NetworkPolicy rules of
https://kubernetes.io/docs/concepts/services-networking/network-policies/,
which are easy to misread (one peer element with two selectors is an AND, two
elements are an OR; ``policyTypes`` defaults; an absent ``from`` is everyone).
This module applies those rules to the rendered objects so that tests can ask
"may this pod open this port of that pod?" and get the cluster's answer.

What is modelled, and how:

* An endpoint is a pod (namespace, labels, container ports, optionally an IP)
  or an outside address (an IP only: the internet, a node, the API server).
* A pod is isolated for ingress (egress) when a policy of its namespace
  selects it with its ``podSelector`` and lists that type in ``policyTypes``;
  without ``policyTypes``, Ingress always, Egress when the policy has
  ``egress`` rules. A flow needs the source's egress and the destination's
  ingress to allow it; an endpoint that is not isolated allows everything,
  so outside addresses and pods of namespaces without policies (kube-system)
  are constrained only by the other end.
* Rules of all the policies selecting a pod are OR'ed. In a rule an absent or
  empty ``from``/``to`` means every peer, an absent or empty ``ports`` every
  port; a peer element with ``namespaceSelector`` and ``podSelector`` needs
  both, ``namespaceSelector`` alone means every pod of the matching
  namespaces, ``podSelector`` alone means pods of the policy's namespace.
* ``ipBlock`` matches an endpoint's IP when it is inside ``cidr`` and outside
  every ``except``. Pods carry no IP unless the caller gives one (pod IPs are
  ephemeral, the documentation advises ipBlock for cluster-external
  addresses), so by default an ipBlock never matches a pod; an outside
  address never matches a pod or namespace selector.
* Ports: ``protocol`` defaults to TCP; a numeric ``port`` matches that number
  or the range up to ``endPort``; a named port matches when the destination
  pod has a container port of that name, number and protocol.
* Namespace labels come from the Namespace objects, plus the automatic
  ``kubernetes.io/metadata.name``; a namespace without an object (kube-system)
  has that label only.

Not modelled: a pod reaching itself and traffic between a pod and its own node
are always allowed by Kubernetes whatever the policies say; here source and
destination are two distinct endpoints and a node is an ordinary address.
Host-network pods are outside NetworkPolicy; give them as outside addresses.
"""
import ipaddress
from dataclasses import dataclass, field

NAME_LABEL = "kubernetes.io/metadata.name"
INGRESS, EGRESS = "Ingress", "Egress"


@dataclass(frozen=True)
class ContainerPort:
    number: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """A pod when namespace is set, otherwise an outside address (ip)."""
    name: str
    namespace: str | None = None
    labels: dict = field(default_factory=dict, hash=False, compare=False)
    ports: tuple = ()
    ip: str | None = None

    @property
    def is_pod(self):
        return self.namespace is not None


def pod(namespace, labels, ports=(), name=None, ip=None):
    """A pod; ports are ContainerPort or (number, protocol[, name]) tuples."""
    ports = tuple(p if isinstance(p, ContainerPort) else ContainerPort(p[0], *p[1:]) for p in ports)
    return Endpoint(name or f"{namespace}/{labels}", namespace, dict(labels), ports, ip)


def outside(ip, name=None):
    """An address outside the pod network (internet host, node, API server)."""
    return Endpoint(name or ip, ip=ip)


def container_ports(pod_spec):
    """The declared ports of a pod spec's containers, for named-port lookup."""
    return tuple(ContainerPort(p["containerPort"], p.get("protocol", "TCP"), p.get("name"))
                 for c in pod_spec.get("containers", []) for p in c.get("ports", []))


# --- label selectors ---------------------------------------------------------

def _expression_matches(expr, labels):
    key, op, values = expr["key"], expr["operator"], expr.get("values", [])
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise ValueError(f"unknown selector operator {op!r}")


def selector_matches(selector, labels):
    """A LabelSelector: every matchLabels pair and every expression; {} matches all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(_expression_matches(e, labels) for e in selector.get("matchExpressions") or [])


# --- peers and ports ---------------------------------------------------------

def ip_in_block(ip, block):
    """Inside cidr and outside every except; an address of the other IP family never matches."""
    addr = ipaddress.ip_address(ip)
    net = ipaddress.ip_network(block["cidr"], strict=False)
    if addr.version != net.version or addr not in net:
        return False
    return not any(addr in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])


class Cluster:
    """The policies and namespace labels of a set of Kubernetes objects."""

    def __init__(self, objects):
        objects = [o for o in objects if o]
        self.namespace_labels = {o["metadata"]["name"]: dict(o["metadata"].get("labels") or {})
                                 for o in objects if o["kind"] == "Namespace"}
        self.policies = [o for o in objects if o["kind"] == "NetworkPolicy"]

    def labels_of_namespace(self, namespace):
        return {**self.namespace_labels.get(namespace, {}), NAME_LABEL: namespace}

    def peer_matches(self, peer, endpoint, policy_namespace):
        """One element of from/to. The API requires at least one field in it."""
        if "ipBlock" in peer:
            return endpoint.ip is not None and ip_in_block(endpoint.ip, peer["ipBlock"])
        if not endpoint.is_pod:
            return False
        if "namespaceSelector" in peer:
            if not selector_matches(peer["namespaceSelector"], self.labels_of_namespace(endpoint.namespace)):
                return False
        elif "podSelector" in peer:
            if endpoint.namespace != policy_namespace:
                return False
        else:
            raise ValueError(f"empty NetworkPolicy peer {peer!r}")
        return "podSelector" not in peer or selector_matches(peer["podSelector"], endpoint.labels)


def port_matches(rule_port, destination, number, protocol):
    """One entry of ports: protocol first, then number/range or name."""
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    port = rule_port.get("port")
    if port is None:
        return True
    if isinstance(port, int):
        return port <= number <= rule_port.get("endPort", port)
    return any(p.name == port and p.number == number and p.protocol == protocol for p in destination.ports)


def policy_types(policy):
    spec = policy["spec"]
    if "policyTypes" in spec:
        return spec["policyTypes"]
    return [INGRESS, EGRESS] if spec.get("egress") else [INGRESS]


# --- the decision ------------------------------------------------------------

@dataclass
class Verdict:
    """allowed, plus why: the policies whose rules let each side through
    (["not isolated"] when no policy isolates that side)."""
    allowed: bool
    egress: list
    ingress: list


def _policies_isolating(cluster, endpoint, direction):
    if not endpoint.is_pod:
        return []
    return [p for p in cluster.policies
            if p["metadata"].get("namespace") == endpoint.namespace
            and direction in policy_types(p)
            and selector_matches(p["spec"].get("podSelector"), endpoint.labels)]


def _rule_allows(cluster, rule, policy, peer, destination, number, protocol, direction):
    peers = rule.get("from" if direction == INGRESS else "to") or []
    namespace = policy["metadata"]["namespace"]
    if peers and not any(cluster.peer_matches(p, peer, namespace) for p in peers):
        return False
    ports = rule.get("ports") or []
    return not ports or any(port_matches(p, destination, number, protocol) for p in ports)


def _side(cluster, subject, peer, destination, number, protocol, direction):
    """The names of the policies letting subject's side through, [] when none."""
    isolating = _policies_isolating(cluster, subject, direction)
    if not isolating:
        return ["not isolated"]
    key = "ingress" if direction == INGRESS else "egress"
    return [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in isolating
            if any(_rule_allows(cluster, r, p, peer, destination, number, protocol, direction)
                   for r in p["spec"].get(key) or [])]


def verdict(cluster, source, destination, number, protocol="TCP"):
    """Whether source may open destination:number/protocol, and which policies say so."""
    egress = _side(cluster, source, destination, destination, number, protocol, EGRESS)
    ingress = _side(cluster, destination, source, destination, number, protocol, INGRESS)
    return Verdict(bool(egress and ingress), egress, ingress)


def allowed(cluster, source, destination, number, protocol="TCP"):
    return verdict(cluster, source, destination, number, protocol).allowed
