"""The collection as users install it: built with `ansible-galaxy collection
build` from this checkout, installed with `ansible-galaxy collection install`
into an empty collections path, and run by FQCN from a directory outside the
checkout, without its ansible.cfg (tests/static/test_collection_artifact.py,
tests/testbed/test_artifact_check.py)."""
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def run(args, cwd, env=None, check=True, timeout=1800):
    """Run a command of the venv in `cwd`, with no ansible.cfg of the checkout
    (ANSIBLE_CONFIG unset, cwd outside it) and colours off."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    clean.update(ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", **(env or {}))
    cmd = [os.path.join(VENV_BIN, args[0]), *args[1:]]
    proc = subprocess.run(cmd, cwd=cwd, env=clean, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def install(workdir):
    """Build the artifact, install it into workdir/collections; return the
    environment that makes ansible-playbook find it (and only it: the
    collections it depends on come with the ansible package)."""
    dist, collections = os.path.join(workdir, "dist"), os.path.join(workdir, "collections")
    os.makedirs(dist)
    run(["ansible-galaxy", "collection", "build", "--output-path", dist, ROOT], cwd=workdir)
    [tarball] = os.listdir(dist)
    # --no-deps: the dependencies (galaxy.yml) are in the ansible bundle, and
    # Galaxy may be out of reach.
    run(["ansible-galaxy", "collection", "install", "--no-deps", "-p", collections,
         os.path.join(dist, tarball)], cwd=workdir)
    return {"ANSIBLE_COLLECTIONS_PATH": collections}


def copy_inventory(name, workdir):
    """The checkout's inventories/<name>, copied outside the checkout."""
    dest = os.path.join(workdir, "inventories", name)
    shutil.copytree(os.path.join(ROOT, "inventories", name), dest)
    return dest
