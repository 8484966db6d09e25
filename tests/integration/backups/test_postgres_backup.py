"""PostgreSQL backups against a real server: dump, retention, refusal of a
corrupted dump, restore (plain and swapped in), restore verification."""
import datetime
import hashlib
import json
import os
import time

import psycopg
import pytest

from backup_helpers import pushed_metrics, sql, table_checksums

# Newest pages.updated_at of the tenant fixture: 2026-11-01 + 120 h.
NEWEST = datetime.datetime(2026, 11, 6, tzinfo=datetime.timezone.utc).timestamp()


def dumps_of(backup_dir, db):
    return sorted(n for n in os.listdir(os.path.join(backup_dir, "postgres", db)) if n.endswith(".dump"))


def test_dump_writes_checksum_and_manifest(run_backup, tenant_db, backup_dir):
    run = run_backup("pg-dump", "--database", tenant_db["name"])
    assert run.returncode == 0, run
    [name] = dumps_of(backup_dir, tenant_db["name"])
    path = os.path.join(backup_dir, "postgres", tenant_db["name"], name)
    with open(path, "rb") as f:
        assert f.read(5) == b"PGDMP"  # custom format
    digest, recorded_name = open(path + ".sha256").read().split()
    assert recorded_name == name
    assert digest == hashlib.sha256(open(path, "rb").read()).hexdigest()
    manifest = json.load(open(path + ".json"))
    assert manifest["tables"] == {"public.pages": 120, "public.assets": 300, "public.empty_log": 0}
    assert manifest["newest_timestamp"] == NEWEST
    assert run.result == {"ok": True, "size": os.path.getsize(path), "backup": name}
    # No password in what the job prints.
    assert "test-superuser-pw" not in run.output

    plan = run_backup("plan-restore", "--database", tenant_db["name"])
    assert plan.returncode == 0, plan
    assert plan.result == {"ok": True, "database": tenant_db["name"], "backup": name,
                           "sha256": digest, "size_bytes": os.path.getsize(path),
                           "created": name.split("-")[1][:-len(".dump")], "rows": 420,
                           "available": [name]}


def test_restore_after_drop_gives_identical_contents(run_backup, tenant_db, postgres_server):
    db = tenant_db["name"]
    before = table_checksums(postgres_server, db)
    assert run_backup("pg-dump", "--database", db).returncode == 0
    # Disaster: rows deleted, a table dropped, a row altered.
    sql(postgres_server, db, "DELETE FROM assets WHERE id % 3 = 0")
    sql(postgres_server, db, "UPDATE pages SET body = 'defaced' WHERE id = 7")
    sql(postgres_server, db, "DROP TABLE empty_log")
    assert table_checksums(postgres_server, db) != before

    run = run_backup("restore", "--database", db, "--backup", "latest", "--swap")
    assert run.returncode == 0, run
    assert table_checksums(postgres_server, db) == before
    # The damaged database is kept, renamed, for inspection or rollback.
    previous = run.result["previous_database"]
    assert previous.startswith(f"{db}_pre_")
    assert sql(postgres_server, previous, "SELECT count(*) FROM assets")[0][0] == 200
    # Ownership, database privileges, limits and settings follow the swap:
    # the tenant's role still owns its tables and connects, PUBLIC does not.
    row = sql(postgres_server, "postgres",
              "SELECT pg_get_userbyid(datdba), datconnlimit, datallowconn, "
              "has_database_privilege('public', datname, 'CONNECT'), datcollate, datctype FROM pg_database "
              "WHERE datname = %s", (db,))[0]
    assert row == (tenant_db["owner"], 20, True, False, "C", "C")
    with psycopg.connect(postgres_server.dsn(db, tenant_db["owner"], tenant_db["password"])) as conn:
        assert conn.execute("SELECT count(*) FROM pages").fetchone()[0] == 120
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30s"
        conn.execute("INSERT INTO pages (slug) VALUES ('after-restore')")  # sequence restored
        assert conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'assets'"
                            ).fetchone()[0] == tenant_db["owner"]


def test_restore_without_swap_leaves_the_database_alone(run_backup, tenant_db, postgres_server):
    db = tenant_db["name"]
    assert run_backup("pg-dump", "--database", db).returncode == 0
    sql(postgres_server, db, "DELETE FROM assets WHERE id > 100")
    run = run_backup("restore", "--database", db)
    assert run.returncode == 0, run
    fresh = run.result["restored_into"]
    assert fresh != db
    assert sql(postgres_server, fresh, "SELECT count(*) FROM assets")[0][0] == 300
    assert sql(postgres_server, db, "SELECT count(*) FROM assets")[0][0] == 100


