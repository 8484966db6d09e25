"""The backups role without a cluster: its manifests rendered and validated
against the Kubernetes schema, its variables documented, the restore
playbook refusing bad input before it contacts anything."""
import os
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLE = os.path.join(ROOT, "roles", "backups")
FILES = os.path.join(ROLE, "files")
VENV_BIN = os.path.dirname(sys.executable)
# A filled vault: inventories/local loads the example, whose placeholders the
# platform checks refuse before any cluster is reached.
VAULT = ["-e", "@" + os.path.join(ROOT, "tests", "static", "data", "vault.test-values.yml")]
TARGET = yaml.safe_load(open(os.path.join(ROOT, "roles/k3s/defaults/main.yml")))[
    "k3s_version"].lstrip("v").rsplit(".", 1)[0]

RENDER_PLAY = """
- name: Render the backups role
  hosts: localhost
  gather_facts: false
  vars:
    platform_render: true
  roles:
    - role: superkubernetex.platform.backups
  post_tasks:
    # As the instance role does for every tenant whose database is kept.
    - name: Render the backup CronJob of each tenant
      ansible.builtin.include_role:
        name: superkubernetex.platform.backups
        tasks_from: tenant.yml
      vars:
        instance_spec: "{{{{ __tenant }}}}"
      loop: "{{{{ platform_instances_resolved }}}}"
      loop_control:
        loop_var: __tenant

    - name: Render a restore Job as playbooks/restore.yml starts it
      ansible.builtin.template:
        src: {role}/templates/job.yaml.j2
        dest: "{{{{ platform_render_dir }}}}/backups/job.yaml"
        mode: "0644"
      vars:
        __backups_job_name: backup-restore-run-instance2-20261127120000
        __backups_job_args: [restore, --database, instance2_db, --backup, latest, --swap]
        __backups_job_postgres: true
"""


def ansible(*args, check=True):
    proc = subprocess.run([os.path.join(VENV_BIN, args[0]), *args[1:]], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout[-5000:]}")
    return proc


def render(tmp_path, *extra):
    play = tmp_path / "render.yml"
    play.write_text(RENDER_PLAY.format(role=ROLE))
    # The file lookups of job.yaml.j2 resolve next to the playbook.
    os.symlink(FILES, tmp_path / "files")
    out = tmp_path / "out"
    (out / "backups").mkdir(parents=True)
    proc = ansible("ansible-playbook", "-i", "inventories/local", str(play),
                   "-e", f"platform_render_dir={out}", *extra)
    # The role's own files, and the CronJob each tenant's folder gets.
    docs = {}
    for folder in sorted(os.listdir(out)):
        for name in sorted(os.listdir(out / folder)):
            docs.setdefault(name, []).extend(d for d in yaml.safe_load_all(open(out / folder / name)) if d)
    return proc.stdout, docs


@pytest.fixture(scope="module")
def rendered_full(tmp_path_factory):
    return render(tmp_path_factory.mktemp("full"),
                  "-e", "backups_s3_enabled=true", "-e", "backups_s3_endpoint=https://s3.example.net",
                  "-e", "backups_s3_bucket=skx-backups", "-e", "backups_s3_access_key_id=AKIAREALKEY",
                  "-e", "backups_s3_secret_access_key=real-secret-value",
                  "-e", "backups_snapshot_class=csi-snapclass", "-e", "backups_time_zone=Europe/Paris")


def all_docs(docs):
    return [(name, d) for name, ds in docs.items() for d in ds]


