"""superkubernetex.platform.kube_info and kube_absent against the testbed's
API, through the collection's own client (module_utils/kubeapi.py): reads by
name and by label, a kind the API does not serve, a delete that previews,
waits, and is a no-op the second time."""
from lib.testbed import KUBECONFIG


def configmap(kube, name, labels):
    kube.apply([{"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": kube.namespace, "labels": labels}, "data": {"k": "v"}}])


def test_kube_info_reads_by_name_and_by_label_as_the_api_stores_them(ns, run_module):
    configmap(ns, "red", {"colour": "red", "app": "t"})
    configmap(ns, "blue", {"colour": "blue", "app": "t"})
    one = run_module("kube_info", dict(kind="ConfigMap", namespace=ns.namespace, name="red", kubeconfig=KUBECONFIG))
    assert not one.failed and one["api_found"] and not one["changed"]
    assert [r["metadata"]["name"] for r in one["resources"]] == ["red"]
    assert one["resources"][0]["data"] == {"k": "v"}
    labelled = run_module("kube_info", dict(kind="ConfigMap", namespace=ns.namespace, kubeconfig=KUBECONFIG,
                                            label_selectors=["app=t", "colour!=red"]))
    assert [(r["kind"], r["metadata"]["name"]) for r in labelled["resources"]] == [("ConfigMap", "blue")]
    missing = run_module("kube_info", dict(kind="ConfigMap", namespace=ns.namespace, name="green",
                                           kubeconfig=KUBECONFIG))
    assert not missing.failed and missing["resources"] == []


def test_kube_info_says_when_the_api_does_not_serve_a_kind(run_module):
    result = run_module("kube_info", dict(api_version="example.invalid/v1", kind="Widget", kubeconfig=KUBECONFIG))
    assert not result.failed and result["api_found"] is False and result["resources"] == []


def test_a_wrong_context_fails_with_its_name(run_module):
    result = run_module("kube_info", dict(kind="Namespace", kubeconfig=KUBECONFIG, context="no-such-context"))
    assert result.failed and "no context no-such-context" in result["msg"]


def test_kube_absent_previews_deletes_and_is_then_unchanged(ns, run_module):
    configmap(ns, "doomed", {"app": "t"})
    args = dict(kind="ConfigMap", namespace=ns.namespace, name="doomed", kubeconfig=KUBECONFIG, wait=True)
    preview = run_module("kube_absent", args, check=True)
    assert preview["changed"] and ns.json("get", "configmap", "doomed")["metadata"]["name"] == "doomed"
    first = run_module("kube_absent", args)
    assert first["changed"] and first["object"] == f"ConfigMap/{ns.namespace}/doomed"
    assert ns.run("get", "configmap", "doomed", check=False).returncode != 0
    again = run_module("kube_absent", args)
    assert not again.failed and not again["changed"]


def test_kube_absent_removes_a_list_of_objects_in_one_run(ns, run_module):
    # What a run does with objects an earlier release left behind: one
    # module run for the list, absent ones and unserved kinds skipped.
    configmap(ns, "old-a", {"app": "t"})
    configmap(ns, "old-b", {"app": "t"})
    objects = [dict(kind="ConfigMap", namespace=ns.namespace, name="old-a"),
               dict(kind="ConfigMap", namespace=ns.namespace, name="never-there"),
               dict(api_version="example.invalid/v1", kind="Widget", namespace=ns.namespace, name="w"),
               dict(kind="ConfigMap", namespace=ns.namespace, name="old-b")]
    args = dict(objects=objects, kubeconfig=KUBECONFIG, wait=True)
    preview = run_module("kube_absent", args, check=True)
    assert preview["changed"] and ns.json("get", "configmap", "old-a")["metadata"]["name"] == "old-a"
    first = run_module("kube_absent", args)
    assert first["deleted"] == [f"ConfigMap/{ns.namespace}/old-a", f"ConfigMap/{ns.namespace}/old-b"]
    assert ns.run("get", "configmap", "old-a", "old-b", check=False).stdout == ""
    again = run_module("kube_absent", args)
    assert not again.failed and not again["changed"] and again["deleted"] == []
    both = run_module("kube_absent", dict(args, kind="ConfigMap", name="x"))
    assert both.failed and "mutually exclusive" in both["msg"]


def test_kube_absent_only_with_labels_leaves_an_object_made_by_someone_else(ns, run_module):
    # The ingress role removes its TLSOption "default" when turned off, but
    # never one of the same name the cluster made itself.
    configmap(ns, "ours", {"app.kubernetes.io/managed-by": "superkubernetex", "app": "t"})
    configmap(ns, "theirs", {"app.kubernetes.io/managed-by": "helm", "app": "t"})
    guard = {"app.kubernetes.io/managed-by": "superkubernetex"}
    for name, deleted in (("theirs", False), ("ours", True), ("never-there", False)):
        args = dict(kind="ConfigMap", namespace=ns.namespace, name=name, kubeconfig=KUBECONFIG,
                    only_with_labels=guard, wait=True)
        preview = run_module("kube_absent", args, check=True)
        assert not preview.failed and preview["changed"] is deleted, (name, preview)
        result = run_module("kube_absent", args)
        assert not result.failed and result["changed"] is deleted, (name, result)
        assert result["kept"] == ([f"ConfigMap/{ns.namespace}/theirs"] if name == "theirs" else [])
    assert ns.json("get", "configmap", "theirs")["metadata"]["name"] == "theirs"
    assert ns.run("get", "configmap", "ours", check=False).returncode != 0
