"""resolve_pod: the pod a port-forward goes to, by name or by label selector
(the PostgreSQL primary under Patroni), refused clearly when it is not
exactly one Running pod."""
import pytest

from ansible_collections.superkubernetex.platform.plugins.module_utils.kubeapi import ApiError
from ansible_collections.superkubernetex.platform.plugins.module_utils.portforward import PortForwardError, resolve_pod

PRIMARY = "app.kubernetes.io/name=postgres,cluster-name=postgres,role=primary"


def pod(name, phase="Running", deleting=False):
    meta = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T12:00:00Z"
    return {"metadata": meta, "status": {"phase": phase}}


class FakeApi:
    def __init__(self, pods, error=None):
        self.pods, self.error, self.calls = pods, error, []

    def list(self, api_version, kind, namespace=None, label_selector=None, field_selector=None):
        self.calls.append(("list", kind, namespace, label_selector))
        if self.error:
            raise self.error
        return self.pods

    def get(self, api_version, kind, name, namespace=None):
        self.calls.append(("get", kind, namespace, name))
        return next((p for p in self.pods if p["metadata"]["name"] == name), None)


def test_the_selector_resolves_to_the_one_running_pod_it_matches():
    api = FakeApi([pod("postgres-2"), pod("postgres-1", phase="Pending")])
    assert resolve_pod(api, "skx-data", selector=PRIMARY) == "postgres-2"
    assert api.calls == [("list", "Pod", "skx-data", PRIMARY)]


def test_a_pod_being_deleted_is_not_the_primary_any_more():
    api = FakeApi([pod("postgres-0", deleting=True), pod("postgres-1")])
    assert resolve_pod(api, "skx-data", selector=PRIMARY) == "postgres-1"


@pytest.mark.parametrize("pods, found", [
    ([], "0 Running pod(s) labelled %s in skx-data (none), one expected: a failover may be under way" % PRIMARY),
    ([pod("postgres-0"), pod("postgres-1")], "2 Running pod(s) labelled %s in skx-data (postgres-0, postgres-1)" % PRIMARY),
], ids=["none", "two"])
def test_the_selector_must_match_exactly_one_running_pod(pods, found):
    with pytest.raises(PortForwardError) as e:
        resolve_pod(FakeApi(pods), "skx-data", selector=PRIMARY)
    assert str(e.value).startswith(found)


def test_a_refused_list_names_the_selector():
    with pytest.raises(PortForwardError, match="cannot list the pods labelled role=primary in skx-data: forbidden"):
        resolve_pod(FakeApi([], ApiError(403, "forbidden")), "skx-data", selector="role=primary")


def test_a_named_pod_must_exist_and_run():
    api = FakeApi([pod("postgres-0", phase="Pending")])
    with pytest.raises(PortForwardError, match="pod skx-data/postgres-0 is Pending, not Running"):
        resolve_pod(api, "skx-data", pod="postgres-0")
    with pytest.raises(PortForwardError, match="pod skx-data/postgres-9 does not exist"):
        resolve_pod(api, "skx-data", pod="postgres-9")
    assert resolve_pod(FakeApi([pod("redis-0")]), "skx-data", pod="redis-0") == "redis-0"
