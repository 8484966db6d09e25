"""Redis under Sentinel with the files the redis role renders: three real
redis-server members and three Sentinels (Debian's redis-server binary in
Sentinel mode, the same 7.0 code as the redis-sentinel package) on the
loopback addresses 127.0.0.1-3, each started by member.sh as its pod's
containers start it. The primary is killed with its Sentinel (as a deleted
pod or a lost node), a replica must be promoted and a write through Sentinel
succeed, and the former primary must come back as a replica. The clients'
password is rotated on every member and Sentinel as secret_rotation does it
(module_utils/rotation.py RedisPassword), the frontend working throughout.

The figures (seconds to a new primary, to a write through Sentinel) are
printed; run with -s to see them.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import jinja2
import pytest
import redis
import yaml
from redis.sentinel import Sentinel

from ansible_collections.superkubernetex.platform.plugins.module_utils.rotation import (
    RedisPassword,
    RedisTarget,
    generate_password,
    run_steps,
)
from integration.modules.secret_dir import ClientLoop
from lib.servers import free_port
from skx_apps.frontend import Sessions

ROLE = Path(__file__).resolve().parents[3] / "roles" / "redis"
MEMBERS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
MASTER = "redis"
CLIENT_PASSWORD = "client-pw-test"
EXPORTER_PASSWORD = "exporter-pw-test"
HA_PASSWORDS = {"replication-password": "replication-pw-test", "sentinel-password": "sentinel-pw-test",
                "rotation-password": "rotation-pw-test"}
DEADLINE = 60.0

pytestmark = pytest.mark.skipif(not shutil.which("redis-server") or not shutil.which("redis-cli"),
                                reason="redis-server and redis-cli are needed (install.sh installs them)")


def role_vars():
    """The role's own values (ACLs, Sentinel timings), as the role renders them."""
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values.update({k: v for k, v in yaml.safe_load((ROLE / "vars" / "main.yml").read_text()).items()
                   if k.endswith("_acl")})
    return values


def port_free_on_every_member():
    for _ in range(20):
        port, sentinel_port = free_port(), free_port()
        try:
            for host in MEMBERS:
                for p in (port, sentinel_port):
                    with socket.socket() as s:
                        s.bind((host, p))
            return port, sentinel_port
        except OSError:
            continue
    raise RuntimeError("no port free on every loopback member address")


