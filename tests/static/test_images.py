"""The images this collection owns: one Dockerfile each, the same build in
the testbed and in production, named from one registry and one version.

roles/images/defaults (images_definitions) says which Dockerfile provides
which platform_images key; the testbed's definitions of those images must
be KIND=dockerfile builds of that same folder under the same reference
(testbed/images/build.sh derives it from roles/platform/defaults)."""
import glob
import json
import os
import re
import subprocess

import pytest
import yaml

from static_support import run_ansible

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLATFORM = yaml.safe_load(open(os.path.join(ROOT, "roles", "platform", "defaults", "main.yml")))
DEFINITIONS = yaml.safe_load(open(os.path.join(ROOT, "roles", "images", "defaults", "main.yml")))["images_definitions"]
PROVIDED = {key: name for name, d in DEFINITIONS.items() for key in d["provides"]}


def own_ref(key):
    """platform_images[key] with the two settings it is named from filled in."""
    return (PLATFORM["platform_images"][key]
            .replace("{{ platform_registry }}", PLATFORM["platform_registry"])
            .replace("{{ platform_images_version }}", PLATFORM["platform_images_version"]))


def load_testbed_definitions():
    """REF, KIND, CONTEXT and BASE of every testbed image definition, as build.sh loads them."""
    script = (f'. {ROOT}/testbed/lib/common.sh; . {ROOT}/testbed/images/build.sh; '
              'for d in $(image_defs); do ( _image_load "$d"; echo "$(basename "$d" .sh) $REF $KIND ${CONTEXT:--} ${BASE:--}" ); done')
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return {name: {"ref": ref, "kind": kind, "context": ctx, "base": base}
            for name, ref, kind, ctx, base in (line.split() for line in proc.stdout.splitlines())}


def test_every_own_image_is_named_from_the_registry_and_the_version():
    for key in PROVIDED:
        assert PLATFORM["platform_images"][key] == f"{{{{ platform_registry }}}}/{key}:{{{{ platform_images_version }}}}", key


def test_the_images_version_is_the_collections():
    galaxy = yaml.safe_load(open(os.path.join(ROOT, "galaxy.yml")))
    assert PLATFORM["platform_images_version"] == galaxy["version"]


def test_the_testbed_runs_the_same_builds():
    defs = load_testbed_definitions()
    by_ref = {d["ref"]: d for d in defs.values()}
    for key, name in PROVIDED.items():
        d = by_ref.get(own_ref(key))
        assert d, f"no testbed image definition carries {own_ref(key)}"
        assert d["kind"] == "dockerfile" and d["context"] == DEFINITIONS[name]["context"], (key, d)
        base = defs[d["base"]]["ref"]
        dockerfile = open(os.path.join(ROOT, DEFINITIONS[name]["context"], "Dockerfile")).read()
        assert re.findall(r"^FROM\s+(\S+)", dockerfile, re.M) == [base], (key, base)


# The upstream images the testbed cannot build or run, and why; every other
# platform_images entry runs on the testbed under its production reference.
NOT_ON_THE_TESTBED = {
    "kube_state_metrics": "the Go module proxy refuses k8s.io/kube-state-metrics/v2",
    "grafana": "AGPL: not built from its Go module",
}


def test_the_testbed_runs_the_production_references_of_upstream_images():
    """What the testbed runs is the version production ships: each upstream
    image of platform_images has a testbed definition under that exact
    reference (the observability versions come from testbed/versions.env)."""
    refs = {d["ref"] for d in load_testbed_definitions().values()}
    for key, ref in PLATFORM["platform_images"].items():
        if key in PROVIDED or key in NOT_ON_THE_TESTBED:
            continue
        assert normalized(ref) in refs, f"platform_images.{key} = {ref}: no testbed image definition builds it"


