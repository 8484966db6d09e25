"""playbooks/images.yml against a real OCI registry on loopback.

The registry is distribution v3 (built from its Go module by
tests/lib/monitoring/install-tools.sh), with a password (htpasswd). The
Dockerfiles' base image, docker.io/library/debian:12-slim, cannot be pulled
here: the testbed's definition of it (testbed/images/defs/debian.sh, Debian
packages through mmdebstrap) is built and loaded into buildah under that
name, as `buildah pull` would on a connected machine.

Proves: the images are built from the collection's Dockerfiles and pushed;
what the registry serves is, by digest, what platform-images.yml pins, and
pulling it back by digest gives the image that was built; a second run
changes nothing; the archive output holds the same images for an airgapped
k3s; bad settings are refused before anything is built; the registry
password never reaches the output."""
import base64
import json
import os
import re
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import warnings

import pytest
import yaml

from lib.ansible_env import playbook_env
from lib.servers import free_port

with warnings.catch_warnings():  # bcrypt for the registry's htpasswd; the module stays until Python 3.13
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
INSTALL_TOOLS = os.path.join(ROOT, "tests", "lib", "monitoring", "install-tools.sh")
REGISTRY_BIN = os.path.join(os.environ.get("SKX_BIN", "/var/cache/skx/bin"), "registry")
USER, PASSWORD = "skx-ci", "r3gistry-Passw0rd-not-in-logs"
OWN = ("frontend", "auth", "payment", "instance", "toolbox", "postgres")
PLATFORM = yaml.safe_load(open(os.path.join(ROOT, "roles", "platform", "defaults", "main.yml")))
VERSION = PLATFORM["platform_images_version"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="buildah's chroot isolation and the base image build need root")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def base_image():
    """docker.io/library/debian:12-slim in buildah's storage, from the testbed's definition."""
    assert run(["buildah", "--version"]).returncode == 0, "buildah is missing: ./install.sh installs it"
    script = (f'. {ROOT}/testbed/lib/common.sh; . {ROOT}/testbed/images/build.sh; '
              f'build_images {ROOT}/testbed/images/defs/debian.sh >&2; image_tar {ROOT}/testbed/images/defs/debian.sh')
    proc = run(["bash", "-c", script], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    archive = proc.stdout.strip().splitlines()[-1]
    pulled = run(["buildah", "pull", "--quiet", f"oci-archive:{archive}"], timeout=300)
    assert pulled.returncode == 0, pulled.stderr
    tagged = run(["buildah", "tag", pulled.stdout.strip(), "docker.io/library/debian:12-slim"])
    assert tagged.returncode == 0, tagged.stderr


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    proc = run(["bash", INSTALL_TOOLS, "registry"], timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    work = tmp_path_factory.mktemp("registry")
    (work / "htpasswd").write_text(f"{USER}:{crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1024))}\n")
    port = free_port()
    (work / "config.yml").write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(work / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "auth": {"htpasswd": {"realm": "test", "path": str(work / "htpasswd")}}}))
    server = subprocess.Popen([REGISTRY_BIN, "serve", str(work / "config.yml")],
                              stdout=open(work / "log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(50):  # bounded: 10 s
        try:
            urllib.request.urlopen(url + "/v2/", timeout=1)
        except urllib.error.HTTPError as e:
            if e.code == 401:
                break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        server.kill()
        pytest.fail("the registry did not start: " + (work / "log").read_text()[-2000:])
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


def images_playbook(out_dir, *extra, password=PASSWORD):
    cmd = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "playbooks/images.yml", "-i", "inventories/testbed",
           "-e", f"images_output_dir={out_dir}", *extra]
    if password is not None:
        # From a file, as the vault gives it: never on the command line.
        secret = os.path.join(out_dir + ".vars.json")
        with open(secret, "w") as f:
            json.dump({"images_registry_username": USER, "images_registry_password": password}, f)
        cmd += ["-e", f"@{secret}"]
    start = time.monotonic()
    proc = run(cmd, cwd=ROOT, env=playbook_env(), timeout=1800)
    proc.seconds = time.monotonic() - start
    return proc


def recap(proc):
    m = re.search(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+).*failed=(\d+)", proc.stdout, re.M)
    assert m, proc.stdout[-3000:]
    return {"ok": int(m[1]), "changed": int(m[2]), "failed": int(m[3])}


def registry_digest(registry, repo, tag):
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}", method="HEAD", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        "Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["Docker-Content-Digest"]


@pytest.fixture(scope="module")
def pushed(base_image, registry, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("push") / "images")
    args = ("-e", f"platform_registry={registry}/superkubernetex", "-e", "images_registry_tls_verify=false")
    first = images_playbook(out, *args)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    second = images_playbook(out, *args)
    print(f"\nimages.yml push: first run {first.seconds:.1f} s, {recap(first)}; "
          f"second run {second.seconds:.1f} s, {recap(second)}")
    yield {"out": out, "first": first, "second": second,
           "pinned": yaml.safe_load(open(os.path.join(out, "platform-images.yml")))["platform_images"]}
    # The tags of this run's registry (a new port each run) leave buildah's storage.
    for key in OWN:
        run(["buildah", "rmi", f"{registry}/superkubernetex/{key}:{VERSION}"])


