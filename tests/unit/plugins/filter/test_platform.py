import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.superkubernetex.platform.plugins.filter.platform import (
    check_hosts, check_instance_names, kubeconfig_target, resolve_instances, unlisted_instances)


def test_defaults_are_derived_from_the_name_and_domain():
    [inst] = resolve_instances([{"name": "instance4"}], "example.org")
    assert inst["host"] == "inst4.example.org"
    assert inst["namespace"] == "skx-instance4"
    assert inst["database"] == "instance4_db"
    assert inst["replicas_min"] == 2 and inst["state"] == "present"


def test_names_without_a_number_get_their_own_subdomain():
    [inst] = resolve_instances([{"name": "acme", "replicas_max": 9}], "example.org", "t-")
    assert (inst["host"], inst["namespace"], inst["replicas_max"]) == ("acme.example.org", "t-acme", 9)


@pytest.mark.parametrize("instances, message", [
    ("instance1", "platform_instances must be a list"),
    ([{"name": "instance1", "replica": 3}], r"platform_instances\[0\] has unknown field\(s\) replica"),
    ([{"name": "Instance_1"}], r"platform_instances\[0\].name must be a DNS label"),
    ([{"host": "x.example.org"}], r"platform_instances\[0\].name must be a DNS label"),
    ([{"name": "a"}, {"name": "a"}], r"platform_instances\[1\].name 'a' is used twice"),
    ([{"name": "a", "host": "h.example.org"}, {"name": "b", "host": "h.example.org"}],
     r"platform_instances\[1\].host 'h.example.org' is used by another instance"),
    ([{"name": "a", "replicas_min": "2"}], r"replicas_min must be a positive integer"),
    ([{"name": "a", "replicas_min": 4, "replicas_max": 3}], r"replicas_min \(4\) must not exceed"),
    ([{"name": "a", "storage_size": "1GB"}], r"storage_size must be a quantity"),
    ([{"name": "a", "state": "gone"}], r"state must be 'present' or 'absent'"),
])
def test_bad_input_names_the_variable(instances, message):
    with pytest.raises(AnsibleFilterError, match=message):
        resolve_instances(instances, "example.org")


def test_duplicate_service_hosts_are_refused():
    with pytest.raises(AnsibleFilterError, match="used by both auth and payment"):
        check_hosts({"auth": "a.example.org", "payment": "a.example.org"})
    assert check_hosts({"auth": "a.example.org"}) == {"auth": "a.example.org"}


NAMESPACES = {"app": "skx-app", "data": "skx-data", "monitoring": "skx-monitoring", "logging": "skx-logging",
              "ingress": "kube-system"}
HOSTS = {"frontend": "example.org", "auth": "auth.example.org", "payment": "pay.example.org",
         "monitoring": "monitoring.example.org"}


def names(instances, prefix="skx-", reserved=()):
    return check_instance_names(resolve_instances(instances, "example.org", prefix), NAMESPACES, HOSTS, reserved)


@pytest.mark.parametrize("instances, prefix, message", [
    ([{"name": "app"}], "skx-", r"namespace 'skx-app' is already platform_namespaces.app"),
    ([{"name": "logging"}], "skx-", r"namespace 'skx-logging' is already platform_namespaces.logging"),
    ([{"name": "system"}], "kube-", r"namespace 'kube-system' is already platform_namespaces.ingress"),
    ([{"name": "a", "host": "auth.example.org"}], "skx-", r"host 'auth.example.org' is already platform_hosts.auth"),
    ([{"name": "superkube"}], "skx-", r"database role 'superkube' is already used by the shared superkube"),
    ([{"name": "superkube-b"}], "skx-", r"database role 'superkube_b' is already used"),
    ([{"name": "superkube-payment"}], "skx-", r"database role 'superkube_payment' is already used by the shared"),
    ([{"name": "superkube-auth-b"}], "skx-", r"database role 'superkube_auth_b' is already used"),
    ([{"name": "shop"}, {"name": "shop-b"}], "skx-", r"\[1\] \('shop-b'\): its database role 'shop_b' is already used by"),
    ([{"name": "pg-shop"}], "skx-", r"would start with pg_"),
])
def test_colliding_instance_names_are_refused(instances, prefix, message):
    with pytest.raises(AnsibleFilterError, match=message):
        names(instances, prefix)