def test_corrupted_dump_is_refused_and_nothing_changes(run_backup, tenant_db, postgres_server,
                                                       backup_dir):
    db = tenant_db["name"]
    assert run_backup("pg-dump", "--database", db).returncode == 0
    [name] = dumps_of(backup_dir, db)
    path = os.path.join(backup_dir, "postgres", db, name)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    sql(postgres_server, db, "DELETE FROM assets WHERE id > 100")
    databases_before = sql(postgres_server, "postgres", "SELECT datname FROM pg_database ORDER BY 1")

    for command in ("plan-restore", "restore"):
        run = run_backup(command, "--database", db, "--backup", name, "--swap"
                         ) if command == "restore" else run_backup(command, "--database", db)
        assert run.returncode == 2, run
        assert f"backup {name} is corrupted" in run.result["msg"]
    assert sql(postgres_server, "postgres", "SELECT datname FROM pg_database ORDER BY 1") == databases_before
    assert sql(postgres_server, db, "SELECT count(*) FROM assets")[0][0] == 100

    # Also refused: a dump without its checksum file, a missing backup, a
    # name of another database, a name that is not a backup.
    os.unlink(path + ".sha256")
    run = run_backup("plan-restore", "--database", db, "--backup", name)
    assert run.returncode == 2 and "no readable checksum file" in run.result["msg"]
    run = run_backup("plan-restore", "--database", db, "--backup", f"{db}-20200101T000000Z.dump")
    assert run.returncode == 2 and "does not exist" in run.result["msg"]
    run = run_backup("plan-restore", "--database", db, "--backup", "other_db-20200101T000000Z.dump")
    assert run.returncode == 2 and "is a backup of other_db" in run.result["msg"]
    run = run_backup("plan-restore", "--database", db, "--backup", "../../etc/passwd")
    assert run.returncode == 2 and "neither 'latest' nor a backup name" in run.result["msg"]
    run = run_backup("plan-restore", "--database", "Robert'; DROP", "--backup", "latest")
    assert run.returncode == 2 and "--database" in run.result["msg"]


