"""Second policy scan of the rendered manifests: kube-score, independent of
checkov (test_policy.py), finds nothing that is not skipped with a reason.

kube-score is built from its Go module (version KUBE_SCORE_VERSION in
testbed/versions.env) by tests/lib/monitoring/install-tools.sh into
/var/cache/skx/bin; a present binary of that version is not rebuilt. It
scans the manifests of inventories/vm (the `rendered` fixture) for the
Kubernetes version that inventory installs (k3s_version).

Every skip lives in .kube-score.yaml with its reason: `ignore` names checks
skipped for every object, `skip` one check for the objects (and containers)
it names. kube-score runs with its own `kube-score/ignore` and
`kube-score/enable` annotations disabled, so no template can skip a check
on the side. A skip that no finding needs any more fails, so that the list
stays the list of what is really skipped.
"""
import fnmatch
import json
import os
import re
import subprocess

import pytest
import yaml

from static_support import ROOT

INSTALL_TOOLS = os.path.join(ROOT, "tests", "lib", "monitoring", "install-tools.sh")
BIN = os.environ.get("SKX_BIN", "/var/cache/skx/bin")
CONFIG = os.path.join(ROOT, ".kube-score.yaml")
# kube-score's grades (scorecard.Grade): 1 critical, 5 warning, 7 and 10 OK.
FAILING = {1: "critical", 5: "warning"}


@pytest.fixture(scope="session")
def kube_score():
    """The kube-score binary, built on the first use (about a minute)."""
    proc = subprocess.run(["bash", INSTALL_TOOLS, "kube-score"], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"install-tools.sh kube-score failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return os.path.join(BIN, "kube-score")


def kubernetes_version():
    """v<major>.<minor> of the k3s release inventories/vm installs."""
    with open(os.path.join(ROOT, "inventories", "vm", "group_vars", "all", "main.yml")) as handle:
        release = yaml.safe_load(handle)["k3s_version"]
    return re.match(r"v\d+\.\d+", release).group(0)


def load_config():
    with open(CONFIG) as handle:
        config = yaml.safe_load(handle)
    return config.get("ignore") or {}, config.get("skip") or []


def scan(kube_score, rendered):
    """kube-score's JSON report of every rendered manifest."""
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(rendered) for f in names if f.endswith(".yaml"))
    assert files
    proc = subprocess.run([kube_score, "score", "--output-format", "json",
                           "--kubernetes-version", kubernetes_version(),
                           "--disable-ignore-checks-annotations", "--disable-optional-checks-annotations", *files],
                          capture_output=True, text=True, timeout=300)
    # 1: something is critical (or a warning, with --exit-one-on-warning).
    assert proc.returncode in (0, 1) and proc.stdout.startswith("["), proc.stderr[-3000:]
    return json.loads(proc.stdout)


def results(report):
    """(OK checks, checks kube-score found not applicable, findings): a
    finding is one comment of a critical or warning check, as kube-score's
    own `--output-format ci` prints them, a dict with grade, check, object
    ("Kind namespace/name"), container (empty when the pod as a whole is
    concerned) and summary."""
    ok = not_applicable = 0
    findings = []
    for obj in report:
        meta = obj["object_meta"]
        ref = f"{obj['type_meta']['kind']} {meta.get('namespace', '')}/{meta['name']}"
        for check in obj["checks"]:
            if check["skipped"]:
                not_applicable += 1
            elif check["grade"] not in FAILING:
                ok += 1
            else:
                for comment in check["comments"] or [{"path": "", "summary": check["check"]["name"]}]:
                    findings.append({"grade": FAILING[check["grade"]], "check": check["check"]["id"], "object": ref,
                                     "container": comment["path"], "summary": comment["summary"]})
    return ok, not_applicable, findings


def skipped_by(finding, ignore, skips):
    """The index of what in .kube-score.yaml skips the finding ('ignore' or a
    position in `skip`), or None."""
    if finding["check"] in ignore:
        return "ignore"
    for index, skip in enumerate(skips):
        if (skip["check"] == finding["check"]
                and any(fnmatch.fnmatchcase(finding["object"], pattern) for pattern in skip["objects"])
                and ("containers" not in skip or finding["container"] in skip["containers"])):
            return index
    return None


def test_every_skip_names_a_kube_score_check_and_gives_its_reason(kube_score):
    proc = subprocess.run([kube_score, "list"], capture_output=True, text=True, check=True)
    known = {line.split(",", 1)[0] for line in proc.stdout.splitlines() if line}
    ignore, skips = load_config()
    wrong = [f"ignore {check}: unknown check" for check in ignore if check not in known]
    wrong += [f"ignore {check}: no reason" for check, reason in ignore.items() if not str(reason or "").strip()]
    for skip in skips:
        assert set(skip) <= {"check", "objects", "containers", "reason"}, skip
        if skip.get("check") not in known:
            wrong.append(f"skip {skip.get('check')}: unknown check")
        if not skip.get("objects") or not str(skip.get("reason") or "").strip():
            wrong.append(f"skip {skip.get('check')}: objects and a reason are required")
    assert not wrong, "\n".join(wrong)


def test_kube_score_finds_nothing_unjustified(kube_score, rendered):
    ignore, skips = load_config()
    ok, not_applicable, findings = results(scan(kube_score, rendered))
    used, failing = set(), []
    for finding in findings:
        by = skipped_by(finding, ignore, skips)
        if by is None:
            failing.append(finding)
        else:
            used.add(finding["check"] if by == "ignore" else by)
    count = {grade: sum(f["grade"] == grade for f in failing) for grade in FAILING.values()}
    print(f"kube-score: {ok} OK, {len(findings) - len(failing)} skipped (.kube-score.yaml), "
          f"{not_applicable} not applicable, {count['critical']} critical, {count['warning']} warning")
    assert ok > 300
    assert not failing, "\n".join(sorted(
        f"[{f['grade'].upper()}] {f['check']}: {f['object']}{' (' + f['container'] + ')' if f['container'] else ''}"
        f" {f['summary']}" for f in failing))
    stale = [f"ignore {check}" for check in ignore if check not in used]
    stale += [f"skip {skip['check']} {skip['objects']}" for index, skip in enumerate(skips) if index not in used]
    assert not stale, "skips that no finding needs any more (remove them from .kube-score.yaml):\n" + "\n".join(stale)
