"""The NetworkPolicy evaluator (tests/lib/netpol.py) on the examples of the
Kubernetes documentation, so that the flow table built on it
(docs/network-flows.md) can be trusted. Each expectation is what the
documentation says of its example; no cluster is involved.
https://kubernetes.io/docs/concepts/services-networking/network-policies/
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/ (set-based selectors)
"""
import pytest
import yaml

from lib.netpol import NAME_LABEL, Cluster, allowed, outside, pod, verdict


INTERNET = outside("203.0.113.10")


def namespace(name, **labels):
    return {"kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def cluster(*policies, namespaces=()):
    """A Cluster of namespaces and policies given as YAML text or as objects."""
    policies = [yaml.safe_load(p) if isinstance(p, str) else p for p in policies]
    return Cluster([*namespaces, *policies])


def policy(name, types, ingress=None, egress=None, pod_selector=None, namespace="default"):
    """A NetworkPolicy object; types None leaves policyTypes to its default."""
    spec = {"podSelector": pod_selector or {}}
    if types is not None:
        spec["policyTypes"] = types
    for key, rules in (("ingress", ingress), ("egress", egress)):
        if rules is not None:
            spec[key] = rules
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def ingress_from(name, *peers, pod_selector=None):
    """A policy of namespace default admitting one `from` list of peers."""
    return policy(name, ["Ingress"], [{"from": list(peers)}], pod_selector=pod_selector)


# --- the test-network-policy example -----------------------------------------

TEST_NETWORK_POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - from:
        - ipBlock:
            cidr: 172.17.0.0/16
            except:
              - 172.17.1.0/24
        - namespaceSelector:
            matchLabels:
              project: myproject
        - podSelector:
            matchLabels:
              role: frontend
      ports:
        - protocol: TCP
          port: 6379
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.0/24
      ports:
        - protocol: TCP
          port: 5978
"""


@pytest.fixture
def example():
    return cluster(TEST_NETWORK_POLICY, namespaces=[namespace("default"),
                                                    namespace("myproject", project="myproject"),
                                                    namespace("other", project="other")])


DB = pod("default", {"role": "db"})


def test_example_frontend_pod_of_same_namespace_reaches_db_6379(example):
    """"pods in the default namespace with the label role=frontend" may connect on TCP 6379."""
    assert allowed(example, pod("default", {"role": "frontend"}), DB, 6379)


def test_example_any_pod_of_myproject_namespace_reaches_db(example):
    """"all pods in a namespace with the label project=myproject", whatever their labels."""
    assert allowed(example, pod("myproject", {"app": "anything"}), DB, 6379)


def test_example_frontend_of_another_namespace_is_refused(example):
    """podSelector alone selects pods of the policy's own namespace only."""
    assert not allowed(example, pod("other", {"role": "frontend"}), DB, 6379)


def test_example_ip_block_with_except(example):
    """172.17.0.0/16 is allowed "except 172.17.1.0/24"."""
    assert allowed(example, outside("172.17.0.5"), DB, 6379)
    assert allowed(example, outside("172.17.2.200"), DB, 6379)
    assert not allowed(example, outside("172.17.1.9"), DB, 6379)
    assert not allowed(example, outside("172.18.0.1"), DB, 6379)


def test_example_only_port_6379_tcp(example):
    """The ingress rule names TCP 6379: another port or UDP is refused."""
    frontend = pod("default", {"role": "frontend"})
    assert not allowed(example, frontend, DB, 6380)
    assert not allowed(example, frontend, DB, 6379, "UDP")


def test_example_egress_to_10_0_0_0_24_on_5978_only(example):
    """Egress: "to any IP in the CIDR 10.0.0.0/24 on TCP port 5978"."""
    assert allowed(example, DB, outside("10.0.0.7"), 5978)
    assert not allowed(example, DB, outside("10.0.1.7"), 5978)
    assert not allowed(example, DB, outside("10.0.0.7"), 443)


def test_example_db_egress_to_pods_is_refused(example):
    """The egress rule has an ipBlock only and pods carry no IP: no pod matches it."""
    assert not allowed(example, DB, pod("default", {"role": "frontend"}), 5978)


def test_example_pod_ip_inside_ip_block_matches_when_given(example):
    """A pod given an IP is matched by ipBlock like any address."""
    assert allowed(example, DB, pod("default", {"role": "cache"}, ip="10.0.0.9"), 5978)


def test_example_pods_not_selected_stay_open(example):
    """Pods the policy does not select (role=web) are not isolated."""
    assert allowed(example, INTERNET, pod("default", {"role": "web"}), 80)


# --- default policies -------------------------------------------------------------

def namespace_wide(name, direction, rules=None):
    """The documentation's default policies: every pod of namespace default,
    one direction, with `rules` (allow) or without any rule (deny)."""
    return policy(name, [direction], **{direction.lower(): rules})


DEFAULT_DENY_INGRESS = namespace_wide("default-deny-ingress", "Ingress")
ALLOW_ALL_INGRESS = namespace_wide("allow-all-ingress", "Ingress", [{}])
DEFAULT_DENY_EGRESS = namespace_wide("default-deny-egress", "Egress")
ALLOW_ALL_EGRESS = namespace_wide("allow-all-egress", "Egress", [{}])

WEB = pod("default", {"app": "web"})
CLIENT = pod("other", {"app": "client"})


@pytest.mark.parametrize("policy, refused, still_allowed", [
    # "ensures that even pods that aren't selected by any other NetworkPolicy
    # will still be isolated for ingress"; "does not affect isolation for egress".
    (DEFAULT_DENY_INGRESS, [(CLIENT, WEB, 80), (INTERNET, WEB, 443)], [(WEB, INTERNET, 443), (WEB, CLIENT, 80)]),
    # "ensures that even pods that aren't selected by any other NetworkPolicy
    # will not be allowed egress traffic"; "does not change the ingress isolation".
    (DEFAULT_DENY_EGRESS, [(WEB, CLIENT, 80), (WEB, INTERNET, 443)], [(CLIENT, WEB, 80), (INTERNET, WEB, 443)]),
], ids=["default-deny-ingress", "default-deny-egress"])
def test_default_deny_one_direction(policy, refused, still_allowed):
    """A default deny isolates every pod of its namespace in its direction
    only; the other direction and other namespaces' pods stay open."""
    c = cluster(policy)
    assert not any(allowed(c, *flow) for flow in refused)
    assert all(allowed(c, *flow) for flow in still_allowed)


@pytest.mark.parametrize("deny, allow_all", [(DEFAULT_DENY_INGRESS, ALLOW_ALL_INGRESS),
                                             (DEFAULT_DENY_EGRESS, ALLOW_ALL_EGRESS)],
                         ids=["allow-all-ingress", "allow-all-egress"])
def test_allow_all_overrides_default_deny(deny, allow_all):
    """"allows all incoming connections to all pods in a namespace" (and the
    egress twin): an empty rule {} is every peer on every port and protocol."""
    c = cluster(deny, allow_all)
    assert allowed(c, CLIENT, WEB, 80) and allowed(c, WEB, CLIENT, 80)
    assert allowed(c, INTERNET, WEB, 5353, "UDP") and allowed(c, WEB, INTERNET, 53, "UDP")


def test_both_sides_must_allow():
    """Egress allowed at the source but ingress denied at the destination: refused."""
    c = cluster(ALLOW_ALL_EGRESS, DEFAULT_DENY_INGRESS)
    assert not allowed(c, WEB, pod("default", {"app": "db"}), 5432)
    assert allowed(c, WEB, CLIENT, 5432)


def test_policy_types_default_to_ingress_without_egress_rules():
    """"If no policyTypes are specified ... Ingress will always be set and Egress
    will be set if the NetworkPolicy has any egress rules"."""
    c = cluster(policy("ingress-only", None, ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]))
    assert not allowed(c, CLIENT, WEB, 80)
    assert allowed(c, WEB, INTERNET, 443)


