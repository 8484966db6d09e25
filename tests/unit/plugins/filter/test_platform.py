import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.superkubernetex.platform.plugins.filter.platform import check_hosts, resolve_instances


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