class Member:
    """One pod: its volumes as folders, its containers as processes."""

    def __init__(self, root, index, port, sentinel_port):
        self.index, self.host, self.port, self.sentinel_port = index, MEMBERS[index], port, sentinel_port
        base = Path(root) / f"redis-{index}"
        self.dirs = {name: base / name for name in ("config", "run", "sentinel-run", "data", "auth", "ha-auth")}
        for d in self.dirs.values():
            d.mkdir(parents=True)
        (self.dirs["auth"] / "password").write_text(CLIENT_PASSWORD)
        for key, value in HA_PASSWORDS.items():
            (self.dirs["ha-auth"] / key).write_text(value)
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE / "templates")),
                                 undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        values = dict(role_vars(),
                      platform_services={"redis": {"port": port}, "redis-sentinel": {"port": sentinel_port}},
                      platform_redis_sentinel_master=MASTER,
                      __redis_members=MEMBERS,
                      __redis_sentinel_quorum=len(MEMBERS) // 2 + 1,
                      __redis_config_dir=str(self.dirs["config"]),
                      __redis_run_dir=str(self.dirs["run"]),
                      __redis_sentinel_run_dir=str(self.dirs["sentinel-run"]),
                      __redis_secret_dir=str(self.dirs["auth"]),
                      __redis_ha_secret_dir=str(self.dirs["ha-auth"]))
        # Computed from the others in the role's vars: rendered as the role does.
        values["__redis_member_settle_seconds"] = env.from_string(
            yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__redis_member_settle_seconds"]).render(values)
        conf = env.get_template("redis.conf.j2").render(values)
        # The data volume's path is the one line that differs from a pod.
        assert "\ndir /data\n" in conf
        (self.dirs["config"] / "redis.conf").write_text(conf.replace("\ndir /data\n", f"\ndir {self.dirs['data']}\n"))
        (self.dirs["config"] / "member.sh").write_text(env.get_template("member.sh.j2").render(values))
        self.redis = self.sentinel = None
        self.logs = {}

    def password(self):
        """The clients' password as the pod's mounted Secret holds it now."""
        return (self.dirs["auth"] / "password").read_text()

    def init(self, sentinel=True):
        """The init container: what its inline command writes (the clients'
        password from its mounted Secret and the exporter's user), then, under
        Sentinel, member.sh auth."""
        auth = self.dirs["run"] / "auth.conf"
        auth.write_text(f'requirepass "{self.password()}"\n'
                        f"user exporter on >{EXPORTER_PASSWORD} {role_vars()['__redis_exporter_acl']}\n")
        auth.chmod(0o600)
        if sentinel:
            assert self._sh("auth").wait(timeout=10) == 0

    def _run(self, name, command, env=None):
        log = open(self.dirs["data"].parent / f"{name}.log", "ab")
        self.logs[name] = log.name
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _sh(self, mode):
        env = dict(os.environ, SKX_MEMBER=self.host, SKX_BIND=self.host)
        return self._run(mode, ["sh", str(self.dirs["config"] / "member.sh"), mode], env)

    def start_single_server(self):
        """The single server of earlier releases: redis-server on the
        ConfigMap's redis.conf (here on this member's address only)."""
        self.redis = self._run("single", ["redis-server", str(self.dirs["config"] / "redis.conf"), "--bind", self.host])
        wait_until(lambda: self.client().ping(), f"the single server on {self.host}", proc=self.redis)

    def start(self, timeout=DEADLINE):
        self.redis = self._sh("redis")
        wait_until(lambda: self.client().ping(), f"redis on {self.host}", timeout=timeout, proc=self.redis)
        self.sentinel = self._sh("sentinel")
        wait_until(lambda: self.sentinel_client().ping(), f"sentinel on {self.host}", proc=self.sentinel)

    def stop(self, sig=signal.SIGTERM):
        """SIGTERM, as the kubelet stops a container (Redis writes its AOF
        and exits); SIGKILL for a lost node."""
        for proc in (self.redis, self.sentinel):
            if proc and proc.poll() is None:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=30)

    def client(self, **kwargs):
        kwargs.setdefault("password", self.password())
        return redis.Redis(host=self.host, port=self.port, socket_timeout=2, socket_connect_timeout=2, **kwargs)

    def sentinel_client(self, **kwargs):
        kwargs.setdefault("password", self.password())
        return redis.Redis(host=self.host, port=self.sentinel_port, socket_timeout=2, socket_connect_timeout=2,
                           decode_responses=True, **kwargs)

    def role(self):
        return self.client().execute_command("ROLE")