def test_policy_types_default_adds_egress_with_egress_rules():
    c = cluster(policy("with-egress", None, egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}]))
    assert allowed(c, WEB, outside("198.51.100.1"), 53, "UDP")
    assert not allowed(c, WEB, outside("198.51.100.1"), 443)
    assert not allowed(c, CLIENT, WEB, 80), "Ingress is always among the defaulted policyTypes"


def test_empty_from_list_means_every_peer():
    c = cluster(policy("port-only", ["Ingress"], [{"from": [], "ports": [{"port": 80}]}]))
    assert allowed(c, INTERNET, WEB, 80)
    assert not allowed(c, INTERNET, WEB, 81)


def test_rules_of_several_policies_are_ored():
    allow_client = ingress_from("allow-client", {"namespaceSelector": {"matchLabels": {NAME_LABEL: "other"}}},
                                pod_selector={"matchLabels": {"app": "web"}})
    c = cluster(DEFAULT_DENY_INGRESS, allow_client)
    v = verdict(c, CLIENT, WEB, 80)
    assert v.allowed and v.ingress == ["default/allow-client"] and v.egress == ["not isolated"]


# --- namespaceSelector and podSelector: AND in one element, OR in two ----------

ALICE_NAMESPACES = {"namespaceSelector": {"matchLabels": {"user": "alice"}}}
CLIENT_PODS = {"podSelector": {"matchLabels": {"role": "client"}}}
AND_POLICY = ingress_from("and", {**ALICE_NAMESPACES, **CLIENT_PODS})  # one element
OR_POLICY = ingress_from("or", ALICE_NAMESPACES, CLIENT_PODS)  # two elements