def test_manifests_are_valid_kubernetes(rendered_full):
    _, docs = rendered_full
    assert set(docs) == {"persistentvolumeclaim.yaml", "configmap.yaml", "cronjob.yaml", "secret.yaml",
                         "serviceaccount.yaml", "role.yaml", "rolebinding.yaml", "snapshot-cronjob.yaml",
                         "job.yaml"}
    errors = []
    for name, doc in all_docs(docs):
        try:
            kubernetes_validate.validate(doc, TARGET, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{name} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_one_cronjob_per_database_plus_redis_and_verification(rendered_full):
    _, docs = rendered_full
    jobs = {d["metadata"]["name"]: d for d in docs["cronjob.yaml"]}
    assert sorted(jobs) == ["backup-instance1-db", "backup-instance2-db", "backup-instance3-db",
                            "backup-redis", "backup-superkube", "backup-verify"]
    for name, job in jobs.items():
        spec = job["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["timeZone"] == "Europe/Paris"
        assert spec["startingDeadlineSeconds"] == 3600
        assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 3600
        assert spec["jobTemplate"]["spec"]["backoffLimit"] == 1
        pod = spec["jobTemplate"]["spec"]["template"]
        assert pod["metadata"]["labels"]["superkubernetex.com/tier"] == "job"  # network policy
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert pod["spec"]["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        [container] = pod["spec"]["containers"]
        assert container["image"] == "ghcr.io/superkubernetex/toolbox:0.1.0"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
        assert "real-secret-value" not in yaml.safe_dump(job)
        # The package, as the tests run it: python3 -s -P -m skx_backup with
        # PYTHONPATH the directory the ConfigMap is mounted in; its result in
        # the termination message.
        assert container["command"][:5] == ["python3", "-s", "-P", "-m", "skx_backup"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["PYTHONPATH"] == "/opt/skx-backup"
        assert env["SKX_RESULT_FILE"] == container["terminationMessagePath"] == "/dev/termination-log"
        assert container["terminationMessagePolicy"] == "File"
        assert {"name": "scripts", "mountPath": "/opt/skx-backup/skx_backup", "readOnly": True} in container[
            "volumeMounts"]
    assert jobs["backup-instance2-db"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
        "command"][5:] == ["pg-dump", "--database", "instance2_db"]
    verify = jobs["backup-verify"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert verify["command"][5:] == ["verify-restore", "--database=instance1_db", "--database=instance2_db",
                                     "--database=instance3_db", "--database=superkube"]
    # The verification does not export; the dumps do, with credentials as files.
    assert not any(e["name"].startswith("SKX_S3") for e in verify["env"])
    dump = jobs["backup-superkube"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert {"name": "SKX_S3_BUCKET", "value": "skx-backups"} in dump["containers"][0]["env"]
    assert {v["name"] for v in dump["volumes"]} == {"backups", "scripts", "tmp", "postgres-superuser",
                                                    "s3-credentials"}
    redis = jobs["backup-redis"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert "redis-auth" in {v["name"] for v in redis["volumes"]}
    assert "postgres-superuser" not in {v["name"] for v in redis["volumes"]}


def test_the_configmap_ships_the_tested_package_verbatim(rendered_full):
    """Every module of the package is listed once in vars/main.yml (the
    ConfigMap and the checksum come from that list) and shipped as it is."""
    _, docs = rendered_full
    [cm] = docs["configmap.yaml"]
    listed = yaml.safe_load(open(os.path.join(ROLE, "vars", "main.yml")))["__backups_package_files"]
    package = os.path.join(FILES, "skx_backup")
    assert sorted(listed) == sorted(n for n in os.listdir(package) if n.endswith(".py"))
    assert sorted(cm["data"]) == sorted(listed)
    for name in listed:
        assert cm["data"][name].rstrip("\n") == open(os.path.join(package, name)).read().rstrip("\n")


def test_secret_has_placeholders_in_render_mode(rendered_full):
    _, docs = rendered_full
    [secret] = docs["secret.yaml"]
    assert secret["stringData"] == {"access_key_id": "CHANGE_ME", "secret_access_key": "CHANGE_ME"}


def test_snapshot_job_calls_the_api_with_least_privilege(rendered_full):
    _, docs = rendered_full
    [cron] = docs["snapshot-cronjob.yaml"]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "backup-snapshots" and pod["automountServiceAccountToken"] is True
    assert pod["containers"][0]["command"][5:] == [
        "snapshots", "--snapshot-class", "csi-snapclass", "--pvc=skx-data/data-postgres-0",
        "--pvc=skx-data/data-redis-0", "--pvc=skx-instance1/instance-files",
        "--pvc=skx-instance2/instance-files", "--pvc=skx-instance3/instance-files"]
    roles = {r["metadata"]["namespace"]: r["rules"] for r in docs["role.yaml"]}
    assert sorted(roles) == ["skx-data", "skx-instance1", "skx-instance2", "skx-instance3"]
    for rules in roles.values():
        assert rules == [{"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshots"],
                          "verbs": ["create", "get", "list", "delete"]}]


def test_restore_job_reads_the_volume_only_and_never_retries(rendered_full):
    _, docs = rendered_full
    [job] = docs["job.yaml"]
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"][5:] == ["restore", "--database", "instance2_db", "--backup",
                                                  "latest", "--swap"]
    [backups] = [v for v in pod["volumes"] if v["name"] == "backups"]
    assert backups["persistentVolumeClaim"]["readOnly"] is True


def test_defaults_render_no_secret_and_skip_snapshots_with_a_message(tmp_path):
    out, docs = render(tmp_path)
    assert "secret.yaml" not in docs and "snapshot-cronjob.yaml" not in docs
    assert "PVC snapshots are skipped" in out


def test_defaults_and_argument_specs_agree():
    defaults = yaml.safe_load(open(os.path.join(ROLE, "defaults", "main.yml")))
    specs = yaml.safe_load(open(os.path.join(ROLE, "meta", "argument_specs.yml")))["argument_specs"]
    options = specs["main"]["options"]
    assert sorted(defaults) == sorted(options)
    for name, value in defaults.items():
        assert options[name].get("default") == value, name
        assert options[name]["description"] and options[name]["description"] != name, name
    for name, option in specs["restore"]["options"].items():
        assert option == options[name]
    assert options["backups_s3_secret_access_key"]["no_log"] is True


@pytest.mark.parametrize("extra, message", [
    (["-e", "skx_restore_instance=instance9"],
     "skx_restore_instance (backups_restore_instance) must be one of ['instance1', 'instance2', 'instance3', "
     "'superkube'], got 'instance9'"),
    ([], "got ''"),
    (["-e", "skx_restore_instance=instance2", "-e", "skx_restore_backup=instance1_db-20261127T023000Z.dump"],
     "skx_restore_backup (backups_restore_backup) must be 'latest' or a backup of instance2_db"),
    (["-e", "skx_restore_instance=instance2", "-e", "skx_restore_backup=../../etc/passwd"],
     "skx_restore_backup (backups_restore_backup) must be 'latest' or a backup of instance2_db"),
])
def test_restore_refuses_bad_input_before_contacting_the_cluster(extra, message):
    proc = ansible("ansible-playbook", "-i", "inventories/local", *VAULT, "playbooks/restore.yml", *extra, check=False)
    assert proc.returncode != 0
    flat = " ".join(proc.stdout.split())
    assert message in flat, proc.stdout[-3000:]
    assert "Check the backup in the cluster" not in proc.stdout
    assert "Start the Job of the restore step" not in proc.stdout


def test_restore_playbook_syntax():
    ansible("ansible-playbook", "-i", "inventories/local", "--syntax-check", "playbooks/restore.yml")


def closed_kubeconfig(tmp_path):
    """A kubeconfig whose API server does not listen: the apply path runs up
    to the first request, so its templating is exercised without a cluster."""
    from lib.servers import free_port

    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": f"https://127.0.0.1:{free_port()}",
                                                      "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}],
        "users": [{"name": "nobody", "user": {"token": "none"}}]}))
    return path


def only_connection_errors(out, task):
    section = out[out.index(task):]
    assert "Connection refused" in section or "Max retries exceeded" in section, section[:3000]
    for sign in ("AnsibleTemplateError", "not found in search path", "is undefined", "AnsibleUndefinedVariable"):
        assert sign not in out, out[-3000:]


def test_restore_gets_as_far_as_the_cluster_with_valid_input(tmp_path):
    """Valid input passes the preflight and the check Job's manifest renders
    through kubernetes.core.k8s; the run stops only at the closed API."""
    proc = ansible("ansible-playbook", "-i", "inventories/local", *VAULT, "playbooks/restore.yml", "--check",
                   "-e", "skx_restore_instance=instance2", "-e", f"platform_kubeconfig={closed_kubeconfig(tmp_path)}",
                   check=False)
    assert proc.returncode != 0
    only_connection_errors(proc.stdout, "TASK [superkubernetex.platform.backups : Start the Job of the restore step plan]")


def test_backup_manifests_render_through_the_manifests_module(tmp_path):
    """The role's one apply task renders every backup manifest; in render mode
    the manifests module writes them as files, one Kubernetes object each."""
    play = tmp_path / "apply.yml"
    play.write_text("- name: Apply the backups role\n  hosts: localhost\n  gather_facts: false\n"
                    "  roles:\n    - role: superkubernetex.platform.backups\n")
    out = tmp_path / "out"
    proc = ansible("ansible-playbook", "-i", "inventories/local", *VAULT, str(play),
                   "-e", "platform_render=true", "-e", f"platform_render_dir={out}", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    for name, kind in (("persistentvolumeclaim.yaml", "PersistentVolumeClaim"),
                       ("configmap.yaml", "ConfigMap"), ("cronjob.yaml", "CronJob")):
        docs = [d for d in yaml.safe_load_all((out / "backups" / name).read_text()) if d]
        assert docs and {d["kind"] for d in docs} == {kind}, (name, docs)
