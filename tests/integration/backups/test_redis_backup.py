"""Redis backup against a real server: the copied RDB loads into a fresh
Redis with the same keys."""
import os
import shutil
import subprocess

import redis

from backup_helpers import pushed_metrics
from lib.servers import _wait_port, free_port


def test_redis_backup_produces_a_loadable_rdb(run_backup, redis_server, backup_dir, tmp_path,
                                              pushgateway):
    client = redis.Redis.from_url(redis_server.url(3))
    client.flushdb()
    client.set("session:abc", "user-42")
    client.hset("cart:42", mapping={"plan": "pro", "qty": "2"})
    client.rpush("queue", *[f"job{i}" for i in range(50)])
    lastsave_before = client.lastsave()

    run = run_backup("redis-rdb", env={"SKX_PUSHGATEWAY_URL": pushgateway})
    assert run.returncode == 0, run
    # BGSAVE ran on the server and LASTSAVE moved.
    assert client.lastsave() > lastsave_before
    assert "redis: BGSAVE: Background saving started" in run.output
    [name] = [n for n in os.listdir(os.path.join(backup_dir, "redis")) if n.endswith(".rdb")]
    rdb = os.path.join(backup_dir, "redis", name)
    digest, recorded = open(rdb + ".sha256").read().split()
    assert recorded == name
    assert redis_server.password not in run.output

    # Load the copy into a new server and read the keys back.
    data = tmp_path / "restore"
    data.mkdir()
    shutil.copy(rdb, data / "dump.rdb")
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(data), "--dbfilename", "dump.rdb", "--appendonly", "no",
                             "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        restored = redis.Redis(host="127.0.0.1", port=port, db=3)
        assert restored.get("session:abc") == b"user-42"
        assert restored.hgetall("cart:42") == {b"plan": b"pro", b"qty": b"2"}
        assert restored.lrange("queue", 0, -1) == [f"job{i}".encode() for i in range(50)]
    finally:
        proc.terminate()
        proc.wait(30)

    labels = frozenset({"job": "skx-backup", "database": "redis", "kind": "redis_rdb"}.items())
    metrics = pushed_metrics(pushgateway)
    assert metrics[("skx_backup_last_status", labels)] == 1
    assert metrics[("skx_backup_last_size_bytes", labels)] == os.path.getsize(rdb)


def test_redis_backup_with_a_wrong_password_fails_and_reports_it(run_backup, tmp_path, pushgateway,
                                                                 backup_dir):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    run = run_backup("redis-rdb", env={"REDIS_PASSWORD_FILE": str(wrong),
                                       "SKX_PUSHGATEWAY_URL": pushgateway})
    assert run.returncode == 1, run
    assert "redis-cli LASTSAVE failed" in run.result["msg"]
    labels = frozenset({"job": "skx-backup", "database": "redis", "kind": "redis_rdb"}.items())
    assert pushed_metrics(pushgateway)[("skx_backup_last_status", labels)] == 0
    assert not [n for n in os.listdir(os.path.join(backup_dir, "redis")) if n.endswith(".rdb")]
