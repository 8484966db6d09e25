import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.superkubernetex.platform.plugins.filter.quota import (
    pod_resources, quota_shortfall, workload_quota)

DEFAULTS = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
WEB = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}


def test_pods_times_their_resources_and_the_pvcs_add_up():
    # The case: 3 services x (6 HPA max + 1 surge) x 500m.
    hard = workload_quota([{"name": "web", "pods": 21, "containers": [WEB]}, {"name": "volume", "pvcs": 2}],
                          DEFAULTS)
    assert hard == {"requests.cpu": "2100m", "requests.memory": "2688Mi", "limits.cpu": "10500m",
                    "limits.memory": "5376Mi", "persistentvolumeclaims": "2"}


def test_whole_cores_and_gibibytes_are_written_as_such():
    hard = workload_quota([{"pods": 4, "containers": [{"requests": {"cpu": "0.5", "memory": "1Gi"},
                                                       "limits": {"cpu": "1", "memory": "2Gi"}}]}], DEFAULTS)
    assert hard["requests.cpu"] == "2" and hard["limits.cpu"] == "4"
    assert hard["requests.memory"] == "4Gi" and hard["limits.memory"] == "8Gi"


def test_containers_without_resources_get_the_limitrange_defaults():
    assert pod_resources([{}], [], DEFAULTS) == {"requests.cpu": 50, "requests.memory": 64 * 2**20,
                                                 "limits.cpu": 500, "limits.memory": 256 * 2**20}


def test_a_limit_without_a_request_is_also_the_request():
    res = pod_resources([{"limits": {"cpu": "2", "memory": "1Gi"}}], [], DEFAULTS)
    assert res["requests.cpu"] == 2000 and res["requests.memory"] == 2**30


def test_init_containers_count_as_the_larger_of_init_and_containers_per_resource():
    big_init = {"requests": {"cpu": "1", "memory": "16Mi"}, "limits": {"cpu": "1", "memory": "32Mi"}}
    res = pod_resources([WEB, WEB], [big_init], DEFAULTS)
    # cpu: the init container (1000m) beats the containers (200m / 1000m);
    # memory: the containers (256Mi / 512Mi) beat the init container.
    assert res == {"requests.cpu": 1000, "requests.memory": 256 * 2**20,
                   "limits.cpu": 1000, "limits.memory": 512 * 2**20}


def test_no_pods_take_nothing():
    hard = workload_quota([{"name": "volume", "pvcs": 1}], DEFAULTS)
    assert hard == {"requests.cpu": "0", "requests.memory": "0", "limits.cpu": "0", "limits.memory": "0",
                    "persistentvolumeclaims": "1"}


def test_pod_counts_may_come_as_strings_from_templates():
    assert workload_quota([{"pods": "3", "containers": [WEB]}], DEFAULTS)["limits.cpu"] == "1500m"


@pytest.mark.parametrize("workloads, message", [
    ("web", "expects a list of workloads"),
    ([{"name": "web", "pods": -1}], "web: pods must be a non-negative integer"),
    ([{"name": "web", "pods": 1.5}], "web: pods must be a non-negative integer"),
    ([{"name": "web", "pods": True}], "web: pods must be a non-negative integer"),
    ([{"name": "web", "pods": 1, "containers": [{"limits": {"cpu": "lots"}}]}],
     r"web.containers\[0\].limits.cpu: 'lots' is not a Kubernetes cpu quantity"),
    ([{"name": "web", "pods": 1, "containers": [{"requests": {"memory": "100m"}}]}],
     "is not a memory quantity"),
    ([{"name": "web", "pods": 1, "containers": ["500m"]}], r"web.containers\[0\] must be a dict"),
])
def test_bad_workloads_are_refused_with_the_workload_named(workloads, message):
    with pytest.raises(AnsibleFilterError, match=message):
        workload_quota(workloads, DEFAULTS)


def test_shortfall_names_the_figures_set_below_the_need():
    need = {"requests.cpu": "2100m", "limits.cpu": "10500m", "limits.memory": "5376Mi", "persistentvolumeclaims": "2"}
    assert quota_shortfall({"limits.cpu": "8", "limits.memory": "16Gi", "persistentvolumeclaims": 1}, need) == [
        "limits.cpu", "persistentvolumeclaims"]
    assert quota_shortfall({"requests.cpu": "2.1", "count/pods": "50"}, need) == []
    assert quota_shortfall({}, need) == []
