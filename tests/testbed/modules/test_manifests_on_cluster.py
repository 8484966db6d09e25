"""superkubernetex.platform.manifests against the testbed's API: a batch is
created, a re-run changes nothing, a drift is found and shown, check mode
sends dry runs only (and does not send what cannot be dry-run), Secret values
appear nowhere, render mode writes the same templates to files."""
import base64
import json
import os
import subprocess
import uuid

import pytest

from lib.modrun import ROOT
from lib.testbed import KUBECONFIG

TEMPLATES = {
    "config.yaml.j2": """apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {{ test_namespace }}
data:
  greeting: {{ test_greeting | to_json }}
---
apiVersion: v1
kind: Secret
metadata:
  name: login
  namespace: {{ test_namespace }}
type: Opaque
stringData:
  password: {{ test_password | to_json }}
  user: app
""",
    "elsewhere.yaml.j2": """apiVersion: v1
kind: ConfigMap
metadata:
  name: elsewhere
  namespace: {{ test_namespace }}-not-there
data: {}
""",
}

PLAY = """
- name: Apply a component through the manifests module
  hosts: localhost
  gather_facts: false
  roles:
    - role: manifests_test
"""

TASKS = """
- name: Apply the test component
  superkubernetex.platform.manifests:
    component: test
    templates: "{{ test_templates }}"
  register: test_result
"""


@pytest.fixture
def role(tmp_path):
    base = tmp_path / "roles" / "manifests_test"
    (base / "templates").mkdir(parents=True)
    (base / "tasks").mkdir()
    for name, text in TEMPLATES.items():
        (base / "templates" / name).write_text(text)
    (base / "tasks" / "main.yml").write_text(TASKS)
    (tmp_path / "play.yml").write_text(PLAY)
    return tmp_path


def run(role, namespace, *args, greeting="hello", password="first-secret-value", templates=("config.yaml",),
        render=False):
    extra = {"test_namespace": namespace, "test_greeting": greeting, "test_password": password,
             "test_templates": list(templates), "platform_kubeconfig": KUBECONFIG, "platform_kube_context": None,
             "platform_field_manager": "superkubernetex-test", "platform_render": render,
             "platform_render_dir": str(role / "rendered")}
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_ROLES_PATH=str(role / "roles"),
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    proc = subprocess.run(["ansible-playbook", str(role / "play.yml"), "-e", json.dumps(extra), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    doc = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("\n{") + 1:])[0]
    [task] = [t for t in doc["plays"][0]["tasks"] if t["task"]["name"].endswith("Apply the test component")]
    return proc, task["hosts"]["localhost"]


def actions(result):
    return {o["object"]: o["action"] for o in result["objects"]}


def test_a_batch_is_created_then_left_unchanged_and_a_drift_is_found(role, ns):
    kube, ns = ns, ns.namespace
    proc, first = run(role, ns)
    assert proc.returncode == 0, first
    assert first["changed"] and actions(first) == {
        f"ConfigMap/{ns}/settings": "created", f"Secret/{ns}/login": "created"}
    secret = kube.json("get", "secret", "login")
    assert base64.b64decode(secret["data"]["password"]).decode() == "first-secret-value"
    assert "first-secret-value" not in proc.stdout

    proc, again = run(role, ns)
    assert proc.returncode == 0 and not again["changed"], again
    assert set(actions(again).values()) == {"unchanged"}

    # A field we set, changed by hand: the check-mode preview names that object
    # only, shows the change, and leaves it as it is.
    kube.run("patch", "configmap", "settings", "--type", "merge", "-p", '{"data": {"greeting": "edited"}}')
    proc, preview = run(role, ns, "--check", "--diff")
    assert proc.returncode == 0, preview
    assert preview["changed"] and actions(preview)[f"ConfigMap/{ns}/settings"] == "configured"
    assert actions(preview)[f"Secret/{ns}/login"] == "unchanged"
    [diff] = preview["diff"]
    assert "greeting: edited" in diff["before"] and "greeting: hello" in diff["after"]
    live = kube.json("get", "configmap", "settings")
    assert live["data"]["greeting"] == "edited"

    proc, fixed = run(role, ns)
    assert actions(fixed)[f"ConfigMap/{ns}/settings"] == "configured"
    live = kube.json("get", "configmap", "settings")
    assert live["data"]["greeting"] == "hello"


