"""ansible-test, the collection's own checks as Ansible's tooling runs them
(issue 19), from the README's test command: every sanity test on the
modules, module_utils and doc fragments, and the unit tests of
tests/unit/plugins through `ansible-test units` (tests/sanity/run.sh makes
the ansible_collections tree both need)."""
import os
import re
import subprocess

from static_support import ROOT

RUN = os.path.join(ROOT, "tests", "sanity", "run.sh")


def ansible_test(*args):
    proc = subprocess.run([RUN, *args], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_ansible_test_sanity_passes():
    out = ansible_test()
    ran = re.findall(r'^Running sanity test "([^"]+)"', out, re.M)
    print(f"ansible-test sanity: {len(ran)} tests passed")
    assert {"validate-modules", "pylint", "pep8", "yamllint"} <= set(ran)


def test_ansible_test_units_pass():
    out = ansible_test("units")
    counts = [int(n) for n in re.findall(r"^=+ (\d+) passed in", out, re.M)]
    print(f"ansible-test units: {sum(counts)} passed")
    assert "failed" not in " ".join(re.findall(r"^=+ .* in [0-9.]+s =+$", out, re.M))
    assert sum(counts) >= 100
