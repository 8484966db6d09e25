"""RedisPassword over several targets (every Redis member and every Sentinel
under Sentinel), against fake servers that keep the default user's
passwords: the order of the steps, what a failure undoes, the Sentinels'
rotation user, and that no password reaches a step name or an error. The
same with real redis-server members and Sentinels:
tests/integration/redis/test_redis_sentinel.py."""
import pytest

from ansible_collections.superkubernetex.platform.plugins.module_utils.rotation import (
    RedisPassword,
    RedisTarget,
    RotationError,
    run_steps,
)

OLD, NEW, ADMIN = "old-password-0123456789", "new-password-0123456789", "rotation-password-0123"


class Refused(Exception):
    pass


class FakeServer:
    """The default user's passwords on one member or Sentinel. On a Sentinel
    the default user may not run ACL; its admin user (password ADMIN) may."""

    def __init__(self, name, log, sentinel=False):
        self.name, self.log, self.sentinel = name, log, sentinel
        self.passwords = {OLD}
        self.down = False
        self.admin_password = ADMIN

    def client(self, password, admin=False):
        if self.down:
            raise ConnectionError("%s: connection refused" % self.name)
        if (admin and password != self.admin_password) or (not admin and password not in self.passwords):
            raise Refused("%s: invalid username-password pair" % self.name)
        return FakeClient(self, admin)

    def target(self):
        return RedisTarget(lambda password: self.client(password), self.name,
                           (lambda: self.client(ADMIN, admin=True)) if self.sentinel else None)


class FakeClient:
    def __init__(self, server, admin):
        self.server, self.admin = server, admin

    def ping(self):
        self.server.log.append(("ping", self.server.name))
        return True

    def execute_command(self, *args):
        assert args[:4] == ("ACL", "SETUSER", "default", "on"), args
        if self.server.sentinel and not self.admin:
            raise Refused("NOPERM this user has no permissions to run the 'acl|setuser' command")
        rule = args[4]
        if rule[0] == ">":
            self.server.passwords.add(rule[1:])
        elif rule[1:] in self.server.passwords:
            self.server.passwords.discard(rule[1:])
        else:
            raise Refused("ERR Error in ACL SETUSER modifier '<...>': no such password")
        self.server.log.append((rule[0] + ("new" if rule[1:] == NEW else "old"), self.server.name))
        return b"OK"


class Store:
    def __init__(self, log, fail=False):
        self.log, self.fail = log, fail
        self.versions = [{"password": OLD}]

    def read(self):
        return dict(self.versions[-1])

    def publish(self, data):
        self.versions.append(dict(data))
        self.log.append(("publish", "new" if data["password"] == NEW else "old"))
        if self.fail and data["password"] == NEW:
            raise RuntimeError("Deployment skx-app/frontend did not roll out within 600s")


@pytest.fixture
def log():
    return []


@pytest.fixture
def servers(log):
    members = [FakeServer("Redis redis-%d" % i, log) for i in range(3)]
    sentinels = [FakeServer("the Sentinel of redis-%d" % i, log, sentinel=True) for i in range(3)]
    return members + sentinels


def changes(log):
    return [entry for entry in log if entry[0] != "ping"]


def test_every_target_accepts_both_before_the_publish_and_refuses_the_old_only_after(servers, log):
    store = Store(log)
    steps = RedisPassword(targets=[s.target() for s in servers]).plan(store.read(), NEW, store)
    names = run_steps(steps)
    order = changes(log)
    published = order.index(("publish", "new"))
    assert order[:published] == [(">new", s.name) for s in servers]
    assert order[published + 1:] == [("<old", s.name) for s in servers]
    # Each target is logged in to with the new password before the publish.
    # Checked first (the old password on each, the rotation user on each
    # Sentinel), then the new password logged in with on each before the publish.
    pings = [entry[1] for entry in log[:log.index(("publish", "new"))] if entry[0] == "ping"]
    assert pings == ([s.name for s in servers[:3]] + [s.name for s in servers[3:] for dummy in (0, 1)]
                     + [s.name for s in servers])
    assert all(s.passwords == {NEW} for s in servers)
    assert len(names) == 3 * len(servers) + 1
    assert names[0] == "make Redis redis-0 accept the new password next to the current one"
    assert names[-1] == "make the Sentinel of redis-2 refuse the previous password"
    assert store.read() == {"password": NEW}