def test_the_platform_roles_are_reserved():
    with pytest.raises(AnsibleFilterError, match=r"database role 'postgres_exporter' is already used by the platform"):
        names([{"name": "postgres-exporter"}], reserved=["postgres", "postgres_exporter"])


def test_distinct_instances_pass_unchanged():
    resolved = resolve_instances([{"name": "instance1"}, {"name": "shop"}, {"name": "shop-x"}], "example.org")
    assert check_instance_names(resolved, NAMESPACES, HOSTS, ["postgres"]) is resolved


KUBECONFIG = {
    "current-context": "a",
    "contexts": [{"name": "a", "context": {"cluster": "ca", "user": "u"}},
                 {"name": "b", "context": {"cluster": "cb", "user": "u"}}],
    "clusters": [{"name": "ca", "cluster": {"server": "https://10.0.0.1:6443"}},
                 {"name": "cb", "cluster": {"server": "https://10.0.0.2:6443"}}],
    "users": [{"name": "u", "user": {"token": "secret-token"}}],
}


def test_kubeconfig_target_names_the_context_and_server_only():
    assert kubeconfig_target(KUBECONFIG) == {"context": "a", "server": "https://10.0.0.1:6443"}
    assert kubeconfig_target(KUBECONFIG, "b") == {"context": "b", "server": "https://10.0.0.2:6443"}
    assert kubeconfig_target(KUBECONFIG, "c") == {"context": "c (not in the kubeconfig)", "server": ""}
    assert kubeconfig_target("", None) == {"context": "", "server": ""}
    assert "secret-token" not in repr(kubeconfig_target(KUBECONFIG))


@pytest.mark.parametrize("entry, lifecycle", [
    ({"name": "a"}, "serving"),
    ({"name": "a", "delete_data": True}, "serving"),
    ({"name": "a", "state": "absent"}, "stopped"),
    ({"name": "a", "state": "absent", "delete_data": True}, "deleted"),
])
def test_each_instance_says_what_the_platform_does_with_it(entry, lifecycle):
    [inst] = resolve_instances([entry], "example.org")
    assert inst["lifecycle"] == lifecycle


def test_lifecycle_is_derived_not_set():
    with pytest.raises(AnsibleFilterError, match="unknown field"):
        resolve_instances([{"name": "a", "lifecycle": "deleted"}], "example.org")


def _namespace(name, tenant=None, host=None, deleting=False):
    meta = {"name": name, "labels": {"superkubernetex.com/concern": "instance"}}
    if tenant:
        meta["labels"]["superkubernetex.com/instance"] = tenant
    if host:
        meta["annotations"] = {"superkubernetex.com/host": host}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": meta}


def test_tenants_found_on_the_cluster_but_not_in_the_list_are_returned_with_their_fields():
    listed = resolve_instances([{"name": "instance1"}, {"name": "instance2", "state": "absent"}], "example.org")
    found = [_namespace("skx-instance1", "instance1"), _namespace("skx-instance2", "instance2"),
             _namespace("skx-instance9", "instance9", "shop.example.org"), _namespace("skx-acme", "acme")]
    unlisted = unlisted_instances(found, listed, "example.org")
    assert [(i["name"], i["namespace"], i["host"], i["database"], i["lifecycle"]) for i in unlisted] == [
        ("acme", "skx-acme", "acme.example.org", "acme_db", "unlisted"),
        ("instance9", "skx-instance9", "shop.example.org", "instance9_db", "unlisted"),
    ]


def test_namespaces_being_deleted_or_without_a_valid_tenant_label_are_not_tenants():
    found = [_namespace("skx-gone", "gone", deleting=True), _namespace("skx-nolabel"),
             _namespace("skx-bad", "Not_A_Name"), _namespace("skx-badhost", "badhost", "not a host")]
    unlisted = unlisted_instances(found, [], "example.org")
    assert [(i["name"], i["host"]) for i in unlisted] == [("badhost", "badhost.example.org")]


def test_nothing_found_means_nothing_unlisted():
    assert unlisted_instances([], resolve_instances([{"name": "a"}], "example.org"), "example.org") == []
    with pytest.raises(AnsibleFilterError, match="takes a list"):
        unlisted_instances(None, [], "example.org")