NAMESPACES = [namespace("default"), namespace("alice-ns", user="alice"), namespace("bob-ns", user="bob")]


def test_one_element_is_and():
    """"a single from element allowing connections from Pods with the label
    role=client in namespaces with the label user=alice"."""
    c = cluster(AND_POLICY, namespaces=NAMESPACES)
    assert allowed(c, pod("alice-ns", {"role": "client"}), WEB, 80)
    assert not allowed(c, pod("alice-ns", {"role": "server"}), WEB, 80)
    assert not allowed(c, pod("default", {"role": "client"}), WEB, 80)
    assert not allowed(c, pod("bob-ns", {"role": "client"}), WEB, 80)


def test_two_elements_are_or():
    """"allows connections from Pods in the local Namespace with the label
    role=client, or from any Pod in any namespace with the label user=alice"."""
    c = cluster(OR_POLICY, namespaces=NAMESPACES)
    assert allowed(c, pod("alice-ns", {"role": "server"}), WEB, 80)
    assert allowed(c, pod("default", {"role": "client"}), WEB, 80)
    assert not allowed(c, pod("bob-ns", {"role": "client"}), WEB, 80)
    assert not allowed(c, pod("default", {"role": "server"}), WEB, 80)


def test_namespace_selected_by_its_automatic_name_label():
    """"The Kubernetes control plane sets an immutable label
    kubernetes.io/metadata.name on all namespaces" (no Namespace object needed)."""
    c = cluster(ingress_from("by-name", {"namespaceSelector": {"matchLabels": {NAME_LABEL: "kube-system"}}}))
    assert allowed(c, pod("kube-system", {"k8s-app": "kube-dns"}), WEB, 80)
    assert not allowed(c, pod("kube-public", {"k8s-app": "kube-dns"}), WEB, 80)


def test_empty_namespace_selector_is_every_namespace():
    c = cluster(ingress_from("any-ns", {"namespaceSelector": {}}))
    assert allowed(c, pod("anywhere", {}), WEB, 80)
    assert not allowed(c, outside("10.0.0.1"), WEB, 80), "a namespace selector matches pods, never an address"


# --- ports: endPort and named ports -------------------------------------------------