def test_a_target_that_fails_midway_undoes_the_targets_done_in_reverse(servers, log):
    store = Store(log)
    steps = RedisPassword(targets=[s.target() for s in servers]).plan(store.read(), NEW, store)
    servers[4].down = True  # the Sentinel of redis-1, after the check
    with pytest.raises(RotationError) as failure:
        run_steps(steps)
    assert changes(log) == [(">new", s.name) for s in servers[:4]] + [("<new", s.name) for s in reversed(servers[:4])]
    assert failure.value.undone == ["make %s accept the new password next to the current one" % s.name
                                    for s in reversed(servers[:4])]
    assert failure.value.undo_errors == []
    assert all(s.passwords == {OLD} for s in servers) and store.versions == [{"password": OLD}]


def test_a_failed_rollout_leaves_the_old_password_alone_everywhere(servers, log):
    store = Store(log, fail=True)
    with pytest.raises(RotationError) as failure:
        run_steps(RedisPassword(targets=[s.target() for s in servers]).plan(store.read(), NEW, store))
    assert "did not roll out" in str(failure.value)
    assert all(s.passwords == {OLD} for s in servers)
    assert store.read() == {"password": OLD}
    assert [entry for entry in changes(log) if entry[0] == "<new"] == [("<new", s.name) for s in reversed(servers)]


def test_a_failure_while_removing_the_old_password_gives_it_back_everywhere(servers, log):
    store = Store(log)
    steps = RedisPassword(targets=[s.target() for s in servers]).plan(store.read(), NEW, store)
    original = servers[1].client

    def refuse_new(password, admin=False):  # redis-1 refuses the new password to remove the old one
        if password == NEW and servers[0].passwords == {NEW}:
            raise ConnectionError("redis-1: timeout")
        return original(password, admin)
    servers[1].client = refuse_new
    with pytest.raises(RotationError) as failure:
        run_steps(steps)
    assert failure.value.undone[0] == "make Redis redis-0 refuse the previous password"
    assert failure.value.undone[1].startswith("publish")
    assert failure.value.undo_errors == []
    assert store.read() == {"password": OLD}
    assert servers[0].passwords == {OLD}
    # redis-1 cannot be reached with the new password any more; the other targets are as before.
    assert all(s.passwords == {OLD} for s in servers[2:])


def test_a_sentinel_without_the_rotation_user_stops_the_rotation_before_any_change(servers, log):
    servers[5].admin_password = "not-the-one"  # a Sentinel started before the redis role added the user
    store = Store(log)
    with pytest.raises(RotationError) as failure:
        RedisPassword(targets=[s.target() for s in servers]).plan(store.read(), NEW, store)
    assert "the Sentinel of redis-2 refuses the user that changes its password" in str(failure.value)
    assert "run the redis role first" in str(failure.value)
    assert changes(log) == [] and all(s.passwords == {OLD} for s in servers)


def test_a_member_refusing_the_current_password_is_named(servers, log):
    servers[2].passwords = {"something-else"}
    with pytest.raises(RotationError) as failure:
        RedisPassword(targets=[s.target() for s in servers]).plan({"password": OLD}, NEW, Store(log))
    assert str(failure.value).startswith("Redis redis-2 refuses the current password of the Secret")


def test_no_password_in_step_names_or_errors(servers, log):
    store = Store(log, fail=True)
    steps = RedisPassword(targets=[s.target() for s in servers]).plan(store.read(), NEW, store)
    with pytest.raises(RotationError) as failure:
        run_steps(steps)
    text = " ".join([s.name for s in steps] + [str(failure.value)] + failure.value.done + failure.value.undone)
    for secret in (OLD, NEW, ADMIN):
        assert secret not in text


def test_one_server_keeps_its_steps(log):
    server = FakeServer("redis", log)
    store = Store(log)
    names = run_steps(RedisPassword(lambda password: server.client(password)).plan(store.read(), NEW, store))
    assert names == ["make Redis accept the new password next to the current one",
                     "log in to Redis with the new password",
                     "publish the new Redis password to the Secrets and roll their workloads",
                     "make Redis refuse the previous password"]
    assert server.passwords == {NEW}


def test_connect_or_targets():
    with pytest.raises(ValueError):
        RedisPassword()
    with pytest.raises(ValueError):
        RedisPassword(lambda password: None, targets=[])
    with pytest.raises(ValueError):
        RedisPassword(targets=[])
