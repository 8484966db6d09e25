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

# On a Secret: how many times a rotation published it. On a pod template,
# with the Secret's name after the slash: the generation its pods consume.
GENERATION = 'superkubernetex.com/secret-generation'
WORKLOAD_GENERATION = 'secret-generation.superkubernetex.com/'


def kube_argument_spec():
    """Options that select the cluster: a kubeconfig file and a context."""
    return dict(
        kubeconfig=dict(type='path'),
        context=dict(type='str'),
    )


class KubeSecretStore(object):
    """The Kubernetes half of a rotation (see module_utils/rotation.py).

    ``read()`` returns the data of the first Secret. ``publish(data)`` applies
    the keys that differ from it to every Secret and raises their generation
    (annotation ``superkubernetex.com/secret-generation``, one more than the
    highest of them), sets the pod template annotation
    ``secret-generation.superkubernetex.com/<secret>`` of every workload to
    that generation (``<secret>``: the Secret of its namespace, the first
    Secret when its namespace has none), and waits until every workload has
    rolled out. A generation number reveals nothing of the Secret, where a
    digest of it would let a weak password be guessed offline by whoever
    can read a pod template; the digest annotation ``checksum/<secret>`` of
    earlier versions is removed.
    """

    def __init__(self, api, secrets, workloads, timeout=600, interval=2.0):
        self.api = api
        self.secrets = [(s['namespace'], s['name']) for s in secrets]
        self.workloads = [(w['kind'], w['namespace'], w['name']) for w in workloads]
        self.timeout = timeout
        self.interval = interval
        self.data = {}
        self.generation = 0

    def read(self):
        for namespace, name in self.secrets:
            secret = self.api.get('v1', 'Secret', name, namespace)
            if secret is None:
                raise NotFound(404, 'Secret %s/%s does not exist' % (namespace, name))
            self.data[(namespace, name)] = dict(
                (k, base64.b64decode(v).decode('utf-8')) for k, v in (secret.get('data') or {}).items())
            annotations = (secret.get('metadata') or {}).get('annotations') or {}
            try:
                self.generation = max(self.generation, int(annotations.get(GENERATION, 0)))
            except ValueError:
                pass  # not ours: counted from 0
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
        generation = self.generation + 1
        names = {}
        for namespace, name in self.secrets:
            content = dict(self.data[(namespace, name)], **changed)
            for k in removed:
                content.pop(k, None)
            body = dict(data=patch, metadata=dict(annotations={GENERATION: str(generation)}))
            self._patch('v1', 'Secret', namespace, name, body, dry_run)
            if not dry_run:
                self.data[(namespace, name)] = content
            names.setdefault(namespace, name)
        if not dry_run:
            self.generation = generation
        first = names[self.secrets[0][0]]
        for kind, namespace, name in self.workloads:
            secret = names.get(namespace, first)
            annotations = {WORKLOAD_GENERATION + secret: str(generation), 'checksum/' + secret: None}
            body = dict(spec=dict(template=dict(metadata=dict(annotations=annotations))))
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
