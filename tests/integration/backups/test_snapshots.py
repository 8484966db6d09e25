"""The snapshot CronJob's command without a snapshot class (the API calls
themselves need a cluster with a CSI snapshot class: see docs/backups.md;
the VolumeSnapshot body and the retention are tested in
tests/unit/backups/test_skx_backup.py)."""


def test_without_a_snapshot_class_the_job_says_it_skips(run_backup):
    run = run_backup("snapshots", "--pvc", "skx-data/data-postgres-0")
    assert run.returncode == 0, run
    assert "no VolumeSnapshotClass configured; PVC snapshots skipped" in run.output
    assert run.result == {"ok": True}