def normalized(ref):
    """The fully qualified reference a container runtime looks up, by build.sh's own norm_ref."""
    script = f'. {ROOT}/testbed/lib/common.sh; . {ROOT}/testbed/images/build.sh; norm_ref "$1"'
    return subprocess.run(["bash", "-c", script, "-", ref], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_each_dockerfile_runs_as_non_root_with_labels(name):
    dockerfile = open(os.path.join(ROOT, DEFINITIONS[name]["context"], "Dockerfile")).read()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    for label in ("title", "description", "version", "licenses", "base.name"):
        assert f"org.opencontainers.image.{label}=" in dockerfile, label
    assert re.search(r"^ARG VERSION=", dockerfile, re.M)
    # Everything the image runs is installed at build time from Debian (and
    # postgres' Patroni by pip, at pinned hashes): no download tool runs in a
    # RUN step, no remote ADD.
    assert not re.search(r"^(ADD|COPY)\s+https?://", dockerfile, re.M)
    assert not re.search(r"(curl|wget)\s+[^|]*https?://", dockerfile)


def test_the_postgres_image_is_made_for_the_postgres_role():
    """images/postgres: the user the StatefulSet runs as owns the data (created
    before the packages, so they take it); no cluster of the package's own in
    the image; pgBackRest from Debian; Patroni from PyPI, in a virtualenv of
    its own, exactly the files patroni-requirements.txt pins (not Debian's)."""
    dockerfile = open(os.path.join(ROOT, DEFINITIONS["postgres"]["context"], "Dockerfile")).read()
    uid = yaml.safe_load(open(os.path.join(ROOT, "roles", "postgres", "defaults", "main.yml")))["postgres_run_as_user"]
    assert re.findall(r"^USER\s+(\S+)", dockerfile, re.M)[-1] in (str(uid), f"{uid}:{uid}")
    useradd = re.search(rf"useradd [^&]*--uid {uid} --gid {uid} [^&]* postgres\b", dockerfile)
    no_cluster = dockerfile.find("create_main_cluster = false")
    server = re.search(r"install -y --no-install-recommends\s*\\?\s*postgresql-15\b", dockerfile)
    assert useradd and 0 <= no_cluster and server and useradd.start() < no_cluster < server.start()
    assert re.search(rf"groupadd [^&]*--gid {uid} postgres\b", dockerfile)
    installed = " ".join(re.findall(r"apt-get install -y --no-install-recommends((?:\s+\\\n|\s+[a-z0-9.+-]+)+)", dockerfile))
    packages = set(installed.replace("\\", " ").split())
    assert {"postgresql-15", "pgbackrest", "locales", "tzdata", "python3", "python3-venv"} <= packages, packages
    assert not {"patroni", "python3-kubernetes"} & packages, packages
    assert re.search(r"^COPY patroni-requirements.txt /tmp/patroni-requirements.txt$", dockerfile, re.M)
    assert re.search(r"python3 -m venv /opt/patroni\b", dockerfile)
    assert re.search(r"/opt/patroni/bin/pip install [^&]*--require-hashes --no-deps[^&]*-r /tmp/patroni-requirements.txt",
                     dockerfile)
    # A proxy's CA bundle, when the build gets one, is a build secret of that
    # step: mounted for it, never copied into a layer or named in ENV.
    assert re.search(r"^RUN --mount=type=secret,id=ca-bundle \\$", dockerfile, re.M)
    assert re.search(r"--cert /run/secrets/ca-bundle", dockerfile)
    assert not re.search(r"^(COPY|ADD|ENV)\b.*ca-bundle", dockerfile, re.M)
    assert re.search(r'^ENTRYPOINT \["docker-entrypoint.sh"\]', dockerfile, re.M)
    assert re.search(r"^COPY\b.* docker-entrypoint.sh /usr/local/bin/", dockerfile, re.M)


def test_patroni_and_everything_it_pulls_in_are_pinned_with_hashes():
    """Every requirement of patroni-requirements.txt is name==version with at
    least one sha256; Patroni is a 4.x release, psycopg the control node's."""
    text = open(os.path.join(ROOT, "images", "postgres", "patroni-requirements.txt")).read()
    entries = re.split(r"\n(?=[A-Za-z])", re.sub(r"^#.*\n", "", text, flags=re.M).strip())
    pins = {}
    for entry in entries:
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n", entry)
        assert match and re.search(r"--hash=sha256:[0-9a-f]{64}", entry), entry[:200]
        pins[match.group(1).lower()] = match.group(2)
    assert re.match(r"^4\.\d+\.\d+$", pins["patroni"])
    control = open(os.path.join(ROOT, "requirements.txt")).read()
    assert f"psycopg[binary]=={pins['psycopg']}" in control
    wanted = open(os.path.join(ROOT, "images", "postgres", "patroni-requirements.in")).read()
    assert f"patroni[kubernetes]=={pins['patroni']}" in wanted and f"psycopg=={pins['psycopg']}" in wanted


def test_the_entrypoint_starts_patroni_with_passwords_from_files(tmp_path):
    """`patroni` as the command: Patroni with /etc/patroni/patroni.yml (or the
    file given), each PATRONI_<USER>_PASSWORD read from its _FILE; both set fails."""
    entrypoint = os.path.join(ROOT, "images", "postgres", "docker-entrypoint.sh")
    # Stand-ins on PATH: patroni prints what it was given, id says the
    # image's user (the root branch, which drops to it, stays out of this).
    for name, script in (("patroni", 'echo "args: $*"; env | grep ^PATRONI_ | sort'), ("id", "echo 999")):
        stub = tmp_path / name
        stub.write_text(f"#!/bin/bash\n{script}\n")
        stub.chmod(0o755)
    secret = tmp_path / "superuser"
    secret.write_text("s3cret\n")
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "PATRONI_SUPERUSER_PASSWORD_FILE": str(secret),
           "PATRONI_REPLICATION_PASSWORD": "direct"}
    proc = subprocess.run(["bash", entrypoint, "patroni"], env=env, capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["args: /etc/patroni/patroni.yml", "PATRONI_REPLICATION_PASSWORD=direct",
                                        "PATRONI_SUPERUSER_PASSWORD=s3cret"]
    proc = subprocess.run(["bash", entrypoint, "patroni", "/config/patroni.yml"], env={"PATH": env["PATH"]},
                          capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["args: /config/patroni.yml"]
    proc = subprocess.run(["bash", entrypoint, "patroni"], env={**env, "PATRONI_SUPERUSER_PASSWORD": "x"},
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "both PATRONI_SUPERUSER_PASSWORD and PATRONI_SUPERUSER_PASSWORD_FILE" in proc.stderr


def test_the_artifact_ships_the_dockerfiles():
    ignored = yaml.safe_load(open(os.path.join(ROOT, "galaxy.yml")))["build_ignore"]
    for d in DEFINITIONS.values():
        top = d["context"].split("/")[0]
        assert top not in ignored and d["context"] not in ignored, d["context"]


def test_a_pinned_platform_images_file_deploys_those_digests(tmp_path):
    """platform-images.yml as playbooks/images.yml writes it (name:tag@sha256:...), put in the inventory."""
    digest = "sha256:" + "ab" * 32
    images = {key: own_ref(key) for key in PLATFORM["platform_images"] if key in PROVIDED}
    images.update({k: v for k, v in PLATFORM["platform_images"].items() if k not in PROVIDED})
    images["auth"] += "@" + digest
    images["toolbox"] += "@" + digest
    images["postgres"] += "@" + digest
    proc = run_ansible("ansible-playbook", "playbooks/render.yml", "-i", "inventories/vm",
                       "-e", f"platform_render_dir={tmp_path}", "-e", json.dumps({"platform_images": images}),
                       check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    used = set()
    for path in glob.glob(f"{tmp_path}/*/*.yaml"):
        for doc in yaml.safe_load_all(open(path)):
            used.update(re.findall(r"image: (\S+)", yaml.safe_dump(doc or {})))
    assert images["auth"] in used and images["toolbox"] in used and images["postgres"] in used
    assert own_ref("auth") not in used and own_ref("frontend") in used
