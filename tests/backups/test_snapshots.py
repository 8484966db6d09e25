"""VolumeSnapshot helpers of the snapshot CronJob (the API calls themselves
need a cluster with a CSI snapshot class: see docs/backups.md)."""
import datetime
import sys

from backup_helpers import FILES

sys.path.insert(0, FILES)
import skx_backup  # noqa: E402


def test_snapshot_body_targets_the_pvc_with_the_class():
    body = skx_backup.snapshot_body("skx-data", "data-postgres-0", "csi-snapclass", "20261127T030000Z")
    assert body["metadata"]["name"] == "data-postgres-0-20261127t030000z"
    assert body["metadata"]["labels"][skx_backup.SNAPSHOT_LABEL] == "data-postgres-0"
    assert body["spec"] == {"volumeSnapshotClassName": "csi-snapclass",
                            "source": {"persistentVolumeClaimName": "data-postgres-0"}}


def test_snapshot_retention_keeps_the_window_and_the_newest():
    now = datetime.datetime(2026, 11, 27, 3, 0, tzinfo=datetime.timezone.utc)
    items = [{"metadata": {"name": n, "creationTimestamp": t}} for n, t in [
        ("c", "2026-11-26T03:00:00Z"), ("a", "2026-11-10T03:00:00Z"),
        ("b", "2026-11-19T02:59:59Z"), ("d", "2026-11-20T03:00:01Z")]]
    assert skx_backup.expired_snapshots(items, 7, now) == ["a", "b"]
    assert skx_backup.expired_snapshots(items, 7, now + datetime.timedelta(days=90)) == ["a", "b", "d"]


def test_without_a_snapshot_class_the_job_says_it_skips(run_backup):
    run = run_backup("snapshots", "--pvc", "skx-data/data-postgres-0")
    assert run.returncode == 0, run
    assert "no VolumeSnapshotClass configured; PVC snapshots skipped" in run.output