def test_dump_that_pg_restore_cannot_read_fails_the_restore(run_backup, tenant_db, postgres_server,
                                                            backup_dir):
    """A dump whose checksum matches (written so) but whose content is broken:
    pg_restore fails, the fresh database is dropped, the tenant's is intact."""
    db = tenant_db["name"]
    assert run_backup("pg-dump", "--database", db).returncode == 0
    [name] = dumps_of(backup_dir, db)
    path = os.path.join(backup_dir, "postgres", db, name)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with open(path + ".sha256", "w") as f:
        f.write(f"{hashlib.sha256(open(path, 'rb').read()).hexdigest()}  {name}\n")
    run = run_backup("restore", "--database", db, "--swap")
    assert run.returncode == 1, run
    assert "pg_restore failed" in run.result["msg"]
    leftovers = sql(postgres_server, "postgres", "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    (f"{db}_%",))
    assert leftovers == []
    assert sql(postgres_server, db, "SELECT count(*) FROM pages")[0][0] == 120


def test_retention_removes_exactly_the_dumps_older_than_the_window(run_backup, tenant_db, backup_dir):
    # Ages are counted from this test's start, not the session's: the
    # 6.99-day dump is 14 minutes inside the window.
    NOW = time.time()
    db = tenant_db["name"]
    directory = os.path.join(backup_dir, "postgres", db)
    os.makedirs(directory)
    ages = {"20261110T023000Z": 9.0, "20261112T023000Z": 7.01, "20261113T023000Z": 6.99,
            "20261116T023000Z": 3, "20261119T023000Z": 0.5}
    for stamp, days in ages.items():
        for suffix in ("", ".sha256", ".json"):
            path = os.path.join(directory, f"{db}-{stamp}.dump{suffix}")
            open(path, "w").write("x")
            os.utime(path, (NOW - days * 86400, NOW - days * 86400))
    stale_partial = os.path.join(directory, f"{db}-20261101T000000Z.dump.partial")
    open(stale_partial, "w").write("x")
    os.utime(stale_partial, (NOW - 2 * 86400,) * 2)
    unrelated = os.path.join(directory, "notes.txt")
    open(unrelated, "w").write("kept")
    os.utime(unrelated, (NOW - 30 * 86400,) * 2)

    run = run_backup("prune", "--database", db)
    assert run.returncode == 0, run
    assert sorted(run.result["removed"]) == [f"{db}-20261110T023000Z.dump", f"{db}-20261112T023000Z.dump"]
    assert sorted(os.listdir(directory)) == sorted(
        [f"{db}-{s}.dump{x}" for s in ("20261113T023000Z", "20261116T023000Z", "20261119T023000Z")
         for x in ("", ".sha256", ".json")] + ["notes.txt"])

    # The window is a setting; and the newest dump survives any window.
    run = run_backup("prune", "--database", db, env={"SKX_BACKUP_RETENTION_DAYS": "1"})
    assert sorted(run.result["removed"]) == [f"{db}-20261113T023000Z.dump", f"{db}-20261116T023000Z.dump"]
    for path in os.listdir(directory):
        os.utime(os.path.join(directory, path), (NOW - 40 * 86400,) * 2)
    run = run_backup("prune", "--database", db)
    assert run.result["removed"] == []
    assert f"{db}-20261119T023000Z.dump" in os.listdir(directory)


def test_dump_job_applies_retention(run_backup, tenant_db, backup_dir):
    db = tenant_db["name"]
    directory = os.path.join(backup_dir, "postgres", db)
    os.makedirs(directory)
    NOW = time.time()
    old = os.path.join(directory, f"{db}-20200101T000000Z.dump")
    open(old, "w").write("x")
    os.utime(old, (NOW - 8 * 86400,) * 2)
    run = run_backup("pg-dump", "--database", db)
    assert run.returncode == 0, run
    assert not os.path.exists(old)
    assert len(dumps_of(backup_dir, db)) == 1


def test_verify_restore_reports_counts_and_drops_the_scratch_database(run_backup, tenant_db,
                                                                      postgres_server, pushgateway):
    db = tenant_db["name"]
    assert run_backup("pg-dump", "--database", db).returncode == 0
    run = run_backup("verify-restore", "--database", db, env={"SKX_PUSHGATEWAY_URL": pushgateway})
    assert run.returncode == 0, run
    assert f"verify: {db} OK: 3 tables, 420 rows, newest timestamp 2026-11-06T00:00:00Z" in run.output
    assert sql(postgres_server, "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'skx_verify_%'"
               )[0][0] == 0
    labels = frozenset({"job": "skx-backup", "database": db, "kind": "restore_verify"}.items())
    metrics = pushed_metrics(pushgateway)
    assert metrics[("skx_backup_last_status", labels)] == 1
    assert metrics[("skx_backup_restore_verify_rows", labels)] == 420
    assert metrics[("skx_backup_restore_verify_tables", labels)] == 3
    assert metrics[("skx_backup_data_newest_timestamp_seconds", labels)] == NEWEST
    assert abs(metrics[("skx_backup_last_success_timestamp_seconds", labels)] - time.time()) < 60


def test_verify_restore_fails_when_the_dump_disagrees_with_its_manifest(run_backup, tenant_db,
                                                                        backup_dir, pushgateway):
    db = tenant_db["name"]
    assert run_backup("pg-dump", "--database", db).returncode == 0
    [name] = dumps_of(backup_dir, db)
    manifest_path = os.path.join(backup_dir, "postgres", db, name + ".json")
    manifest = json.load(open(manifest_path))
    manifest["tables"]["public.pages"] = 121
    json.dump(manifest, open(manifest_path, "w"))
    run = run_backup("verify-restore", "--database", db, env={"SKX_PUSHGATEWAY_URL": pushgateway})
    assert run.returncode == 1, run
    assert "public.pages: 120 rows, backup recorded 121" in run.output
    labels = frozenset({"job": "skx-backup", "database": db, "kind": "restore_verify"}.items())
    assert pushed_metrics(pushgateway)[("skx_backup_last_status", labels)] == 0


def test_verify_restore_without_any_backup_fails_clearly(run_backup, tenant_db):
    run = run_backup("verify-restore", "--database", tenant_db["name"])
    assert run.returncode == 1
    assert f"no backup of database {tenant_db['name']}" in run.output


@pytest.mark.parametrize("args", [["pg-dump", "--database", "Bad-Name"],
                                  ["verify-restore", "--database", "x" * 39]])
def test_bad_database_name_is_refused(run_backup, args):
    run = run_backup(*args)
    assert run.returncode == 2
    assert "--database" in run.result["msg"]


def test_swap_closes_the_connections_left_on_the_database(run_backup, tenant_db, postgres_server):
    """A client still connected when the swap comes (a pod slow to stop) is
    disconnected; its next connection lands on the restored database."""
    db = tenant_db["name"]
    assert run_backup("pg-dump", "--database", db).returncode == 0
    sql(postgres_server, db, "DELETE FROM assets")
    dsn = postgres_server.dsn(db, tenant_db["owner"], tenant_db["password"])
    lingering = psycopg.connect(dsn, autocommit=True)
    assert lingering.execute("SELECT count(*) FROM assets").fetchone()[0] == 0
    run = run_backup("restore", "--database", db, "--swap")
    assert run.returncode == 0, run
    with pytest.raises(psycopg.OperationalError):
        lingering.execute("SELECT 1")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM assets").fetchone()[0] == 300
