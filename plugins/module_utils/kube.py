# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Kubernetes API access shared by the collection's modules.

Options and their documentation (doc fragment ``superkubernetex.platform.kube``)
match kubernetes.core so one ``module_defaults`` group serves both.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import time

from ansible_collections.superkubernetex.platform.plugins.module_utils.kubeapi import NotFound
from ansible_collections.superkubernetex.platform.plugins.module_utils.manifests import RolloutFailed, rolled_out
from ansible_collections.superkubernetex.platform.plugins.module_utils.rotation import data_digest


def kube_argument_spec():
    """Options that select the cluster: a kubeconfig file and a context."""
    return dict(
        kubeconfig=dict(type='path'),
        context=dict(type='str'),
    )


class KubeSecretStore(object):
    """The Kubernetes half of a rotation (see module_utils/rotation.py).

    ``read()`` returns the data of the first Secret. ``publish(data)`` applies
    the keys that differ from it to every Secret, sets the pod template
    annotation ``checksum/<secret>`` of every workload to the digest of the
    Secret of its namespace (the first Secret when its namespace has none),
    and waits until every workload has rolled out.
    """

    def __init__(self, api, secrets, workloads, timeout=600, interval=2.0):
        self.api = api
        self.secrets = [(s['namespace'], s['name']) for s in secrets]
        self.workloads = [(w['kind'], w['namespace'], w['name']) for w in workloads]
        self.timeout = timeout
        self.interval = interval
        self.data = {}

    def read(self):
        for namespace, name in self.secrets:
            secret = self.api.get('v1', 'Secret', name, namespace)
            if secret is None:
                raise NotFound(404, 'Secret %s/%s does not exist' % (namespace, name))
            self.data[(namespace, name)] = dict(
                (k, base64.b64decode(v).decode('utf-8')) for k, v in (secret.get('data') or {}).items())
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
            self._patch('v1', 'Secret', namespace, name, dict(data=patch), dry_run)
            if not dry_run:
                self.data[(namespace, name)] = content
            digests.setdefault(namespace, ('checksum/' + name, data_digest(content)))
        first = digests[self.secrets[0][0]]
        for kind, namespace, name in self.workloads:
            key, digest = digests.get(namespace, first)
            body = dict(spec=dict(template=dict(metadata=dict(annotations={key: digest}))))
            self._patch('apps/v1', kind, namespace, name, body, dry_run)
        if not dry_run:
            for workload in self.workloads:
                self.wait(*workload)

    def _patch(self, api_version, kind, namespace, name, body, dry_run):
        """A JSON merge patch (a null value removes the key)."""
        self.api.request('PATCH', self.api.path(api_version, kind, namespace, name),
                         query=dict(dryRun='All' if dry_run else None), body=body,
                         content_type='application/merge-patch+json')

    def wait(self, kind, namespace, name):
        deadline = time.time() + self.timeout
        while True:
            live = self.api.get('apps/v1', kind, name, namespace)
            if live is None:
                raise RuntimeError('%s %s/%s does not exist' % (kind, namespace, name))
            try:
                if rolled_out(live):
                    return
            except RolloutFailed as e:
                raise RuntimeError(str(e))
            if time.time() > deadline:
                raise RuntimeError('%s %s/%s did not roll out within %ss' % (kind, namespace, name, self.timeout))
            time.sleep(self.interval)
