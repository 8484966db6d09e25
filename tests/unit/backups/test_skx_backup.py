"""The backup package without servers: database names, the resolution of the
backup to restore, the retention on the volume, the result file main()
writes, the VolumeSnapshot helpers and the S3 request signing.

skx_backup is importable through pytest.ini (pythonpath roles/backups/files);
the runs against real PostgreSQL, Redis, S3 and Pushgateway servers are in
tests/integration/backups/.
"""
import datetime
import hashlib
import json
import os
import subprocess
import sys

import pytest

from skx_backup import cli, files, s3, snapshots
from skx_backup.common import DUMP_RE, EXIT_OK, EXIT_REFUSED, RDB_RE, Refused, check_db_name

FILES = os.path.dirname(os.path.dirname(os.path.abspath(files.__file__)))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
NOW = datetime.datetime(2026, 11, 27, 3, 0, tzinfo=datetime.timezone.utc).timestamp()
DAY = 86400


def make_backup(directory, name, age_days=0, checksum=True, content=None):
    """A backup file (with its checksum, unless not asked for, and its
    manifest), modified age_days ago."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(content if content is not None else f"dump {name}".encode())
    if checksum:
        files.write_checksum(path)
    if checksum:
        with open(path + ".json", "w", encoding="utf-8") as f:
            json.dump({"tables": {}}, f)
    for suffix in ("", ".sha256", ".json"):
        if os.path.exists(path + suffix):
            os.utime(path + suffix, (NOW - age_days * DAY, NOW - age_days * DAY))
    return path


# ------------------------------------------------------------ database names

@pytest.mark.parametrize("name", ["app_db", "superkube", "_x", "instance2_db", "a" * 38])
def test_database_names_the_tool_manages(name):
    assert check_db_name(name) == name


@pytest.mark.parametrize("name", ["", None, "App_db", "app-db", "1app", "a" * 39, "app;drop", "app db",
                                  "../app", 'app"db'])
def test_other_database_names_are_refused(name):
    with pytest.raises(Refused, match=r"--database: .* is not a database name this tool manages"):
        check_db_name(name)


def test_the_refusal_names_the_option():
    with pytest.raises(Refused, match=r"^--backup-of: 'X'"):
        check_db_name("X", option="--backup-of")


# ------------------------------------------------------------- resolve_dump

@pytest.fixture
def volume(tmp_path):
    root = str(tmp_path / "backups")
    directory = files.pg_dir(root, "app_db")
    for stamp in ("20261125T023000Z", "20261127T023000Z", "20261126T023000Z"):
        make_backup(directory, f"app_db-{stamp}.dump")
    # Not backups of app_db: never chosen.
    make_backup(directory, "other_db-20261128T023000Z.dump")
    make_backup(directory, "app_db-20261129T023000Z.dump.partial", checksum=False)
    return root


def test_latest_is_the_newest_dump_by_its_name(volume):
    path, digest = files.resolve_dump(volume, "app_db", "latest")
    assert path == os.path.join(volume, "postgres", "app_db", "app_db-20261127T023000Z.dump")
    assert digest == hashlib.sha256(b"dump app_db-20261127T023000Z.dump").hexdigest()
    assert files.resolve_dump(volume, "app_db", None)[0] == path
    assert files.resolve_dump(volume, "app_db", "")[0] == path


def test_a_dump_is_resolved_by_its_name(volume):
    path, _ = files.resolve_dump(volume, "app_db", "app_db-20261125T023000Z.dump")
    assert os.path.basename(path) == "app_db-20261125T023000Z.dump"
    assert files.list_dumps(volume, "app_db") == [
        "app_db-20261125T023000Z.dump", "app_db-20261126T023000Z.dump", "app_db-20261127T023000Z.dump"]


@pytest.mark.parametrize("backup, message", [
    ("../../etc/passwd", "is neither 'latest' nor a backup name"),
    ("../other_db/other_db-20261128T023000Z.dump", "is neither 'latest' nor a backup name"),
    ("/backups/postgres/app_db/app_db-20261127T023000Z.dump", "is neither 'latest' nor a backup name"),
    ("app_db-20261127T023000Z.dump.partial", "is neither 'latest' nor a backup name"),
    ("other_db-20261128T023000Z.dump", "is a backup of other_db, not of app_db"),
    ("app_db-20000101T000000Z.dump", "does not exist; newest backups of app_db: app_db-20261125T023000Z.dump"),
])
def test_other_backup_names_are_refused(volume, backup, message):
    with pytest.raises(Refused) as exc:
        files.resolve_dump(volume, "app_db", backup)
    assert message in str(exc.value)


def test_a_bad_database_name_is_refused_before_the_volume_is_read(volume):
    with pytest.raises(Refused, match="is not a database name"):
        files.resolve_dump(volume, "../postgres", "latest")


def test_no_backup_at_all_is_refused(volume):
    with pytest.raises(Refused, match="no backup of database empty_db in"):
        files.resolve_dump(volume, "empty_db", "latest")


def test_a_checksum_mismatch_is_refused(volume):
    path = os.path.join(volume, "postgres", "app_db", "app_db-20261127T023000Z.dump")
    with open(path, "ab") as f:
        f.write(b"one more byte")
    with pytest.raises(Refused, match="backup app_db-20261127T023000Z.dump is corrupted: its sha256 is "):
        files.resolve_dump(volume, "app_db", "latest")
    # The other backups are still usable.
    assert files.resolve_dump(volume, "app_db", "app_db-20261126T023000Z.dump")


def test_a_backup_without_its_checksum_file_is_refused(volume):
    path = os.path.join(volume, "postgres", "app_db", "app_db-20261126T023000Z.dump")
    os.unlink(path + ".sha256")
    with pytest.raises(Refused, match="has no readable checksum file app_db-20261126T023000Z.dump.sha256"):
        files.resolve_dump(volume, "app_db", "app_db-20261126T023000Z.dump")


# -------------------------------------------------------------------- prune

def test_prune_removes_only_what_is_older_than_the_retention_with_its_sidecars(tmp_path):
    directory = str(tmp_path / "postgres" / "app_db")
    make_backup(directory, "app_db-20261110T023000Z.dump", age_days=17)
    make_backup(directory, "app_db-20261119T023000Z.dump", age_days=8)
    make_backup(directory, "app_db-20261121T023000Z.dump", age_days=6.9)
    make_backup(directory, "app_db-20261126T023000Z.dump", age_days=1)
    # Not a backup: never removed, however old.
    make_backup(directory, "notes.txt", age_days=30)
    make_backup(directory, "app_db-20261101T000000Z.dump.partial", age_days=2, checksum=False)
    make_backup(directory, "app_db-20261127T023000Z.dump.partial", age_days=0.5, checksum=False)

    removed = files.prune(directory, DUMP_RE, 7, now=NOW)

    assert removed == ["app_db-20261110T023000Z.dump", "app_db-20261119T023000Z.dump"]
    assert sorted(os.listdir(directory)) == sorted(
        [f"app_db-{s}.dump{x}" for s in ("20261121T023000Z", "20261126T023000Z") for x in ("", ".sha256", ".json")]
        + ["notes.txt", "notes.txt.sha256", "notes.txt.json",
           # A partial file of an interrupted run goes after a day only.
           "app_db-20261127T023000Z.dump.partial"])


def test_prune_always_keeps_the_newest_backup(tmp_path):
    directory = str(tmp_path / "redis")
    make_backup(directory, "redis-20261001T021500Z.rdb", age_days=57)
    make_backup(directory, "redis-20261002T021500Z.rdb", age_days=56)
    assert files.prune(directory, RDB_RE, 7, now=NOW) == ["redis-20261001T021500Z.rdb"]
    assert sorted(os.listdir(directory)) == ["redis-20261002T021500Z.rdb", "redis-20261002T021500Z.rdb.json",
                                             "redis-20261002T021500Z.rdb.sha256"]
    assert files.prune(directory, RDB_RE, 7, now=NOW) == []


def test_prune_of_a_missing_directory_removes_nothing(tmp_path):
    assert files.prune(str(tmp_path / "none"), DUMP_RE, 7, now=NOW) == []


# ------------------------------------------------------- result of main()

def read_result(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_main_writes_the_refusal_to_the_result_file(tmp_path, monkeypatch, capsys):
    result_file = tmp_path / "result.json"
    monkeypatch.setenv("SKX_RESULT_FILE", str(result_file))
    status = cli.main(["--backup-dir", str(tmp_path), "plan-restore", "--database", "Bad-Name"])
    assert status == EXIT_REFUSED == 2
    result = read_result(result_file)
    assert result == {"ok": False, "refused": True, "msg": result["msg"]}
    assert result["msg"].startswith("--database: 'Bad-Name' is not a database name this tool manages")
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].endswith(" REFUSED: " + result["msg"])
    assert not any("SKX_RESULT" in line or "{" in line for line in lines)


def test_the_option_overrides_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SKX_RESULT_FILE", str(tmp_path / "from-env.json"))
    status = cli.main(["--result-file", str(tmp_path / "from-option.json"), "--backup-dir", str(tmp_path),
                       "plan-restore", "--database", "app_db"])
    assert status == EXIT_REFUSED
    assert not (tmp_path / "from-env.json").exists()
    assert read_result(tmp_path / "from-option.json")["msg"] == (
        f"no backup of database app_db in {tmp_path}/postgres/app_db")


def test_without_a_result_file_main_writes_none(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SKX_RESULT_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--backup-dir", str(tmp_path), "prune"]) == EXIT_OK
    assert os.listdir(tmp_path) == []
    assert capsys.readouterr().out.splitlines()[-1].endswith(" OK: prune")


def test_a_success_is_the_command_result_with_ok(tmp_path, capsys):
    root = tmp_path / "backups"
    directory = files.pg_dir(str(root), "app_db")
    make_backup(directory, "app_db-20261101T023000Z.dump", age_days=30)
    make_backup(directory, "app_db-20261102T023000Z.dump", age_days=29)
    status = cli.main(["--result-file", str(tmp_path / "result.json"), "--backup-dir", str(root),
                       "plan-restore", "--database", "app_db"])
    assert status == EXIT_OK
    result = read_result(tmp_path / "result.json")
    assert result["ok"] is True and result["backup"] == "app_db-20261102T023000Z.dump"
    assert result["available"] == ["app_db-20261102T023000Z.dump", "app_db-20261101T023000Z.dump"]
    last = capsys.readouterr().out.splitlines()[-1]
    assert " OK: plan-restore (database app_db, backup app_db-20261102T023000Z.dump, sha256 " in last


def test_the_package_runs_as_the_pods_run_it(tmp_path):
    """python3 -s -P -m skx_backup with PYTHONPATH and SKX_RESULT_FILE, from
    a directory where nothing else is importable: exit status 2, the JSON in
    the file, a readable last line."""
    result_file = tmp_path / "termination-log"
    proc = subprocess.run([PYTHON, "-s", "-P", "-m", "skx_backup", "--backup-dir", str(tmp_path),
                           "plan-restore", "--database", "app_db", "--backup", "../../etc/passwd"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": FILES, "PYTHONDONTWRITEBYTECODE": "1",
                               "SKX_RESULT_FILE": str(result_file), "LANG": "C.UTF-8"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert read_result(result_file) == {
        "ok": False, "refused": True,
        "msg": "--backup: '../../etc/passwd' is neither 'latest' nor a backup name like "
               "app_db-20260101T023000Z.dump"}
    assert proc.stdout.splitlines()[-1].endswith(" REFUSED: --backup: '../../etc/passwd' is neither 'latest' "
                                                 "nor a backup name like app_db-20260101T023000Z.dump")
    assert proc.stderr == ""


def test_a_result_fits_in_a_termination_message():
    long = {"ok": False, "refused": False, "msg": "pg_restore failed (exit 1): " + "é\"x" * 3000}
    text = cli.encode_result(long)
    assert len(text.encode("utf-8")) <= cli.RESULT_LIMIT == 4096
    decoded = json.loads(text)
    assert decoded["ok"] is False and decoded["msg"].startswith("pg_restore failed (exit 1): é\"x")
    assert decoded["msg"].endswith("...") and len(text) > cli.RESULT_LIMIT - 6
    short = {"ok": True, "backup": "app_db-20261127T023000Z.dump", "available": ["a" * 40] * 30}
    assert json.loads(cli.encode_result(short)) == short
    large = {"ok": True, "backup": "app_db-20261127T023000Z.dump", "available": ["a" * 40] * 200}
    text = cli.encode_result(large)
    assert len(text) <= cli.RESULT_LIMIT
    assert json.loads(text) == {"ok": True, "backup": "app_db-20261127T023000Z.dump", "truncated": True}


def test_an_unwritable_result_file_is_logged(tmp_path, capsys):
    path = tmp_path / "missing-dir" / "result.json"
    cli.write_result(str(path), {"ok": True})
    assert not path.exists()
    assert f"result: cannot write {path}: " in capsys.readouterr().out


# ---------------------------------------------------------------- snapshots

def test_snapshot_body_targets_the_pvc_with_the_class():
    body = snapshots.snapshot_body("skx-data", "data-postgres-0", "csi-snapclass", "20261127T030000Z")
    assert body["metadata"]["name"] == "data-postgres-0-20261127t030000z"
    assert body["metadata"]["namespace"] == "skx-data"
    assert body["metadata"]["labels"][snapshots.SNAPSHOT_LABEL] == "data-postgres-0"
    assert body["spec"] == {"volumeSnapshotClassName": "csi-snapclass",
                            "source": {"persistentVolumeClaimName": "data-postgres-0"}}


def test_snapshot_retention_keeps_the_window_and_the_newest():
    now = datetime.datetime(2026, 11, 27, 3, 0, tzinfo=datetime.timezone.utc)
    items = [{"metadata": {"name": n, "creationTimestamp": t}} for n, t in [
        ("c", "2026-11-26T03:00:00Z"), ("a", "2026-11-10T03:00:00Z"),
        ("b", "2026-11-19T02:59:59Z"), ("d", "2026-11-20T03:00:01Z")]]
    assert snapshots.expired_snapshots(items, 7, now) == ["a", "b"]
    assert snapshots.expired_snapshots(items, 7, now + datetime.timedelta(days=90)) == ["a", "b", "d"]
    assert snapshots.expired_snapshots([], 7, now) == []


# ------------------------------------------------------------- S3 signing

def test_signature_matches_the_aws_example():
    """The GET Object example of the AWS Signature Version 4 documentation
    (examplebucket, 2013-05-24, Range header)."""
    when = datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc)
    headers = s3.sign_v4("GET", "examplebucket.s3.amazonaws.com", "/test.txt", {}, {"Range": "bytes=0-9"},
                         s3.UNSIGNED_EMPTY, "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                         "us-east-1", now=when)
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    assert headers["X-Amz-Date"] == "20130524T000000Z" and headers["Range"] == "bytes=0-9"


def test_signature_matches_botocore(monkeypatch):
    """Our stdlib SigV4 gives byte for byte the Authorization header botocore
    computes for the same request (moto does not check signatures)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key_id, secret = "AKIAEXAMPLEBACKUP", "backup-secret-key-for-tests"
    when = datetime.datetime(2026, 11, 27, 2, 30, 5, tzinfo=datetime.timezone.utc)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: when.replace(tzinfo=None))
    payload = hashlib.sha256(b"dump bytes").hexdigest()
    path = "/skx-backups/prod/postgres/instance2_db/instance2_db-20261127T023000Z.dump"
    headers = {"Content-Length": "10", "Content-Type": "application/octet-stream",
               "x-amz-meta-sha256": payload}
    ours = s3.sign_v4("PUT", "minio.example:9000", path, {}, headers, payload,
                      key_id, secret, "eu-west-3", now=when)

    request = AWSRequest(method="PUT", url=f"http://minio.example:9000{path}", data=b"dump bytes",
                         headers={**headers, "X-Amz-Content-SHA256": payload})
    signer = S3SigV4Auth(Credentials(key_id, secret), "s3", "eu-west-3")
    signer.add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]

    # And a query-string request (the listing).
    ours = s3.sign_v4("GET", "minio.example:9000", "/skx-backups", {"list-type": "2", "prefix": "a b/"},
                      {}, s3.UNSIGNED_EMPTY, key_id, secret, "us-east-1", now=when)
    request = AWSRequest(method="GET", url="http://minio.example:9000/skx-backups?list-type=2&prefix=a%20b%2F",
                         headers={"X-Amz-Content-SHA256": s3.UNSIGNED_EMPTY})
    signer = S3SigV4Auth(Credentials(key_id, secret), "s3", "us-east-1")
    signer.add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]
