"""A run ends with a warning while the backups stay on the cluster they protect.

playbooks/render.yml runs the same plays as site.yml without a cluster: the
production inventory as shipped (no S3 bucket) must end with the warning
naming every setting that moves a copy off the cluster; with the export
filled in, or with backups_offsite_warning: false, the warning task is
reached and skipped. (On the testbed, which warns as a production inventory
would, tests/testbed/test_preview.py checks it in a real run.) docs/backups.md, "Keeping a copy off
the cluster".
"""
import json
import os
import re

from static_support import ROOT, run_ansible

TASK = "TASK [Warn that the backups live on the same cluster as the data]"
LAST_APPLY = "TASK [Apply every object the layers queued"
WARNING = "The backups are kept on a volume of this cluster only (skx-data/backups), with the data they protect"
# Every variable the operator may have to set, as the warning must name it.
NAMED = ["backups_s3_enabled", "backups_s3_endpoint", "backups_s3_bucket", "backups_s3_access_key_id",
         "backups_s3_secret_access_key", "vault_backups_s3_access_key_id", "vault_backups_s3_secret_access_key",
         "backups_offsite_warning"]
S3 = {"backups_s3_enabled": True, "backups_s3_endpoint": "https://s3.example.net", "backups_s3_bucket": "skx-backups",
      "vault_backups_s3_access_key_id": "AKIAIOSFODNN7EXAMPLE",
      "vault_backups_s3_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


def flat(text):
    return " ".join(text.split())


def render(tmp_path, inventory, *extra):
    """playbooks/render.yml, backups step only (the warning is tagged always)."""
    proc = run_ansible("ansible-playbook", "playbooks/render.yml", "-i", inventory, "--tags", "backups",
                       "-e", f"platform_render_dir={tmp_path}", *extra,
                       # Render mode reads no cluster; a missing kubeconfig makes sure of it.
                       env={"KUBECONFIG": str(tmp_path / "no-such-kubeconfig")})
    return proc, flat(proc.stdout), flat(proc.stderr)


def the_warning(stderr):
    """The warning's text, from its [WARNING]: to the next one or the end."""
    match = re.search(r"\[WARNING\]: (The backups are kept on a volume of this cluster only.*?)(?= \[WARNING\]:|$)",
                      stderr)
    return match.group(1) if match else None


def test_vm_as_shipped_ends_with_the_warning_naming_every_setting(rendered_run):
    """The session's full render of inventories/vm, as shipped."""
    _, proc = rendered_run
    stdout, stderr = flat(proc.stdout), flat(proc.stderr)
    warning = the_warning(stderr)
    assert warning and warning.startswith(WARNING), stderr[-3000:]
    missing = [name for name in NAMED if not re.search(rf"\b{name}\b", warning)]
    assert not missing, f"the warning does not name {missing}: {warning}"
    assert 'docs/backups.md, "Keeping a copy off the cluster"' in warning
    # At the end of the run: after the last batch of objects was sent.
    assert stdout.index(TASK) > stdout.index(LAST_APPLY)
    # docs/backups.md quotes it word for word.
    with open(os.path.join(ROOT, "docs", "backups.md")) as handle:
        quoted = re.search(r"ends with this warning.*?```\n(.*?)```", handle.read(), re.S)
    assert quoted and flat(quoted.group(1)) == warning, "docs/backups.md quotes another warning"


def test_existing_as_shipped_warns_too(tmp_path):
    proc, stdout, stderr = render(tmp_path, "inventories/existing")
    assert TASK in stdout
    assert (the_warning(stderr) or "").startswith(WARNING), stderr[-3000:]


def test_vm_with_the_export_filled_in_does_not_warn(tmp_path):
    proc, stdout, stderr = render(tmp_path, "inventories/vm", "-e", json.dumps(S3))
    assert TASK in stdout, "the run stopped before the warning task"
    assert "Keeping a copy off the cluster" not in stdout + stderr
    # The export is on: its credentials Secret is rendered (placeholders).
    assert (tmp_path / "backups" / "secret.yaml").is_file()
    assert S3["vault_backups_s3_secret_access_key"] not in stdout + stderr


def test_the_opt_out_silences_it(tmp_path):
    """backups_offsite_warning: false, for an inventory that keeps its
    backups on the cluster on purpose."""
    proc, stdout, stderr = render(tmp_path, "inventories/vm", "-e", "backups_offsite_warning=false")
    assert TASK in stdout, "the run stopped before the warning task"
    assert "Keeping a copy off the cluster" not in stdout + stderr
    assert not (tmp_path / "backups" / "secret.yaml").exists()
