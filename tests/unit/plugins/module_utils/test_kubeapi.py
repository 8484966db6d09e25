"""How the collection's API client reads a kubeconfig, as kubectl does:
contexts, merged files, relative paths, tokens, exec credential plugins, and
the entries it refuses with a message. Requests against a real API server
are in tests/testbed/modules."""
import base64
import json
import os
import stat
import textwrap

import pytest

from ansible_collections.superkubernetex.platform.plugins.module_utils.kubeapi import (
    KubeClient, KubeConfigError, credentials)


def kubeconfig(path, users, contexts, current="main", clusters=None):
    clusters = clusters or [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}]
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": current,
                                "clusters": clusters, "users": users, "contexts": contexts}))
    return str(path)


def ctx(name, user="u", cluster="c"):
    return {"name": name, "context": {"cluster": cluster, "user": user}}


def test_the_current_context_is_used_unless_another_is_named(tmp_path):
    path = kubeconfig(tmp_path / "config", [{"name": "u", "user": {"token": "t1"}},
                                            {"name": "v", "user": {"token": "t2"}}],
                      [ctx("main"), ctx("other", user="v")])
    assert credentials(path).headers["Authorization"] == "Bearer t1"
    assert credentials(path, "other").headers["Authorization"] == "Bearer t2"


def test_an_unknown_context_is_named_in_the_error(tmp_path):
    path = kubeconfig(tmp_path / "config", [{"name": "u", "user": {}}], [ctx("main")])
    with pytest.raises(KubeConfigError, match="no context prod"):
        credentials(path, "prod")


def test_a_missing_kubeconfig_file_is_named(tmp_path):
    with pytest.raises(KubeConfigError, match="does-not-exist"):
        credentials(str(tmp_path / "does-not-exist"))


def test_kubeconfig_files_merge_as_kubectl_merges_them(tmp_path, monkeypatch):
    first = kubeconfig(tmp_path / "a", [{"name": "u", "user": {"token": "from-a"}}], [ctx("main")])
    second = kubeconfig(tmp_path / "b", [{"name": "u", "user": {"token": "from-b"}},
                                         {"name": "w", "user": {"token": "only-b"}}],
                        [ctx("main"), ctx("b-only", user="w")], current="b-only")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([first, second]))
    # The first file's entries and current-context win; the second adds its own.
    assert credentials().headers["Authorization"] == "Bearer from-a"
    assert credentials(None, "b-only").headers["Authorization"] == "Bearer only-b"


def test_relative_paths_are_relative_to_the_kubeconfig_folder(tmp_path, monkeypatch):
    (tmp_path / "token").write_text("from-file\n")
    path = kubeconfig(tmp_path / "config", [{"name": "u", "user": {"tokenFile": "token"}}], [ctx("main")])
    monkeypatch.chdir("/")
    assert credentials(path).headers["Authorization"] == "Bearer from-file"


def test_basic_auth_is_sent_when_no_token_is_given(tmp_path):
    path = kubeconfig(tmp_path / "config", [{"name": "u", "user": {"username": "admin", "password": "pw"}}],
                      [ctx("main")])
    assert credentials(path).headers["Authorization"] == "Basic " + base64.b64encode(b"admin:pw").decode()


def executable(path, script):
    path.write_text(textwrap.dedent(script))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_an_exec_credential_plugin_gives_the_token_and_sees_its_env(tmp_path):
    executable(tmp_path / "plugin", """\
        #!/bin/sh
        # kubectl passes the ExecCredential request in KUBERNETES_EXEC_INFO.
        case "$KUBERNETES_EXEC_INFO" in *ExecCredential*) ;; *) exit 3;; esac
        printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
        printf '"status":{"token":"%s-%s"}}' "$REGION" "$1"
        """)
    path = kubeconfig(tmp_path / "config", [{"name": "u", "user": {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": "./plugin", "args": ["prod"],
        "env": [{"name": "REGION", "value": "eu"}]}}}], [ctx("main")])
    assert credentials(path).headers["Authorization"] == "Bearer eu-prod"


def test_a_failing_exec_credential_plugin_is_reported_with_its_error(tmp_path):
    plugin = executable(tmp_path / "plugin", "#!/bin/sh\necho 'token expired, log in again' >&2\nexit 1\n")
    path = kubeconfig(tmp_path / "config", [{"name": "u", "user": {"exec": {"command": plugin}}}],
                      [ctx("main")])
    with pytest.raises(KubeConfigError, match="exit 1.*token expired, log in again"):
        credentials(path)


@pytest.mark.parametrize("user,cluster,message", [
    ({"auth-provider": {"name": "gcp"}}, {}, "legacy auth-provider \\(gcp\\): use an exec credential plugin"),
    ({}, {"proxy-url": "http://proxy:3128"}, "proxy-url"),
    ({}, {"server": ""}, "has no server"),
])
def test_entries_it_cannot_honour_are_refused_with_a_message(tmp_path, user, cluster, message):
    cluster_entry = dict({"server": "https://127.0.0.1:6443"}, **cluster)
    path = kubeconfig(tmp_path / "config", [{"name": "u", "user": user}], [ctx("main")],
                      clusters=[{"name": "c", "cluster": cluster_entry}])
    with pytest.raises(KubeConfigError, match=message):
        credentials(path)


def test_without_kubeconfig_and_outside_a_pod_it_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError, match="set kubeconfig or KUBECONFIG"):
        credentials()


def test_paths_of_a_server_behind_a_prefix_keep_the_prefix(tmp_path):
    path = kubeconfig(tmp_path / "config", [{"name": "u", "user": {"token": "t"}}], [ctx("main")],
                      clusters=[{"name": "c", "cluster": {"server": "http://127.0.0.1:1/k8s/clusters/c-1/"}}])
    client = KubeClient(path)
    assert client.prefix == "/k8s/clusters/c-1"


def test_insecure_skip_tls_verify_stays_unverified_with_a_tls_server_name(tmp_path):
    import ssl
    path = kubeconfig(tmp_path / "config", [{"name": "u", "user": {"token": "t"}}], [ctx("main")],
                      clusters=[{"name": "c", "cluster": {"server": "https://127.0.0.1:6443",
                                                         "insecure-skip-tls-verify": True,
                                                         "tls-server-name": "api.internal"}}])
    creds = credentials(path)
    assert creds.context.verify_mode == ssl.CERT_NONE and not creds.context.check_hostname
    assert creds.server_name == "api.internal"
