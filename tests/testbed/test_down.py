"""`testbed/down` leaves nothing behind, and only versioned build artefacts in
its cache, so the next `up` is a cold start from them. Destructive: runs only
with SKX_TESTBED_TEST_DOWN=1 (.ci/run runs it first, before `up`, as the
cold-start check, and last). Marked run_last: in a larger session
tests/testbed/conftest.py moves it after every other test."""
import os
import shutil
import subprocess

import pytest

from lib.testbed import CACHE, ROOT, STATE

RUN = "/run/skx-testbed"

pytestmark = [pytest.mark.run_last, pytest.mark.any_testbed_state,
              pytest.mark.skipif(os.environ.get("SKX_TESTBED_TEST_DOWN") != "1",
                                 reason="destructive: set SKX_TESTBED_TEST_DOWN=1")]


def _our_processes():
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{p}/exe")
        except OSError:
            continue
        if exe.startswith(os.path.join(CACHE, "bin") + "/"):
            found.append((p, exe))
    return found


def test_down_leaves_nothing():
    r = subprocess.run([os.path.join(ROOT, "testbed", "down")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert _our_processes() == []
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    assert [m for m in mounts if m.startswith(STATE) or m.startswith(RUN)] == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert "skx-" not in links
    # On a machine where the testbed never ran (the cold-start check of a
    # new machine), iptables and ipset may not be installed yet: then
    # nothing of ours can be in them.
    if shutil.which("iptables"):
        for t in ("filter", "nat", "mangle"):
            rules = subprocess.run(["iptables", "-t", t, "-S"], capture_output=True, text=True).stdout
            assert "KUBE-" not in rules and "CNI-" not in rules, t
    if shutil.which("ipset"):
        sets = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True).stdout
        assert "KUBE-" not in sets
    assert not os.path.exists(STATE) and not os.path.exists(RUN)
    assert not any(os.path.exists(f"/sys/fs/cgroup/{h}/skx-testbed") for h in os.listdir("/sys/fs/cgroup"))
    # only versioned build artefacts stay in the cache (testbed/lib/cache.sh)
    leftovers = subprocess.run(
        ["bash", "-c", f'. "{ROOT}/testbed/lib/common.sh"; . "{ROOT}/testbed/lib/cache.sh"; cache_leftovers'],
        capture_output=True, text=True, check=True).stdout.split("\n")
    assert [e for e in leftovers if e] == [], "not versioned build artefacts, left in the cache"
    # and a second run is harmless
    r2 = subprocess.run([os.path.join(ROOT, "testbed", "down")], capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr
