"""patroni_rollout's order and waits: the outdated members that are not the
primary go first (highest ordinal first), the primary last; a replaced
member counts only once it is a new pod, on the new revision, and Ready.
The switchover itself runs against Patroni on the test cluster
(tests/e2e/test_e2e_postgres_ha.py)."""
import pytest

from ansible_collections.superkubernetex.platform.plugins.modules.patroni_rollout import (
    Rollout, RolloutError, plan, ready, selector_of)


def pod(name, revision, uid=None, is_ready=True, deleting=False):
    metadata = {"name": name, "uid": uid or f"uid-{name}", "labels": {"controller-revision-hash": revision}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    return {"metadata": metadata, "status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if is_ready else "False"}]}}


def test_nothing_to_do_when_every_member_runs_the_revision():
    assert plan([pod("postgres-0", "new"), pod("postgres-1", "new")], "new", ["postgres-0"], 2) == ([], None)


def test_replicas_first_highest_ordinal_first_then_the_primary():
    pods = [pod(f"postgres-{i}", "old") for i in (0, 1, 2, 10)]
    assert plan(pods, "new", ["postgres-1"], 11) == (["postgres-10", "postgres-2", "postgres-0"], "postgres-1")


def test_an_updated_primary_is_left_alone():
    pods = [pod("postgres-0", "new"), pod("postgres-1", "old"), pod("postgres-2", "new")]
    assert plan(pods, "new", ["postgres-0"], 3) == (["postgres-1"], None)


def test_members_the_controller_removes_are_left_alone():
    # Three members down to one: postgres-1 and -2 are on their way out.
    pods = [pod(f"postgres-{i}", "old") for i in range(3)]
    assert plan(pods, "new", ["postgres-0"], 1) == ([], "postgres-0")


def test_a_member_without_patroni_role_is_replaced_like_a_replica():
    # The single server of the previous layout: no role label yet.
    assert plan([pod("postgres-0", "old")], "new", [], 1) == (["postgres-0"], None)


@pytest.mark.parametrize("p, expected", [
    (pod("a", "r"), True), (pod("a", "r", is_ready=False), False), (pod("a", "r", deleting=True), False),
    ({"metadata": {"name": "a"}}, False)], ids=["ready", "not-ready", "terminating", "no-status"])
def test_ready(p, expected):
    assert ready(p) is expected


def test_selector_of_the_statefulset():
    sts = {"spec": {"selector": {"matchLabels": {"b": "2", "a": "1"}}}}
    assert selector_of(sts) == "a=1,b=2"


class FakeApi:
    """Pods of a StatefulSet whose controller recreates a deleted pod on the
    update revision, Ready after `warmup` reads."""

    def __init__(self, pods, revision, warmup=2):
        self.pods = {p["metadata"]["name"]: p for p in pods}
        self.revision, self.warmup, self.deleted, self.reads = revision, warmup, [], {}

    def get(self, api_version, kind, name, namespace=None):
        if name not in self.pods and name in self.deleted:
            self.pods[name] = pod(name, self.revision, uid=f"new-{name}", is_ready=False)
            self.reads[name] = 0
        current = self.pods.get(name)
        if current is not None and name in self.reads:
            self.reads[name] += 1
            if self.reads[name] >= self.warmup:
                self.pods[name] = pod(name, self.revision, uid=f"new-{name}")
        return self.pods.get(name)

    def delete(self, api_version, kind, name, namespace=None):
        self.deleted.append(name)
        self.pods.pop(name)
        return True


class Clock:
    def __init__(self):
        self.now = 0.0

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


PARAMS = {"namespace": "skx-data", "name": "postgres", "timeout": 30}


def test_replace_waits_for_the_new_pod_ready_on_the_new_revision():
    api, clock = FakeApi([pod("postgres-1", "old")], "new", warmup=5), Clock()
    Rollout(api, PARAMS, sleep=clock.sleep, clock=clock.time).replace("postgres-1", "new")
    assert api.deleted == ["postgres-1"]
    assert api.pods["postgres-1"]["metadata"]["uid"] == "new-postgres-1"
    assert ready(api.pods["postgres-1"])
    assert clock.now >= 4


def test_a_member_that_never_comes_back_stops_the_rollout_with_its_name():
    api, clock = FakeApi([pod("postgres-2", "old")], "new", warmup=10 ** 6), Clock()
    with pytest.raises(RolloutError, match="postgres-2 Ready on revision new"):
        Rollout(api, PARAMS, sleep=clock.sleep, clock=clock.time).replace("postgres-2", "new")
    assert clock.now <= PARAMS["timeout"] + 1


def test_the_old_pod_still_ready_does_not_count():
    # Right after the delete the API may still return the old pod: its uid
    # is not the new one's.
    api, clock = FakeApi([pod("postgres-0", "new")], "new"), Clock()
    rollout = Rollout(api, PARAMS, sleep=clock.sleep, clock=clock.time)
    with pytest.raises(RolloutError):
        rollout.member_ready("postgres-0", "new", old_uid="uid-postgres-0")


def test_candidates_are_the_other_members_ready_on_the_new_revision():
    pods = [pod("postgres-0", "old"), pod("postgres-1", "new"), pod("postgres-2", "new", is_ready=False),
            pod("postgres-3", "old")]

    class Listing:
        def list(self, *args, **kwargs):
            return pods
    assert Rollout(Listing(), PARAMS).candidates("app=postgres", "new", "postgres-0") == ["postgres-1"]


def test_fewer_members_wait_until_the_leaving_ones_are_gone():
    listings = [[pod("postgres-0", "old"), pod("postgres-1", "old"), pod("postgres-2", "old")],
                [pod("postgres-0", "old"), pod("postgres-1", "old")],
                [pod("postgres-0", "old")]]

    class Shrinking:
        def list(self, *args, **kwargs):
            return listings.pop(0) if len(listings) > 1 else listings[0]
    clock = Clock()
    Rollout(Shrinking(), PARAMS, sleep=clock.sleep, clock=clock.time).removed("app=postgres", 1)
    assert clock.now == 2


def test_members_that_never_leave_stop_the_rollout():
    class Stuck:
        def list(self, *args, **kwargs):
            return [pod("postgres-0", "old"), pod("postgres-1", "old")]
    clock = Clock()
    with pytest.raises(RolloutError, match="members from postgres-1 on to be removed"):
        Rollout(Stuck(), PARAMS, sleep=clock.sleep, clock=clock.time).removed("app=postgres", 1)