# The documentation's multi-port-egress example, in flow style.
MULTI_PORT_EGRESS = """
kind: NetworkPolicy
metadata: {name: multi-port-egress, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 10.0.0.0/24}}]
      ports: [{protocol: TCP, port: 32000, endPort: 32768}]
"""


@pytest.mark.parametrize("port, expected", [(31999, False), (32000, True), (32500, True),
                                            (32768, True), (32769, False)])
def test_end_port_range(port, expected):
    """"allow ... any IP within the range 10.0.0.0/24 over TCP, provided that
    the target port is between the range 32000 and 32768"."""
    c = cluster(MULTI_PORT_EGRESS)
    assert allowed(c, DB, outside("10.0.0.1"), port) is expected


def test_end_port_range_is_tcp_only_here():
    assert not allowed(cluster(MULTI_PORT_EGRESS), DB, outside("10.0.0.1"), 32000, "UDP")


NAMED_PORT = policy("named", ["Ingress"], [{"ports": [{"port": "http"}]}], pod_selector={"matchLabels": {"app": "web"}})


def test_named_port_resolves_to_the_destination_container_port():
    """A named port matches the destination pod's container port of that name."""
    c = cluster(NAMED_PORT)
    web = pod("default", {"app": "web"}, ports=[(8080, "TCP", "http"), (9090, "TCP", "metrics")])
    assert allowed(c, CLIENT, web, 8080)
    assert not allowed(c, CLIENT, web, 9090)
    assert not allowed(c, CLIENT, web, 8080, "UDP")


def test_named_port_missing_on_destination_matches_nothing():
    c = cluster(NAMED_PORT)
    web = pod("default", {"app": "web"}, ports=[(8080, "TCP", "web")])
    assert not allowed(c, CLIENT, web, 8080)


def test_named_port_in_egress_uses_the_destination_pod():
    c = cluster(policy("named-egress", ["Egress"], egress=[{"ports": [{"port": "http"}]}], namespace="other"))
    assert allowed(c, CLIENT, pod("default", {"app": "web"}, ports=[(8080, "TCP", "http")]), 8080)
    assert not allowed(c, CLIENT, pod("default", {"app": "web"}, ports=[(8081, "TCP", "http")]), 8080)
    assert not allowed(c, CLIENT, INTERNET, 8080), "an address has no named port"


# --- matchExpressions ------------------------------------------------------------

def expression_policy(*expressions):
    return cluster(policy("expr", ["Ingress"], pod_selector={"matchExpressions": list(expressions)}))


def isolated(c, labels):
    """Whether a pod with these labels is selected (then refused everything)."""
    return not allowed(c, CLIENT, pod("default", labels), 80)


def test_match_expression_in():
    """"environment in (production, qa)"."""
    c = expression_policy({"key": "environment", "operator": "In", "values": ["production", "qa"]})
    assert isolated(c, {"environment": "qa"})
    assert not isolated(c, {"environment": "dev"})
    assert not isolated(c, {})


def test_match_expression_not_in():
    """"tier notin (frontend, backend)": also the resources without a tier label."""
    c = expression_policy({"key": "tier", "operator": "NotIn", "values": ["frontend", "backend"]})
    assert isolated(c, {"tier": "cache"})
    assert isolated(c, {})
    assert not isolated(c, {"tier": "frontend"})


def test_match_expression_exists_and_does_not_exist():
    """"partition" (exists) and "!partition" (does not exist)."""
    exists = expression_policy({"key": "partition", "operator": "Exists"})
    absent = expression_policy({"key": "partition", "operator": "DoesNotExist"})
    assert isolated(exists, {"partition": "a"}) and not isolated(exists, {})
    assert isolated(absent, {}) and not isolated(absent, {"partition": "a"})


def test_match_labels_and_expressions_are_anded():
    c = cluster(policy("both", ["Ingress"], pod_selector={
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "environment", "operator": "In", "values": ["production"]}]}))
    assert isolated(c, {"app": "web", "environment": "production"})
    assert not isolated(c, {"app": "web", "environment": "qa"})
    assert not isolated(c, {"environment": "production"})