def test_every_own_image_is_pinned_by_the_digest_the_registry_serves(pushed, registry):
    pinned = pushed["pinned"]
    for key in OWN:
        ref, _, digest = pinned[key].partition("@")
        assert ref == f"{registry}/superkubernetex/{key}:{VERSION}"
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), pinned[key]
        name, tag = ref.split("/", 1)[1].rsplit(":", 1)
        assert registry_digest(registry, name, tag) == digest, key
    # One image for the four services, one for the toolbox, one for PostgreSQL.
    assert len({pinned[k].split("@")[1] for k in ("frontend", "auth", "payment", "instance")}) == 1
    assert len({pinned[k].split("@")[1] for k in ("frontend", "toolbox", "postgres")}) == 3
    # The images this collection does not build keep their reference.
    assert pinned["redis"] == PLATFORM["platform_images"]["redis"]


def test_pulled_back_by_digest_is_the_image_that_was_built(pushed, registry, tmp_path):
    state = json.load(open(os.path.join(pushed["out"], "images.json")))
    storage = ["--root", str(tmp_path / "storage"), "--runroot", str(tmp_path / "run")]
    for key in ("auth", "toolbox", "postgres"):
        ref = pushed["pinned"][key]
        pulled = run(["buildah", *storage, "pull", "--quiet", "--tls-verify=false",
                      "--creds", f"{USER}:{PASSWORD}", ref], timeout=300)
        assert pulled.returncode == 0, pulled.stderr
        assert "sha256:" + pulled.stdout.strip() == state[ref.split("@")[0]]["id"], key
        config = json.loads(run(["buildah", *storage, "inspect", "--type", "image", ref]).stdout)["OCIv1"]["config"]
        assert config["User"] not in ("", "0", "root") and not config["User"].startswith("0:"), (key, config["User"])
        assert config["Labels"]["org.opencontainers.image.version"] == VERSION
    run(["buildah", *storage, "rmi", "--all", "--force"])


def test_a_second_run_sends_nothing_and_changes_nothing(pushed):
    assert recap(pushed["first"])["changed"] > 0
    assert recap(pushed["second"])["changed"] == 0, pushed["second"].stdout[-3000:]


def test_the_registry_password_never_reaches_the_output(pushed):
    for proc in (pushed["first"], pushed["second"]):
        assert PASSWORD not in proc.stdout + proc.stderr
    assert not os.path.exists(os.path.join(pushed["out"], ".auth.json"))
    assert PASSWORD not in open(os.path.join(pushed["out"], "images.json")).read()


def test_a_wrong_password_stops_at_the_login_without_printing_it(base_image, registry, tmp_path):
    proc = images_playbook(str(tmp_path / "images"), "-e", f"platform_registry={registry}/superkubernetex",
                           "-e", "images_registry_tls_verify=false", password="wr0ng-Password-not-in-logs")
    assert proc.returncode != 0
    assert "Log in to" in proc.stdout and "wr0ng-Password" not in proc.stdout + proc.stderr
    assert not os.path.exists(tmp_path / "images" / "images.json")


def test_archives_hold_the_images_for_an_airgapped_k3s(pushed, tmp_path):
    out = str(tmp_path / "images")
    proc = images_playbook(out, "-e", "images_output=archive", password=None)
    assert proc.returncode == 0, proc.stdout[-4000:]
    pinned = yaml.safe_load(open(os.path.join(out, "platform-images.yml")))["platform_images"]
    for key in OWN:
        with tarfile.open(os.path.join(out, f"{key}.tar")) as tar:
            by_tag, by_digest = json.load(tar.extractfile("index.json"))["manifests"]
            assert tar.extractfile(f"blobs/sha256/{by_tag['digest'].split(':')[1]}").read()
        ref, digest = pinned[key].split("@")
        assert by_tag["annotations"]["org.opencontainers.image.ref.name"] == ref == f"ghcr.io/superkubernetex/{key}:{VERSION}"
        assert by_tag["digest"] == by_digest["digest"] == digest
        # The same manifest named by digest: what a pinned reference finds
        # once k3s (or ctr) has imported the archive.
        assert by_digest["annotations"] == {"io.containerd.image.name": f"ghcr.io/superkubernetex/{key}@{digest}"}
    again = images_playbook(out, "-e", "images_output=archive", password=None)
    assert recap(again)["changed"] == 0, again.stdout[-3000:]


@pytest.mark.parametrize("setting, value, named", [
    ("images_output", "docker", "value of images_output must be one of: push, archive, got: docker"),
    ("platform_images_version", "1.0 beta", "platform_images_version an image tag such as 1.2.0"),
    ("images_definitions", '{"apps": {"context": "nowhere", "provides": ["frontend"]}}', "images_definitions.apps needs context"),
    ("images_definitions", '{"apps": {"context": "apps", "provides": ["webshop"]}}', "images_definitions.apps needs context"),
])
def test_bad_settings_are_refused_before_any_build(setting, value, named, tmp_path):
    value_arg = json.dumps({setting: json.loads(value) if value.startswith("{") else value})
    proc = images_playbook(str(tmp_path / "images"), "-e", value_arg, password=None)
    assert proc.returncode != 0
    assert named in proc.stdout, proc.stdout[-3000:]
    assert "Build apps" not in proc.stdout and not os.path.exists(tmp_path / "images" / "images.json")
