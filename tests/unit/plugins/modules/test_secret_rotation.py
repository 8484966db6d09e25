"""secret_rotation's Redis targets under Sentinel: one port-forward per pod
and port, the members first, then their Sentinels, each Sentinel changed as
the rotation user. No connection is made (redis clients connect lazily)."""
import contextlib

import pytest

from ansible_collections.superkubernetex.platform.plugins.modules import secret_rotation

pytest.importorskip("redis")  # the clients it builds (ansible-test units has no redis-py)


class FakePortForward:
    opened = []

    def __init__(self, api, namespace, pod, port):
        self.key = (namespace, pod, port)

    def __enter__(self):
        FakePortForward.opened.append(self.key)
        self.path = "/tmp/pf-%s-%s-%d.sock" % self.key
        return self

    def __exit__(self, *exc):
        return False


def test_one_port_forward_per_pod_and_port(monkeypatch):
    monkeypatch.setattr(secret_rotation, "PortForward", FakePortForward)
    FakePortForward.opened = []
    target = dict(namespace="skx-data", pod=None, pods=["redis-0", "redis-1", "redis-2"], port=6379,
                  sentinel_port=26379, sentinel_user="rotation", sentinel_password="pw-rotation-123456")
    with contextlib.ExitStack() as stack:
        targets = secret_rotation.redis_targets(None, stack, target)
    assert FakePortForward.opened == [("skx-data", "redis-%d" % i, 6379) for i in range(3)] + [
        ("skx-data", "redis-%d" % i, 26379) for i in range(3)]
    assert [t.label for t in targets] == ["Redis redis-0", "Redis redis-1", "Redis redis-2", "the Sentinel of redis-0",
                                          "the Sentinel of redis-1", "the Sentinel of redis-2"]
    assert [t.admin is None for t in targets] == [True] * 3 + [False] * 3
    admin = targets[4].admin().connection_pool.connection_kwargs
    assert admin["path"] == "/tmp/pf-skx-data-redis-1-26379.sock"
    assert (admin["username"], admin["password"]) == ("rotation", "pw-rotation-123456")
    client = targets[1].connect("clients-pw").connection_pool.connection_kwargs
    assert client["path"] == "/tmp/pf-skx-data-redis-1-6379.sock" and client.get("username") is None


def test_without_sentinel_port_only_the_members(monkeypatch):
    monkeypatch.setattr(secret_rotation, "PortForward", FakePortForward)
    FakePortForward.opened = []
    target = dict(namespace="skx-data", pod="redis-0", pods=None, port=6379, sentinel_port=None,
                  sentinel_user="rotation", sentinel_password=None)
    with contextlib.ExitStack() as stack:
        targets = secret_rotation.redis_targets(None, stack, target)
    assert FakePortForward.opened == [("skx-data", "redis-0", 6379)]
    assert [t.label for t in targets] == ["Redis redis-0"]
