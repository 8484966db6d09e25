"""The source-of-truth half of secret_rotation against a real PostgreSQL and a
real Redis: a client loop that reconnects with the mounted Secret's content
sees no failed connection across a rotation, and a failure injected midway
leaves the old credential working and the Secret as it was.

The Kubernetes half (Secret patch, rollout) is tested on the testbed
(tests/testbed/modules/test_modules_on_cluster.py)."""
import time

import psycopg
import pytest
import redis

from ansible_collections.superkubernetex.platform.plugins.module_utils.postgres import scram_verifier
from ansible_collections.superkubernetex.platform.plugins.module_utils.rotation import (
    PostgresPassword,
    RedisPassword,
    RotationError,
    generate_password,
    run_steps,
)
from lib.servers import RedisServer
from secret_dir import ClientLoop, SecretDir


def pg_connect(pg):
    def connect(user=None, password=None, dbname=None):
        return psycopg.connect(pg.dsn(dbname or "postgres", user, password), autocommit=True)
    return connect


def pg_attempt(pg):
    def attempt(secret):
        with psycopg.connect(pg.dsn(secret["database"], secret["username"], secret["password"])) as conn:
            conn.execute("SELECT 1")
        return secret["username"]
    return attempt


def can_login(pg, dbname, user, password):
    try:
        psycopg.connect(pg.dsn(dbname, user, password)).close()
        return True
    except psycopg.OperationalError:
        return False


def stored_password(pg, role):
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        return conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()[0]


@pytest.fixture
def tenant(postgres_server, run_module, unique, tmp_path):
    """A tenant made by tenant_database and its mounted db-credentials Secret."""
    pg, name = postgres_server, "r" + unique
    password = generate_password()
    created = run_module("tenant_database", dict(
        login_host=pg.host, login_port=pg.port, login_password=pg.password,
        name=name + "_db", owner=name, password=password))
    assert created["changed"], created.stdout
    secret = SecretDir(tmp_path / "db-credentials", dict(
        username=name + "_a", password=password, database=name + "_db", host=pg.host, port=str(pg.port)))
    return name, secret


def test_postgres_rotation_has_no_failed_connection(postgres_server, run_module, tenant, capsys):
    pg, (name, secret) = postgres_server, tenant
    rotation = PostgresPassword(pg_connect(pg), [name + "_a", name + "_b"], scram_verifier)
    before = secret.read()

    with ClientLoop(secret, pg_attempt(pg)) as loop:
        first = generate_password()
        done = run_steps(rotation.plan(secret.read(), first, secret))
        second = generate_password()
        run_steps(rotation.plan(secret.read(), second, secret))
    with capsys.disabled():
        print("\npostgres rotation x2: %d connection attempts, %d failed" % (loop.attempts, loop.failures))
    assert loop.failures == 0, loop.errors[:3]
    assert loop.seen == {name + "_a", name + "_b"}  # the loop ran across both switches
    assert len(done) == 5

    # Two rotations alternate: b took over, then a again with a new password.
    after = secret.read()
    assert after["username"] == name + "_a" and after["password"] == second
    assert {k: v for k, v in after.items() if k != "password"} == {k: v for k, v in before.items() if k != "password"}
    assert can_login(pg, name + "_db", name + "_a", second)
    assert not can_login(pg, name + "_db", name + "_a", before["password"])
    assert not can_login(pg, name + "_db", name + "_b", first)
    assert stored_password(pg, name + "_b") is None

    # tenant_database re-run with the Secret's content changes nothing.
    again = run_module("tenant_database", dict(
        login_host=pg.host, login_port=pg.port, login_password=pg.password, name=name + "_db", owner=name,
        password_role=after["username"], password=after["password"]))
    assert again["changed"] is False, again["executed_queries"]


def test_the_client_loop_sees_an_in_place_password_change(postgres_server, tenant):
    """Control: changing the password of the active role breaks the clients
    until they read the new Secret, and the loop counts it."""
    pg, (name, secret) = postgres_server, tenant
    new = generate_password()
    with ClientLoop(secret, pg_attempt(pg)) as loop:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("ALTER ROLE \"%s_a\" PASSWORD '%s'" % (name, new))
        time.sleep(0.5)  # the new Secret takes time to reach the pods
        secret.publish(dict(secret.read(), password=new))
    assert loop.failures > 0


def test_postgres_failure_midway_keeps_the_old_credential(postgres_server, tenant):
    pg, (name, secret) = postgres_server, tenant
    rotation = PostgresPassword(pg_connect(pg), [name + "_a", name + "_b"], scram_verifier)
    before = secret.read()
    secret.fail_on_publish = 1
    new = generate_password()

    with ClientLoop(secret, pg_attempt(pg)) as loop:
        with pytest.raises(RotationError) as failure:
            run_steps(rotation.plan(before, new, secret))
    assert loop.failures == 0, loop.errors[:3]
    assert "roll" in str(failure.value)
    assert failure.value.undone[0].startswith("publish")
    assert failure.value.undone[-1].startswith("set a new password on the standby")
    assert failure.value.undo_errors == []

    assert secret.read() == before
    assert can_login(pg, name + "_db", name + "_a", before["password"])
    assert not can_login(pg, name + "_db", name + "_b", new)
    assert stored_password(pg, name + "_b") is None


@pytest.fixture
def redis_own(tmp_path):
    """Redis of our own: the rotation changes its password."""
    server = RedisServer(password=generate_password()).start()
    yield server
    server.stop()


def redis_attempt(server):
    def attempt(secret):
        client = redis.Redis(host=server.host, port=server.port, password=secret["password"],
                             single_connection_client=True, socket_timeout=5)
        try:
            client.ping()
        finally:
            client.close()
        return secret["password"]
    return attempt


def redis_login(server, password):
    try:
        redis.Redis(host=server.host, port=server.port, password=password, single_connection_client=True).ping()
        return True
    except redis.AuthenticationError:
        return False


def redis_rotation(server):
    return RedisPassword(lambda password: redis.Redis(host=server.host, port=server.port, password=password))


def test_redis_rotation_has_no_failed_connection(redis_own, tmp_path, capsys):
    secret = SecretDir(tmp_path / "redis-auth", dict(password=redis_own.password))
    new = generate_password()
    with ClientLoop(secret, redis_attempt(redis_own)) as loop:
        done = run_steps(redis_rotation(redis_own).plan(secret.read(), new, secret))
    with capsys.disabled():
        print("\nredis rotation: %d connection attempts, %d failed" % (loop.attempts, loop.failures))
    assert loop.failures == 0, loop.errors[:3]
    assert loop.seen == {redis_own.password, new} and len(done) == 4
    assert secret.read() == {"password": new}
    assert redis_login(redis_own, new)
    assert not redis_login(redis_own, redis_own.password)


def test_redis_failure_midway_keeps_the_old_password(redis_own, tmp_path):
    secret = SecretDir(tmp_path / "redis-auth", dict(password=redis_own.password))
    secret.fail_on_publish = 1
    new = generate_password()
    with ClientLoop(secret, redis_attempt(redis_own)) as loop:
        with pytest.raises(RotationError) as failure:
            run_steps(redis_rotation(redis_own).plan(secret.read(), new, secret))
    assert loop.failures == 0, loop.errors[:3]
    assert failure.value.undo_errors == []
    assert secret.read() == {"password": redis_own.password}
    assert redis_login(redis_own, redis_own.password)
    assert not redis_login(redis_own, new)