def test_a_secret_change_is_previewed_without_its_values(role, ns):
    kube, ns = ns, ns.namespace
    run(role, ns)
    proc, preview = run(role, ns, "--check", "--diff", "-vvv", password="second-secret-value")
    assert proc.returncode == 0, preview
    assert actions(preview)[f"Secret/{ns}/login"] == "configured"
    [diff] = preview["diff"]
    assert "password: (hidden)" in diff["before"] and "password: (hidden, changed)" in diff["after"]
    assert "user: (hidden)" in diff["after"]
    for value in ("first-secret-value", "second-secret-value",
                  base64.b64encode(b"first-secret-value").decode(), base64.b64encode(b"second-secret-value").decode()):
        assert value not in proc.stdout and value not in proc.stderr
    # The dry run stored nothing.
    secret = kube.json("get", "secret", "login")
    assert base64.b64decode(secret["data"]["password"]).decode() == "first-secret-value"


def test_check_mode_reports_but_does_not_send_what_the_api_would_refuse(role, ns):
    kube, ns = ns, ns.namespace
    proc, preview = run(role, ns, "--check", "--diff", templates=("config.yaml", "elsewhere.yaml"))
    assert proc.returncode == 0, preview
    assert actions(preview) == {f"ConfigMap/{ns}/settings": "created", f"Secret/{ns}/login": "created",
                                f"ConfigMap/{ns}-not-there/elsewhere": "unsent"}
    assert "not created yet" in [o for o in preview["objects"] if o["action"] == "unsent"][0]["reason"]
    # Each would-be-created object is shown whole, the unsent one with why.
    headers = [d["after_header"] for d in preview["diff"]]
    assert headers[:2] == [f"ConfigMap/{ns}/settings", f"Secret/{ns}/login"]
    assert headers[2] == (f"ConfigMap/{ns}-not-there/elsewhere (would be created; not sent to the API: "
                          f"namespace {ns}-not-there not created yet)")
    assert "password: (hidden)" in preview["diff"][1]["after"] and "first-secret-value" not in proc.stdout
    assert kube.out("get", "configmap,secret", "-o", "name").strip() in ("", "configmap/kube-root-ca.crt")


def test_an_object_the_api_refuses_fails_the_task_with_its_name(role, ns):
    ns = ns.namespace
    proc, result = run(role, ns, templates=("elsewhere.yaml",))
    assert proc.returncode != 0
    assert f"ConfigMap/{ns}-not-there/elsewhere" in result["msg"] and "refused" in result["msg"]


def test_render_mode_writes_the_templates_and_touches_no_cluster(role):
    namespace = "never-" + uuid.uuid4().hex[:6]
    proc, first = run(role, namespace, render=True)
    assert proc.returncode == 0 and first["changed"], first
    text = (role / "rendered" / "test" / "config.yaml").read_text()
    assert f"namespace: {namespace}" in text and "greeting: \"hello\"" in text
    proc, again = run(role, namespace, render=True)
    assert not again["changed"]


BATCH_TASKS = """
- name: Queue a ConfigMap
  superkubernetex.platform.manifests:
    component: first
    templates: [second.yaml]
    defer: true

- name: Look for the queued ConfigMap before the batch is sent
  kubernetes.core.k8s_info:
    kind: ConfigMap
    namespace: "{{ test_namespace }}"
    name: second
    kubeconfig: "{{ platform_kubeconfig }}"
  register: test_before

- name: Defer a file holding a Secret (sent at once with a persistent fact cache)
  superkubernetex.platform.manifests:
    component: secret
    templates: [config.yaml]
    defer: true

- name: Look for the Secret on the cluster after that call
  kubernetes.core.k8s_info:
    kind: Secret
    namespace: "{{ test_namespace }}"
    name: login
    kubeconfig: "{{ platform_kubeconfig }}"
  register: test_secret_after
  no_log: true

- name: Say whether the Secret was on the cluster after that call
  ansible.builtin.debug:
    msg: "secret sent: {{ test_secret_after.resources | length > 0 }}"

- name: Look for the Secret value in the fact cache
  ansible.builtin.command:
    argv: [grep, -rqF, "{{ test_password }}", "{{ test_fact_cache }}"]
  register: test_cache
  changed_when: false
  failed_when: test_cache.rc not in [0, 1]
  no_log: true

- name: Queue another ConfigMap
  superkubernetex.platform.manifests:
    component: later
    templates: [third.yaml]
    defer: true

- name: Send what is left
  superkubernetex.platform.manifests:
    component: platform
    templates: []

- name: Send what is left again (nothing)
  superkubernetex.platform.manifests:
    component: platform
    templates: []

- name: Say whether the fact cache held the Secret value
  ansible.builtin.debug:
    msg: "secret in the fact cache: {{ test_cache.rc == 0 }}"
"""