def wait_until(check, what, timeout=DEADLINE, proc=None):
    """check() until it returns something true, for at most timeout seconds."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        try:
            result = check()
            if result:
                return result
        except (redis.RedisError, OSError) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s (last error: {last!r})")


@pytest.fixture
def members():
    """Three members, not started."""
    root = tempfile.mkdtemp(prefix="skx-sentinel-")
    port, sentinel_port = port_free_on_every_member()
    members = [Member(root, i, port, sentinel_port) for i in range(len(MEMBERS))]
    try:
        yield members
    finally:
        for m in members:
            m.stop(signal.SIGKILL)
        for m in members:
            for name in m.logs.values():
                print(f"--- {name}\n" + Path(name).read_text(errors="replace")[-3000:])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster(members):
    for m in members:
        m.init()
    for m in members:  # in ordinal order, as the StatefulSet starts them
        m.start()
    return members


def primary_named(member):
    return member.sentinel_client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)[0]


def settled(members, primary):
    """Every Sentinel names the primary and knows the two other Sentinels and
    the two replicas (a Sentinel learns a new replica from the primary's INFO,
    every 10 s: a failover before that leaves the replica it does not know on
    the former primary until failover-timeout has passed); the primary has
    every other member as an online replica."""
    others = sorted(m.host for m in members if m is not primary)
    for m in members:
        client = m.sentinel_client()
        if primary_named(m) != primary.host:
            return False
        if len(client.execute_command("SENTINEL", "SENTINELS", MASTER)) != len(members) - 1:
            return False
        replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER)
        if sorted(dict(zip(r[::2], r[1::2]))["ip"] for r in replicas) != others:
            return False
    info = primary.client(decode_responses=True).info("replication")
    return (info["role"] == "master" and info["connected_slaves"] == len(members) - 1
            and all(info[f"slave{i}"]["state"] == "online" for i in range(len(members) - 1)))


def sentinel_client(members):
    return Sentinel([(m.host, m.sentinel_port) for m in members],
                    sentinel_kwargs={"password": CLIENT_PASSWORD, "socket_timeout": 1, "socket_connect_timeout": 1},
                    password=CLIENT_PASSWORD, socket_timeout=1, socket_connect_timeout=1)


def frontend_sessions(cluster, monkeypatch, member):
    """The reference frontend's Sessions as the platform configures it under
    Sentinel (REDIS_SENTINEL, REDIS_SENTINEL_MASTER), with member's mounted
    password file."""
    monkeypatch.delenv("REDIS_HOST", raising=False)
    monkeypatch.setenv("REDIS_SENTINEL", ",".join(f"{m.host}:{m.sentinel_port}" for m in cluster))
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", MASTER)
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(member.dirs["auth"] / "password"))
    return Sessions()


def test_first_member_boots_primary_and_acls_are_least_privilege(cluster):
    first, second, _ = cluster
    wait_until(lambda: settled(cluster, first), "the first member primary, two replicas, three Sentinels")
    assert second.role()[0] == b"slave" and second.role()[1] == first.host.encode()
    # The replication user copies data, and reads no key.
    repl = first.client(username="replica", password=HA_PASSWORDS["replication-password"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        repl.get("skx:any")
    # Sentinel's user on Redis changes roles, and reads no key.
    sentinel_user = first.client(username="sentinel", password=HA_PASSWORDS["sentinel-password"])
    assert sentinel_user.execute_command("ROLE")[0] == b"master"
    with pytest.raises(redis.exceptions.NoPermissionError):
        sentinel_user.get("skx:any")
    # The clients' user on a Sentinel finds the primary, and changes nothing.
    client = first.sentinel_client()
    assert primary_named(first) == first.host
    for command in (("SENTINEL", "FAILOVER", MASTER), ("SENTINEL", "SET", MASTER, "quorum", "1"),
                    ("SENTINEL", "REMOVE", MASTER), ("SENTINEL", "CONFIG", "GET", "*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    with pytest.raises(redis.exceptions.AuthenticationError):
        first.sentinel_client(password="wrong").ping()
    # The Sentinels' own user votes and moves the primary by hand, and
    # changes no setting.
    peer = first.sentinel_client(username="sentinel", password=HA_PASSWORDS["sentinel-password"])
    assert peer.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)[0] == first.host
    for command in (("SENTINEL", "SET", MASTER, "quorum", "1"), ("SENTINEL", "REMOVE", MASTER),
                    ("SENTINEL", "CONFIG", "SET", "resolve-hostnames", "no"), ("SENTINEL", "MASTERS")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            peer.execute_command(*command)


def test_failover_when_the_primary_is_killed_and_its_return_as_replica(cluster, monkeypatch):
    old, *others = cluster
    wait_until(lambda: settled(cluster, old), "the first member primary, two replicas, three Sentinels")
    sessions = frontend_sessions(cluster, monkeypatch, old)
    sid = sessions.create({"email": "before@example.test"})
    sentinel = sentinel_client(cluster)
    master = sentinel.master_for(MASTER)
    master.set("skx:before", "1")
    # Acknowledged by both replicas before the kill (WAIT), so its loss would be a failure.
    assert master.execute_command("WAIT", 2, 5000) == 2

    killed = time.monotonic()
    old.stop(signal.SIGKILL)  # Redis and its Sentinel: a lost node

    def promoted():
        named = {primary_named(m) for m in others}
        return named.pop() if len(named) == 1 and old.host not in named else None
    new_host = wait_until(promoted, "a replica promoted by the Sentinels")
    promoted_after = time.monotonic() - killed

    def write():
        client = sentinel_client(cluster).master_for(MASTER)
        client.set("skx:after", "2")
        return True
    wait_until(write, "a write through Sentinel")
    write_after = time.monotonic() - killed

    def frontend():
        try:
            return sessions.get(sid) == {"email": "before@example.test"} and sessions.create({"email": "after"})
        except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
            return False  # a request fails while its connection was the former primary's
    wait_until(frontend, "the frontend's session, written before, read and a new one written")
    frontend_after = time.monotonic() - killed

    new = next(m for m in others if m.host == new_host)
    assert new.role()[0] == b"master"
    assert new.client().get("skx:before") == b"1"

    restarted = time.monotonic()
    old.start()  # the pod back: member.sh asks the other Sentinels first
    log = Path(old.logs["redis"]).read_text()
    assert f"member.sh: {old.host} starts as a replica of {new_host}" in log, log[-2000:]
    wait_until(lambda: old.role()[0] == b"slave" and old.role()[1] == new_host.encode()
               and old.client().get("skx:after") == b"2", "the former primary back as a replica, caught up")
    wait_until(lambda: settled(cluster, new), "three Sentinels and two replicas again")
    back_after = time.monotonic() - restarted

    print(f"\nRedis under Sentinel (down-after {role_vars()['redis_sentinel_down_after_ms']} ms): "
          f"primary {old.host} killed with its Sentinel; {new_host} promoted after {promoted_after:.1f} s; "
          f"a write through Sentinel succeeded after {write_after:.1f} s, the frontend's after {frontend_after:.1f} s; "
          f"the former primary back as a caught-up replica {back_after:.1f} s after its restart")
    assert promoted_after < DEADLINE


def test_a_primary_back_before_the_failover_waits_and_returns_as_replica(cluster):
    """A deleted pod is back within redis_sentinel_down_after_ms: the other
    Sentinels still name it primary, but they are about to promote a
    replica. It must not serve writes as a primary meanwhile (they would be
    lost when Sentinel makes it that replica's replica): member.sh waits,
    asks again, and starts as a replica of the promoted member."""
    old, *others = cluster
    wait_until(lambda: settled(cluster, old), "the first member primary, two replicas, three Sentinels")
    killed = time.monotonic()
    old.stop(signal.SIGKILL)
    old.redis = old._sh("redis")  # back at once, its Sentinel too
    old.sentinel = old._sh("sentinel")
    # Two seconds on (a Redis starts in a tenth of one), it serves nothing:
    # no write can reach it while the Sentinels decide.
    time.sleep(2)
    with pytest.raises(redis.ConnectionError):
        old.client().ping()
    settle = int(re.search(r"asking again in (\d+) s", Path(old.logs["redis"]).read_text()).group(1))
    new_host = wait_until(lambda: (lambda named: named.pop() if len(named) == 1 and old.host not in named else None)(
        {primary_named(m) for m in others}), "a replica promoted by the Sentinels")
    promoted_after = time.monotonic() - killed
    sentinel_client(cluster).master_for(MASTER).set("skx:promoted", "3")
    wait_until(lambda: old.role()[0] == b"slave" and old.role()[1] == new_host.encode()
               and old.client().get("skx:promoted") == b"3", "the former primary back as a replica, caught up",
               timeout=settle + 30)
    log = Path(old.logs["redis"]).read_text()
    assert f"member.sh: {old.host} starts as a replica of {new_host}" in log, log[-2000:]
    assert f"member.sh: {old.host} starts as the primary" not in log.split("asking again")[-1], log[-2000:]
    print(f"\nprimary killed and back at once: it waited {settle} s, {new_host} promoted after "
          f"{promoted_after:.1f} s, the former primary a caught-up replica {time.monotonic() - killed:.1f} s after")


def test_upgrade_from_the_single_server_keeps_its_data(members):
    first, *others = members
    first.init(sentinel=False)
    first.start_single_server()
    pipe = first.client().pipeline()
    for i in range(1000):
        pipe.set(f"skx:session:{i}", f"value-{i}")
    pipe.execute()
    first.stop()  # the pod restarts on the new template, alone (the first run)

    first.init()
    first.start()
    log = Path(first.logs["redis"]).read_text()
    assert f"member.sh: {first.host} starts as the primary" in log, log[-2000:]
    assert first.role()[0] == b"master"
    assert first.client().dbsize() == 1000

    for m in others:  # the second run adds the members
        m.init()
        m.start()
    wait_until(lambda: settled(members, first), "the former single server primary, two replicas, three Sentinels")
    for m in others:
        assert m.client().dbsize() == 1000
        assert m.client().get("skx:session:999") == b"value-999"


class PasswordFiles:
    """The rotation's store without Kubernetes: publish() writes the new
    password into each member's mounted password file (what the kubelet does
    once the Secret changes; the frontend and member.sh read that file), and
    first records which passwords every member and Sentinel accepts then, in
    the overlap."""

    def __init__(self, members, candidates, rollout_seconds=1.0):
        self.members, self.candidates, self.rollout_seconds = members, candidates, rollout_seconds
        self.accepted_at_publish = None

    def read(self):
        return {"password": self.members[0].password()}

    def publish(self, data):
        if self.accepted_at_publish is None:
            self.accepted_at_publish = accepted(self.members, self.candidates)
        for m in self.members:
            tmp = m.dirs["auth"] / ".password.tmp"
            tmp.write_text(data["password"])
            os.replace(tmp, m.dirs["auth"] / "password")
        time.sleep(self.rollout_seconds)  # the frontend's rollout


def logs_in(client):
    try:
        return client.ping()
    except redis.AuthenticationError:
        return False


def accepted(members, passwords):
    """{(member, "redis"|"sentinel"): [the passwords of `passwords` it accepts]}"""
    return {(m.host, where): [pw for pw in passwords if logs_in(connect(pw))]
            for m in members for where, connect in (("redis", lambda pw, m=m: m.client(password=pw)),
                                                    ("sentinel", lambda pw, m=m: m.sentinel_client(password=pw)))}


def rotation_targets(members):
    """What secret_rotation builds after its port-forwards: each member's
    Redis as its default user, then each Sentinel, changed as the user
    rotation."""
    rotation = HA_PASSWORDS["rotation-password"]
    return ([RedisTarget(lambda pw, m=m: m.client(password=pw), f"Redis {m.host}") for m in members]
            + [RedisTarget(lambda pw, m=m: m.sentinel_client(password=pw), f"the Sentinel of {m.host}",
                           lambda m=m: m.sentinel_client(username="rotation", password=rotation)) for m in members])


def session_written_and_read(sessions):
    """One request of the frontend: a session written, then read back."""
    def attempt(_secret):
        data = {"email": "loop@example.test"}
        assert sessions.get(sessions.create(data)) == data
        return "ok"
    return attempt


def test_password_rotation_on_every_member_and_sentinel(cluster, monkeypatch):
    """The clients' password is the default user's on every member and on
    every Sentinel: secret_rotation's RedisPassword changes it on all six,
    with both accepted while the clients move, the frontend working
    throughout, and a member restarted afterwards accepted again."""
    first, _, last = cluster
    wait_until(lambda: settled(cluster, first), "the first member primary, two replicas, three Sentinels")
    old, new = first.password(), generate_password()

    # The rotation user: only ACL SETUSER (and PING) on a Sentinel, nothing
    # on a member.
    rotation = first.sentinel_client(username="rotation", password=HA_PASSWORDS["rotation-password"])
    assert rotation.ping()
    for command in (("SENTINEL", "FAILOVER", MASTER), ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER),
                    ("SENTINEL", "SET", MASTER, "quorum", "1"), ("ACL", "LIST"), ("ACL", "GETUSER", "default"),
                    ("CONFIG", "GET", "*"), ("GET", "skx:any"), ("SET", "skx:any", "1")):
        with pytest.raises(redis.ResponseError):  # NOPERM, or no such command on a Sentinel
            rotation.execute_command(*command)
    with pytest.raises(redis.AuthenticationError):
        first.client(username="rotation", password=HA_PASSWORDS["rotation-password"]).ping()

    sessions = frontend_sessions(cluster, monkeypatch, first)
    sid = sessions.create({"email": "before@example.test"})

    store = PasswordFiles(cluster, [old, new])
    started = time.monotonic()
    with ClientLoop(store, session_written_and_read(sessions)) as loop:
        steps = run_steps(RedisPassword(targets=rotation_targets(cluster)).plan(store.read(), new, store))
        rotated = time.monotonic() - started
        # The sessions' connections dropped after the rotation (a Redis
        # restart, an idle timeout): the frontend reconnects with the old
        # password, is refused, reads its file again (a new client).
        client_before = sessions._client
        for m in cluster:
            m.client().client_kill_filter(_type="normal", skipme=True)
        time.sleep(1)
    assert sessions._client is not client_before, "the frontend did not reconnect with the new password"
    assert len(steps) == 3 * 6 + 1
    assert store.accepted_at_publish == {key: [old, new] for key in accepted(cluster, [])}, store.accepted_at_publish
    assert accepted(cluster, [old, new]) == {key: [new] for key in accepted(cluster, [])}
    assert loop.failures == 0, loop.errors[:3]
    assert sessions.get(sid) == {"email": "before@example.test"}

    # A replica restarted after the rotation: member.sh asks the other
    # Sentinels with the new password, its configs hold the new one.
    restarted = time.monotonic()
    last.stop()
    last.init()
    last.start()
    log = Path(last.logs["redis"]).read_text()
    assert f"member.sh: {last.host} starts as a replica of {first.host}" in log, log[-2000:]
    wait_until(lambda: settled(cluster, first), "the restarted member a replica again, three Sentinels")
    back = time.monotonic() - restarted
    assert accepted([last], [old, new]) == {(last.host, "redis"): [new], (last.host, "sentinel"): [new]}
    assert last.sentinel_client(username="rotation", password=HA_PASSWORDS["rotation-password"]).ping()
    assert sessions.get(sid) == {"email": "before@example.test"}
    print(f"\nRedis rotation under Sentinel: {len(steps)} steps on 3 members and 3 Sentinels in {rotated:.1f} s; "
          f"the frontend's sessions: {loop.attempts} written and read, {loop.failures} failed; "
          f"a replica restarted after it was a replica again, known to every Sentinel, {back:.1f} s later")
