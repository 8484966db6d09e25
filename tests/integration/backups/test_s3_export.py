"""S3-compatible export against moto's server: upload, read back by
checksum, retention in the bucket (the request signing, which needs no
server, is tested in tests/unit/backups/test_skx_backup.py)."""
import datetime
import hashlib
import os
import uuid

import boto3
import pytest

from skx_backup import s3
from skx_backup.common import DUMP_RE

KEY_ID, SECRET = "AKIAEXAMPLEBACKUP", "backup-secret-key-for-tests"


@pytest.fixture
def bucket(s3_server):
    name = f"skx-backups-{uuid.uuid4().hex[:8]}"
    boto(s3_server).create_bucket(Bucket=name)
    return name


def boto(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)


@pytest.fixture
def s3_env(s3_server, bucket, tmp_path):
    creds = tmp_path / "s3-credentials"
    creds.mkdir()
    (creds / "access_key_id").write_text(KEY_ID)
    (creds / "secret_access_key").write_text(SECRET + "\n")
    return {"SKX_S3_ENDPOINT": s3_server, "SKX_S3_BUCKET": bucket, "SKX_S3_PREFIX": "prod/",
            "SKX_S3_CREDENTIALS_DIR": str(creds)}


def test_dump_is_exported_and_read_back_identical(run_backup, tenant_db, s3_env, s3_server, bucket,
                                                  backup_dir, tmp_path):
    db = tenant_db["name"]
    run = run_backup("pg-dump", "--database", db, env=s3_env)
    assert run.returncode == 0, run
    name = run.result["backup"]
    key = f"prod/postgres/{db}/{name}"
    assert f"s3: exported {name} to {bucket}/{key}" in run.output
    assert SECRET not in run.output
    # Read back with another client (boto3): same bytes as on the volume.
    local = open(os.path.join(backup_dir, "postgres", db, name), "rb").read()
    obj = boto(s3_server).get_object(Bucket=bucket, Key=key)
    assert hashlib.sha256(obj["Body"].read()).hexdigest() == hashlib.sha256(local).hexdigest()
    assert obj["Metadata"]["sha256"] == hashlib.sha256(local).hexdigest()
    sums = boto(s3_server).get_object(Bucket=bucket, Key=key + ".sha256")["Body"].read().decode()
    assert sums.split() == [hashlib.sha256(local).hexdigest(), name]

    # A restore from the bucket: download, checksum, restore.
    client = s3.S3Client(s3_server, bucket, KEY_ID, SECRET)
    copy = tmp_path / "copy.dump"
    client.download(key, str(copy))
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == sums.split()[0]


def test_export_to_a_missing_bucket_fails_the_job(run_backup, tenant_db, s3_env):
    run = run_backup("pg-dump", "--database", tenant_db["name"],
                     env={**s3_env, "SKX_S3_BUCKET": "no-such-bucket"})
    assert run.returncode == 1, run
    assert "S3 export of" in run.result["msg"] and "HTTP 404" in run.result["msg"]


def test_export_without_credentials_is_refused(run_backup, tenant_db, s3_env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = run_backup("pg-dump", "--database", tenant_db["name"],
                     env={**s3_env, "SKX_S3_CREDENTIALS_DIR": str(empty)})
    assert run.returncode == 2, run
    assert "access_key_id" in run.result["msg"]


def test_bucket_retention_keeps_the_window_and_the_newest(s3_server, bucket):
    client = s3.S3Client(s3_server, bucket, KEY_ID, SECRET)
    now = datetime.datetime(2026, 11, 20, 2, 30, tzinfo=datetime.timezone.utc)
    stamps = ["20261101T023000Z", "20261112T023000Z", "20261114T023000Z", "20261119T023000Z"]
    for stamp in stamps:
        for suffix in ("", ".sha256", ".json"):
            client.put_bytes(f"prod/postgres/app_db/app_db-{stamp}.dump{suffix}", b"x")
    client.put_bytes("prod/postgres/app_db/README", b"kept")

    class Args:
        s3_prefix, s3_retention_days = "prod", 7
    removed = s3.s3_prune(Args, client, "postgres/app_db", DUMP_RE, now=now)
    assert removed == ["prod/postgres/app_db/app_db-20261101T023000Z.dump",
                       "prod/postgres/app_db/app_db-20261112T023000Z.dump"]
    left = sorted(k for k, _ in client.list("prod/postgres/app_db/"))
    assert left == sorted(["prod/postgres/app_db/README"] + [
        f"prod/postgres/app_db/app_db-{s}.dump{x}" for s in stamps[2:] for x in ("", ".sha256", ".json")])

    # Long outage: everything is old, the newest export is still kept.
    removed = s3.s3_prune(Args, client, "postgres/app_db", DUMP_RE, now=now + datetime.timedelta(days=60))
    assert removed == ["prod/postgres/app_db/app_db-20261114T023000Z.dump"]
