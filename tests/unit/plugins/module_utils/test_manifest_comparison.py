"""The comparison and masking of the manifests module, without a cluster."""
import pytest

from ansible_collections.superkubernetex.platform.plugins.module_utils.manifests import (
    HIDDEN, HIDDEN_CHANGED, RolloutFailed, changed, masked, object_label, rolled_out)

LIVE = {
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "c", "namespace": "n", "resourceVersion": "10", "uid": "u", "generation": 1,
                 "creationTimestamp": "2026-12-01T00:00:00Z", "managedFields": [{"manager": "skx"}]},
    "data": {"k": "v"},
}


def test_an_apply_that_only_moves_server_written_fields_is_no_change():
    after = {**LIVE, "metadata": {**LIVE["metadata"], "resourceVersion": "11", "managedFields": []},
             "status": {"observed": 2}}
    assert not changed(LIVE, after)


def test_a_changed_value_or_a_new_object_is_a_change():
    assert changed(LIVE, {**LIVE, "data": {"k": "w"}})
    assert changed(None, LIVE)


def test_objects_are_named_with_their_namespace_when_they_have_one():
    assert object_label(LIVE) == "ConfigMap/n/c"
    assert object_label({"kind": "Namespace", "metadata": {"name": "n"}}) == "Namespace/n"


def test_secret_values_never_survive_masking_and_changed_keys_are_marked():
    before = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "c2VjcmV0MQ==", "b": "c2FtZQ=="}}
    after = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "c2VjcmV0Mg==", "b": "c2FtZQ==",
                                                                   "c": "bmV3"}}
    assert masked(before)["data"] == {"a": HIDDEN, "b": HIDDEN}
    assert masked(after, before)["data"] == {"a": HIDDEN_CHANGED, "b": HIDDEN, "c": HIDDEN_CHANGED}
    assert "c2Vj" not in repr(masked(after, before)) and after["data"]["a"] == "c2VjcmV0Mg=="
    stringdata = {"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": "pw"}}
    assert masked(stringdata) == {**stringdata, "stringData": {"password": HIDDEN}}


def test_other_kinds_are_shown_as_they_are():
    assert masked(LIVE) is LIVE


def deployment(generation=2, observed=2, want=2, **status):
    return {"kind": "Deployment", "metadata": {"name": "d", "namespace": "n", "generation": generation},
            "spec": {"replicas": want}, "status": {"observedGeneration": observed, **status}}


def test_a_deployment_has_rolled_out_when_every_replica_is_new_and_available():
    assert rolled_out(deployment(updatedReplicas=2, availableReplicas=2, replicas=2))
    # An old pod still running, a template not yet seen, a new pod not yet available.
    assert not rolled_out(deployment(updatedReplicas=2, availableReplicas=2, replicas=3))
    assert not rolled_out(deployment(observed=1, updatedReplicas=2, availableReplicas=2, replicas=2))
    assert not rolled_out(deployment(updatedReplicas=2, availableReplicas=1, replicas=2))


def test_a_deployment_past_its_progress_deadline_fails_the_wait():
    stuck = deployment(updatedReplicas=1, conditions=[
        {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "no progress"}])
    with pytest.raises(RolloutFailed, match="Deployment/n/d exceeded its progress deadline"):
        rolled_out(stuck)


def test_a_statefulset_and_a_daemonset_roll_out_to_their_current_revision_and_every_node():
    sts = {"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 1},
           "status": {"observedGeneration": 1, "updatedReplicas": 1, "readyReplicas": 1,
                      "currentRevision": "a", "updateRevision": "a"}}
    assert rolled_out(sts)
    assert not rolled_out({**sts, "status": {**sts["status"], "updateRevision": "b"}})
    ds = {"kind": "DaemonSet", "metadata": {"generation": 1},
          "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2,
                     "numberAvailable": 1}}
    assert not rolled_out(ds)
    assert rolled_out({**ds, "status": {**ds["status"], "numberAvailable": 2}})
