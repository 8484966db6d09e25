"""Backups and restore on the testbed cluster, with the whole platform
deployed on it (site.yml -i inventories/existing, KUBECONFIG pointing at the
testbed): a manual run of a backup CronJob leaves a checked dump on the PVC;
restore.yml refuses a missing backup, tells its plan in check mode, and
brings instance2's rows back while instance1 and instance3 keep answering.

Skipped when no testbed with the platform is reachable (and, like every
test under tests/e2e, without KUBECONFIG), unless SKX_TESTBED_REQUIRED=1
(then it fails).
"""
import json
import os
import subprocess
import threading
import time
import uuid

import pytest

from e2e_support import postgres_primary
from lib.ansible_env import playbook_env

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
KUBECTL = os.environ.get("SKX_KUBECTL", "/var/cache/skx-testbed/bin/kubectl")
KUBECONFIG = os.environ.get("SKX_KUBECONFIG", "/var/lib/skx-testbed/admin.kubeconfig")
DATA_NS = "skx-data"


def kubectl(*args, check=True, timeout=120):
    proc = subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, *args], capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {proc.stdout}{proc.stderr}")
    return proc.stdout


def platform_deployed():
    if not (os.path.exists(KUBECTL) and os.path.exists(KUBECONFIG)):
        return False
    try:
        kubectl("-n", DATA_NS, "get", "cronjob/backup-instance2-db", timeout=20)
    except (AssertionError, subprocess.TimeoutExpired):
        return False
    return True


pytestmark = pytest.mark.skipif(
    os.environ.get("SKX_TESTBED_REQUIRED") != "1" and not platform_deployed(),
    reason="no testbed with the platform deployed (testbed/up, then site.yml -i inventories/existing)")


def psql(database, statement):
    """SQL as the superuser, inside the PostgreSQL pod (credentials from its
    mounted Secret, never on the command line)."""
    script = ('d=/var/run/secrets/superkubernetex/postgres-superuser; '
              'PGPASSWORD="$(cat $d/password)" psql -h 127.0.0.1 -U "$(cat $d/username)" '
              f'-X -q -A -t -v ON_ERROR_STOP=1 -d {database}')
    proc = subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, "-n", DATA_NS, "exec", "-i", postgres_primary(),
                           "-c", "postgres", "--", "sh", "-c", script],
                          input=statement, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def restore_playbook(*extra):
    started = time.monotonic()
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "inventories/existing",
                           # A filled vault: the example's placeholders are refused.
                           "-e", "@tests/static/data/vault.test-values.yml",
                           "playbooks/restore.yml", "-e", "skx_restore_instance=instance2", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800,
                          env=playbook_env(KUBECONFIG=KUBECONFIG))
    return proc, time.monotonic() - started


class Prober(threading.Thread):
    """Asks for an instance's home page (read from its database) through the
    ingress twice a second (its /readyz is not served there)."""

    def __init__(self, host):
        super().__init__(daemon=True)
        self.host, self.results, self.stop = host, [], threading.Event()

    def run(self):
        import requests
        import urllib3

        urllib3.disable_warnings()
        while not self.stop.is_set():
            try:
                code = requests.get("https://127.0.0.1/", headers={"Host": self.host},
                                    verify=False, timeout=3).status_code
            except requests.RequestException as exc:
                code = type(exc).__name__
            self.results.append((time.monotonic(), code))
            time.sleep(0.5)


def test_manual_backup_then_restore_of_instance2_while_the_others_serve():
    # Rows only the backup will know about.
    psql("instance2_db", "CREATE TABLE IF NOT EXISTS skx_restore_probe (id int PRIMARY KEY, note text, "
                         "at timestamptz DEFAULT now()); TRUNCATE skx_restore_probe; "
                         "INSERT INTO skx_restore_probe (id, note) SELECT g, 'row ' || g "
                         "FROM generate_series(1, 500) g;")

    job = f"backup-manual-{uuid.uuid4().hex[:6]}"
    kubectl("-n", DATA_NS, "create", "job", job, "--from=cronjob/backup-instance2-db")
    kubectl("-n", DATA_NS, "wait", "--for=condition=complete", f"job/{job}", "--timeout=600s", timeout=620)
    log = kubectl("-n", DATA_NS, "logs", f"job/{job}")
    # The result is the termination message of the job's pod (the package
    # writes it to /dev/termination-log), as restore.yml reads it.
    pods = json.loads(kubectl("-n", DATA_NS, "get", "pods", "-l", f"job-name={job}", "-o", "json"))["items"]
    messages = [status["state"]["terminated"].get("message", "")
                for pod in pods for status in pod["status"].get("containerStatuses", [])
                if "terminated" in status.get("state", {})]
    assert messages and messages[-1].strip(), log
    result = json.loads(messages[-1])
    assert result["ok"] and result["backup"].startswith("instance2_db-"), log
    assert "SKX_RESULT" not in log, log
    backup = result["backup"]

    # A missing backup is refused before anything moves.
    proc, _ = restore_playbook("-e", "skx_restore_backup=instance2_db-20000101T000000Z.dump")
    assert proc.returncode != 0
    assert "Restore refused" in proc.stdout and "does not exist" in proc.stdout, proc.stdout[-3000:]

    # The disaster, then check mode: it tells, nothing changes.
    psql("instance2_db", "DELETE FROM skx_restore_probe WHERE id > 100;")
    proc, _ = restore_playbook("-e", f"skx_restore_backup={backup}", "--check")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert f"Check mode: would restore database instance2_db of instance2 from {backup}" in " ".join(
        proc.stdout.split())
    assert psql("instance2_db", "SELECT count(*) FROM skx_restore_probe;") == "100"

    probers = {host: Prober(host) for host in ("inst1.superkubernetex.com", "inst2.superkubernetex.com",
                                              "inst3.superkubernetex.com")}
    for p in probers.values():
        p.start()
    time.sleep(2)
    proc, seconds = restore_playbook("-e", f"skx_restore_backup={backup}")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and probers["inst2.superkubernetex.com"].results[-1][1] != 200:
        time.sleep(1)
    time.sleep(2)
    for p in probers.values():
        p.stop.set()
        p.join(10)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert psql("instance2_db", "SELECT count(*) FROM skx_restore_probe;") == "500"

    for host in ("inst1.superkubernetex.com", "inst3.superkubernetex.com"):
        codes = [code for _, code in probers[host].results]
        assert codes and all(code == 200 for code in codes), f"{host}: {codes}"
    inst2 = probers["inst2.superkubernetex.com"].results
    assert inst2[-1][1] == 200
    down = [t for t, code in inst2 if code != 200]
    size = psql("instance2_db", "SELECT pg_size_pretty(pg_database_size('instance2_db'));")
    print(f"restore.yml took {seconds:.0f} s on instance2_db of {size}; instance2 not serving for "
          f"{(down[-1] - down[0]) if down else 0:.0f} s; instance1 and instance3 answered "
          f"{len(probers['inst1.superkubernetex.com'].results)} and "
          f"{len(probers['inst3.superkubernetex.com'].results)} probes, all 200")
