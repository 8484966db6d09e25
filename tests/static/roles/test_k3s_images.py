"""The k3s role preloads the platform's own images without a registry: the
OCI archives playbooks/images.yml writes (images_output: archive) are
copied into each node's agent images folder, which k3s imports when it
starts, and k3s is restarted where an archive changed. Run on this machine
with the role's own preflight and image tasks against a temporary data
folder; k3s itself cannot be built here (the module proxy
refuses it), so the import by k3s is not run."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PLAYBOOK = """
- hosts: k3s_server
  gather_facts: false
  vars_files:
    - {root}/roles/k3s/defaults/main.yml
    - {root}/roles/k3s/vars/main.yml
  tasks:
    - ansible.builtin.import_tasks: {root}/roles/k3s/tasks/preflight.yml
    - ansible.builtin.import_tasks: {root}/roles/k3s/tasks/images.yml
      when: k3s_airgap_images_dir | length > 0
  handlers:
    # Stands for the role's handler, which restarts the k3s service.
    - name: Restart k3s
      ansible.builtin.copy:
        content: restarted
        dest: "{{{{ __k3s_data_dir }}}}/restarted"
        mode: "0644"
"""

def run(tmp_path, images_dir, *extra):
    data = tmp_path / "k3s"
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    k3s_server:\n      hosts:\n"
        "        node1: {ansible_connection: local}\n")
    (tmp_path / "play.yml").write_text(PLAYBOOK.format(root=ROOT))
    bindir = os.path.dirname(sys.executable)
    return subprocess.run(
        [os.path.join(bindir, "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml"),
         "-e", f"__k3s_data_dir={data}",
         "-e", f"k3s_airgap_images_dir={images_dir}",
         "-e", "ansible_python_interpreter=" + sys.executable, *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


def recap_changed(stdout):
    line = [x for x in stdout.splitlines() if x.startswith("node1 ")][-1]
    return int(line.split("changed=")[1].split()[0])


def test_archives_are_copied_once_and_k3s_restarted_only_when_one_changes(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("frontend", "postgres"):
        (images / f"{name}.tar").write_bytes(os.urandom(4096))
    (images / "images.json").write_text("{}")  # the images playbook's record: not an image
    agent = tmp_path / "k3s" / "agent" / "images"

    check = run(tmp_path, images, "--check")
    assert check.returncode == 0, check.stdout[-3000:]
    assert recap_changed(check.stdout) > 0 and not agent.exists()

    first = run(tmp_path, images)
    assert first.returncode == 0, first.stdout[-3000:]
    assert sorted(os.listdir(agent)) == ["frontend.tar", "postgres.tar"]
    assert (agent / "postgres.tar").read_bytes() == (images / "postgres.tar").read_bytes()
    assert (tmp_path / "k3s" / "restarted").exists()

    (tmp_path / "k3s" / "restarted").unlink()
    again = run(tmp_path, images)
    assert again.returncode == 0 and recap_changed(again.stdout) == 0, again.stdout[-3000:]
    assert not (tmp_path / "k3s" / "restarted").exists()

    (images / "postgres.tar").write_bytes(os.urandom(4096))
    changed = run(tmp_path, images)
    assert changed.returncode == 0, changed.stdout[-3000:]
    assert (agent / "postgres.tar").read_bytes() == (images / "postgres.tar").read_bytes()
    assert (tmp_path / "k3s" / "restarted").exists()


def test_a_folder_without_archives_is_refused_before_any_node_is_touched(tmp_path):
    empty = tmp_path / "nothing-here"
    proc = run(tmp_path, empty)
    assert proc.returncode != 0
    assert f"k3s_airgap_images_dir: no *.tar in {empty}" in proc.stdout, proc.stdout[-3000:]
    assert "images_output=archive" in proc.stdout
    assert not (tmp_path / "k3s").exists()
