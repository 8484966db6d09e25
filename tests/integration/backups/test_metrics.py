"""Outcome metrics in a real Pushgateway: the names and labels the alerts
use; a failure keeps the last success time and size."""
import os
import time

from backup_helpers import pushed_metrics, sql


def test_pg_dump_success_then_failure(run_backup, tenant_db, postgres_server, pushgateway, backup_dir):
    db = tenant_db["name"]
    env = {"SKX_PUSHGATEWAY_URL": pushgateway}
    labels = frozenset({"job": "skx-backup", "database": db, "kind": "pg_dump"}.items())

    run = run_backup("pg-dump", "--database", db, env=env)
    assert run.returncode == 0, run
    ok = pushed_metrics(pushgateway)
    size = os.path.getsize(os.path.join(backup_dir, "postgres", db, run.result["backup"]))
    assert ok[("skx_backup_last_status", labels)] == 1
    assert ok[("skx_backup_last_size_bytes", labels)] == size
    assert 0 < ok[("skx_backup_last_duration_seconds", labels)] < 60
    success_time = ok[("skx_backup_last_success_timestamp_seconds", labels)]
    assert abs(success_time - time.time()) < 60

    # The database disappears: the next dump fails and says so.
    sql(postgres_server, "postgres", f"DROP DATABASE {db} WITH (FORCE)")
    run = run_backup("pg-dump", "--database", db, env=env)
    assert run.returncode == 1, run
    assert f'database "{db}" does not exist' in run.result["msg"]
    failed = pushed_metrics(pushgateway)
    assert failed[("skx_backup_last_status", labels)] == 0
    assert failed[("skx_backup_last_success_timestamp_seconds", labels)] == success_time
    assert failed[("skx_backup_last_size_bytes", labels)] == size
    # No half-written dump is left behind.
    assert sorted(os.listdir(os.path.join(backup_dir, "postgres", db))) == sorted(
        run_name + suffix for run_name in [f for f in os.listdir(os.path.join(backup_dir, "postgres", db))
                                           if f.endswith(".dump")] for suffix in ("", ".sha256", ".json"))


def test_unreachable_pushgateway_does_not_fail_the_backup(run_backup, tenant_db):
    from lib.servers import free_port

    run = run_backup("pg-dump", "--database", tenant_db["name"],
                     env={"SKX_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}"})
    assert run.returncode == 0, run
    assert "metrics: push to" in run.output and "failed" in run.output
