# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Kubernetes API access shared by the collection's modules.

Options and their documentation (doc fragment ``superkubernetex.platform.kube``)
match kubernetes.core so one ``module_defaults`` group serves both.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os
import time
import traceback

from ansible_collections.superkubernetex.platform.plugins.module_utils.rotation import data_digest

# The kubernetes client takes about 0.6 s to import: it is imported at the
# first API client, not with this file, so a module that writes files only
# (manifests in render mode) does not pay for it.
client = config = None
try:
    from importlib.util import find_spec
    HAS_KUBERNETES = find_spec('kubernetes') is not None
    KUBERNETES_IMPORT_ERROR = None if HAS_KUBERNETES else 'No module named kubernetes'
except ImportError:
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()


def load_kubernetes():
    """Import the kubernetes client (once) into this module's client and config."""
    global client, config
    if client is None:
        from kubernetes import client as kube_client, config as kube_config
        client, config = kube_client, kube_config


def kube_argument_spec():
    """Options that select the cluster: a kubeconfig file and a context."""
    return dict(
        kubeconfig=dict(type='path'),
        context=dict(type='str'),
    )


def kube_api_client(kubeconfig=None, context=None):
    """An ApiClient for the given kubeconfig/context, the default kubeconfig
    (KUBECONFIG or ~/.kube/config) when none is given, or the in-cluster
    service account when no kubeconfig exists at all."""
    load_kubernetes()
    default = os.environ.get('KUBECONFIG') or os.path.expanduser('~/.kube/config')
    if kubeconfig or context or os.path.exists(default.split(os.pathsep)[0]):
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        raise config.ConfigException('no kubeconfig found (%s) and not running in a pod: set kubeconfig '
                                     'or KUBECONFIG' % default)
    return client.ApiClient(configuration)


WORKLOAD_KINDS = dict(Deployment='deployment', StatefulSet='stateful_set', DaemonSet='daemon_set')


class KubeSecretStore(object):
    """The Kubernetes half of a rotation (see module_utils/rotation.py).

    ``read()`` returns the data of the first Secret. ``publish(data)`` applies
    the keys that differ from it to every Secret, sets the pod template
    annotation ``checksum/<secret>`` of every workload to the digest of the
    Secret of its namespace (the first Secret when its namespace has none),
    and waits until every workload has rolled out.
    """

    def __init__(self, api_client, secrets, workloads, timeout=600, interval=2.0):
        load_kubernetes()
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.secrets = [(s['namespace'], s['name']) for s in secrets]
        self.workloads = [(w['kind'], w['namespace'], w['name']) for w in workloads]
        self.timeout = timeout
        self.interval = interval
        self.data = {}

    def read(self):
        for namespace, name in self.secrets:
            secret = self.core.read_namespaced_secret(name, namespace)
            self.data[(namespace, name)] = dict(
                (k, base64.b64decode(v).decode('utf-8')) for k, v in (secret.data or {}).items())
        for kind, namespace, name in self.workloads:
            # A workload that is not healthy would make the rotation wait for
            # nothing and then undo it: refuse before changing anything. One
            # that is only moving (the HPA adding a pod under load, a rollout
            # under way) gets the rollout timeout to settle first.
            try:
                self.wait(kind, namespace, name)
            except RuntimeError as e:
                raise RuntimeError('%s %s/%s is not fully rolled out and available (%s); fix it before rotating'
                                   % (kind, namespace, name, e))
        return dict(self.data[self.secrets[0]])

    def publish(self, data, dry_run=False):
        reference = self.data[self.secrets[0]]
        changed = dict((k, v) for k, v in data.items() if reference.get(k) != v)
        removed = [k for k in reference if k not in data]
        patch = dict((k, base64.b64encode(v.encode('utf-8')).decode('ascii')) for k, v in changed.items())
        patch.update((k, None) for k in removed)
        digests = {}
        for namespace, name in self.secrets:
            content = dict(self.data[(namespace, name)], **changed)
            for k in removed:
                content.pop(k, None)
            self.core.patch_namespaced_secret(name, namespace, dict(data=patch),
                                              dry_run='All' if dry_run else None)
            if not dry_run:
                self.data[(namespace, name)] = content
            digests.setdefault(namespace, ('checksum/' + name, data_digest(content)))
        first = digests[self.secrets[0][0]]
        for kind, namespace, name in self.workloads:
            key, digest = digests.get(namespace, first)
            body = dict(spec=dict(template=dict(metadata=dict(annotations={key: digest}))))
            self._call('patch', kind, namespace, name, body, dry_run='All' if dry_run else None)
        if not dry_run:
            for workload in self.workloads:
                self.wait(*workload)

    def _call(self, verb, kind, namespace, name, *args, **kwargs):
        method = getattr(self.apps, '%s_namespaced_%s' % (verb, WORKLOAD_KINDS[kind]))
        return method(name, namespace, *args, **kwargs)

    def wait(self, kind, namespace, name):
        deadline = time.time() + self.timeout
        while not rolled_out(kind, self._call('read', kind, namespace, name)):
            if time.time() > deadline:
                raise RuntimeError('%s %s/%s did not roll out within %ss' % (kind, namespace, name, self.timeout))
            time.sleep(self.interval)


def rolled_out(kind, obj):
    """True once every pod of the workload runs the current template and is
    available (what ``kubectl rollout status`` waits for)."""
    status, spec = obj.status, obj.spec
    if (status.observed_generation or 0) < obj.metadata.generation:
        return False
    if kind == 'Deployment':
        for condition in status.conditions or []:
            if condition.type == 'Progressing' and condition.reason == 'ProgressDeadlineExceeded':
                raise RuntimeError('Deployment %s exceeded its progress deadline' % obj.metadata.name)
        want = 1 if spec.replicas is None else spec.replicas
        return (status.updated_replicas or 0) == want and (status.available_replicas or 0) == want \
            and (status.replicas or 0) == want
    if kind == 'StatefulSet':
        want = 1 if spec.replicas is None else spec.replicas
        return (status.updated_replicas or 0) == want and (status.ready_replicas or 0) == want \
            and status.current_revision == status.update_revision
    want = status.desired_number_scheduled or 0
    return (status.updated_number_scheduled or 0) == want and (status.number_available or 0) == want
