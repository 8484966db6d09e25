"""The Galaxy artifact works as the checkout does (issue 19): built and
installed into an empty collections path, its FQCN render playbook run from
a directory outside the checkout, with a copied inventory and no ansible.cfg,
writes the same manifests as the checkout's render (the session's `rendered`
fixture), into the directory it runs from."""
import filecmp
import json
import os
import tarfile

from lib.artifact import ROOT, copy_inventory, install, run


def tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, files in os.walk(path) for f in files)


def test_the_installed_collection_renders_what_the_checkout_renders(tmp_path, rendered):
    env = install(str(tmp_path))
    project = tmp_path / "project"
    project.mkdir()
    inventory = copy_inventory("vm", str(project))
    run(["ansible-playbook", "superkubernetex.platform.render", "-i", inventory], cwd=str(project), env=env)
    # platform_render_dir's default is relative to where the run started.
    out = project / "build" / "manifests"
    assert tree(out) == tree(rendered) and len(tree(out)) > 50
    mismatch = [f for f in tree(out) if not filecmp.cmp(out / f, rendered / f, shallow=False)]
    assert mismatch == []


def test_the_artifact_holds_the_collection_and_none_of_the_test_harness(tmp_path):
    dist = tmp_path / "dist"
    run(["ansible-galaxy", "collection", "build", "--output-path", str(dist), ROOT], cwd=str(tmp_path))
    [tarball] = list(dist.iterdir())
    with tarfile.open(tarball) as t:
        names = t.getnames()
        top = {name.split("/")[0] for name in names}
        manifest = json.load(t.extractfile("MANIFEST.json"))
    # apps/ and images/: the Dockerfiles playbooks/images.yml builds from the installed collection.
    assert {"plugins", "roles", "playbooks", "meta", "docs", "inventories", "apps", "images"} <= top
    assert not top & {"tests", "testbed", "molecule", ".venv", ".collections", "build", ".ci",
                      "install.sh", "ansible.cfg", "pytest.ini"}
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "requirements.txt" in top
    assert set(manifest["collection_info"]["dependencies"]) == {
        "kubernetes.core", "community.postgresql", "community.crypto", "community.general"}
