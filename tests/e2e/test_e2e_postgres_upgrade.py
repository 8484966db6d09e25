"""Upgrade in place: a platform deployed by the last release with the
single-server PostgreSQL moves to the Patroni layout with its data (issue 16).

SKX_TESTBED_POSTGRES_UPGRADE=1 runs it, on a testbed where the platform was
never deployed (.ci/run brings a fresh one up for it):
  1. the last single-server release (PREVIOUS_RELEASE, taken from this
     repository's history with git archive) deploys the platform;
  2. 100,000 marker rows are written, and sign-ups go on through auth;
  3. this checkout's site.yml runs over it: the data directory becomes the
     first Patroni member, without dump and restore;
  4. the marker rows are the same (count and md5), every sign-up that was
     acknowledged is in the database, postgres-0 is Patroni's primary, and
     the run after changes nothing.
The figures (sign-ups acknowledged and refused, the upgrade run's time)
are printed.
"""
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid

import pytest

from e2e_support import ROOT, kubectl, postgres_primary, psql, signups, wait
from lib.ansible_env import playbook_env

pytestmark = pytest.mark.skipif(os.environ.get("SKX_TESTBED_POSTGRES_UPGRADE") != "1",
                                reason="set SKX_TESTBED_POSTGRES_UPGRADE=1, on a testbed where the platform was "
                                       "never deployed (it deploys the previous release first)")

INCREMENTAL = True

# The last commit of main whose postgres role ran one PostgreSQL server
# without Patroni.
PREVIOUS_RELEASE = "70fe80716f2eb44328ea9e2e26f96702f17b8d12"
MARKER = "SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM upgrade_marker"
PASSWORD = "upgrade in place password"


def site(checkout):
    """site.yml of checkout on the testbed, with this checkout's Python
    environment (the release pins the same one)."""
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    started = time.monotonic()
    proc = subprocess.run([playbook, "site.yml", "-i", "inventories/testbed"], cwd=checkout, env=playbook_env(),
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    recap = next(line for line in proc.stdout.splitlines() if line.startswith("localhost "))
    seconds = time.monotonic() - started
    print(f"site.yml from {checkout}: {seconds:.0f} s, {recap.split(':', 1)[1].strip()}")
    return recap, seconds


@pytest.fixture(scope="module")
def previous_release():
    """The previous release's files, with the .collections link install.sh
    would make, in a temporary directory."""
    present = subprocess.run(["git", "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"], cwd=ROOT)
    assert present.returncode == 0, (f"commit {PREVIOUS_RELEASE} (the previous release) is not in this clone's "
                                     "history: the upgrade test needs a clone with the history of main")
    with tempfile.TemporaryDirectory(prefix="skx-previous-") as tmp:
        archive = subprocess.run(["git", "archive", "--format=tar", PREVIOUS_RELEASE], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        with tempfile.TemporaryFile() as f:
            f.write(archive)
            f.seek(0)
            with tarfile.open(fileobj=f) as tar:
                tar.extractall(tmp, filter="data")
        link = os.path.join(tmp, ".collections", "ansible_collections", "superkubernetex")
        os.makedirs(link)
        os.symlink("../../..", os.path.join(link, "platform"))
        yield tmp


class Load:
    """Sign-ups through auth in a thread, from 20 acknowledged ones until the end of the block."""

    def __init__(self):
        self.prefix = f"upg-{uuid.uuid4().hex[:8]}"
        self.acked, self.refused, self.stop = [], [], threading.Event()
        self.thread = threading.Thread(target=signups, args=(self.prefix, PASSWORD, self.acked, self.refused,
                                                             self.stop), daemon=True)

    def __enter__(self):
        self.thread.start()
        wait(lambda: len(self.acked) >= 20, timeout=120, interval=1, what="20 sign-ups before the upgrade")
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(15)


STATE = {}


def test_the_previous_release_deploys_a_single_server(previous_release):
    namespaces = kubectl("get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    assert "skx-data" not in namespaces, "the platform is already deployed: this test needs a fresh testbed"
    site(previous_release)
    labels = kubectl("-n", "skx-data", "get", "pod", "postgres-0", "-o", "jsonpath={.metadata.labels}").stdout
    assert "cluster-name" not in labels, f"the previous release already runs Patroni: {labels}"
    psql("CREATE TABLE upgrade_marker AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 100000) g",
         database="superkube", pod="postgres-0")
    STATE["marker"] = psql(MARKER, database="superkube", pod="postgres-0").stdout.strip()
    assert STATE["marker"].startswith("100000|"), STATE["marker"]


def test_the_upgrade_keeps_the_data_and_every_acknowledged_write():
    with Load() as load:
        _, STATE["seconds"] = site(ROOT)
        back = len(load.acked)
        wait(lambda: len(load.acked) >= back + 20, timeout=180, interval=1, what="20 sign-ups after the upgrade")
    assert postgres_primary() == "postgres-0"
    assert psql(MARKER, database="superkube").stdout.strip() == STATE["marker"]
    present = set(psql(f"SELECT email FROM users WHERE email LIKE '{load.prefix}-%'",
                       database="superkube").stdout.split())
    missing = [e for e in load.acked if e not in present]
    print(f"upgrade under load: {len(load.acked)} sign-ups acknowledged, {len(load.refused)} refused, "
          f"{len(missing)} acknowledged missing; marker rows unchanged ({STATE['marker']})")
    assert missing == [], f"{len(missing)} acknowledged sign-ups lost in the upgrade: {missing[:5]}"


def test_the_upgraded_platform_is_converged():
    recap, _ = site(ROOT)
    assert " changed=0 " in recap, recap