@pytest.mark.parametrize("cache", ["jsonfile", "memory"])
def test_deferred_calls_are_sent_by_the_next_call_in_one_batch_and_secrets_only_queued_in_memory(
        role, ns, tmp_path, cache):
    """With platform_manifests_batch (playbooks/platform.yml), a call with
    defer: true sends nothing; the play's last call sends what is left in
    order, in one module run, and a second one has nothing to send. A
    deferred call whose files hold a Secret queues them only while the fact
    cache is the memory one (the default); with a persistent one (jsonfile
    here), which would write the queue (a host fact) out, it is sent at once,
    the queue first, and no Secret value reaches the cache. No Secret value
    reaches the output, even with -vvv."""
    kube, namespace = ns, ns.namespace
    templates = role / "roles" / "manifests_test" / "templates"
    (role / "roles" / "manifests_test" / "tasks" / "main.yml").write_text(BATCH_TASKS)
    for name in ("second", "third"):
        (templates / f"{name}.yaml.j2").write_text(
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {{{{ test_namespace }}}}\n"
            "data: {}\n")
    cache_dir = tmp_path / "facts"
    cache_dir.mkdir()
    extra = {"test_namespace": namespace, "test_greeting": "hello", "test_password": "queued-secret-value",
             "test_fact_cache": str(cache_dir), "platform_kubeconfig": KUBECONFIG, "platform_kube_context": None,
             "platform_field_manager": "superkubernetex-test", "platform_render": False,
             "platform_render_dir": str(role / "rendered"), "platform_manifests_batch": True}
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_ROLES_PATH=str(role / "roles"),
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_CACHE_PLUGIN=cache, ANSIBLE_CACHE_PLUGIN_CONNECTION=str(cache_dir))
    proc = subprocess.run(["ansible-playbook", str(role / "play.yml"), "-vvv", "-e", json.dumps(extra)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("\n{") + 1:])[0]
    # The json callback names a role's task "<role> : <name>".
    tasks = {t["task"]["name"].split(" : ", 1)[-1]: t["hosts"]["localhost"] for t in doc["plays"][0]["tasks"]}
    assert tasks["Look for the queued ConfigMap before the batch is sent"]["resources"] == []
    sent = tasks["Defer a file holding a Secret (sent at once with a persistent fact cache)"]
    last = tasks["Send what is left"]
    secret_call = [("secret", f"ConfigMap/{namespace}/settings", "created"),
                   ("secret", f"Secret/{namespace}/login", "created")]
    if cache == "jsonfile":
        assert [(o["component"], o["object"], o["action"]) for o in sent["objects"]] == [
            ("first", f"ConfigMap/{namespace}/second", "created")] + secret_call
        assert tasks["Say whether the Secret was on the cluster after that call"]["msg"] == "secret sent: True"
        assert tasks["Say whether the fact cache held the Secret value"]["msg"] == "secret in the fact cache: False"
        assert list(cache_dir.iterdir()), "the fact cache was not written: the test proves nothing"
        assert [(o["component"], o["object"], o["action"]) for o in last["objects"]] == [
            ("later", f"ConfigMap/{namespace}/third", "created")]
    else:
        assert "objects" not in sent and not sent["changed"]
        assert tasks["Say whether the Secret was on the cluster after that call"]["msg"] == "secret sent: False"
        assert not list(cache_dir.iterdir())
        assert [(o["component"], o["object"], o["action"]) for o in last["objects"]] == [
            ("first", f"ConfigMap/{namespace}/second", "created")] + secret_call + [
            ("later", f"ConfigMap/{namespace}/third", "created")]
    again = tasks["Send what is left again (nothing)"]
    assert again["objects"] == [] and not again["changed"]
    assert kube.json("get", "configmap", "settings")["data"]["greeting"] == "hello"
    for value in ("queued-secret-value", base64.b64encode(b"queued-secret-value").decode()):
        assert value not in proc.stdout and value not in proc.stderr