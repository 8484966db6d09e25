#!/usr/bin/python
# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: kube_absent
short_description: Make sure Kubernetes objects do not exist
version_added: 0.3.0
description:
  - Deletes the object O(kind)/O(name) (in O(namespace)), or each object of
    O(objects), when it exists, with foreground propagation (its dependents
    go first), and with O(wait) waits until the API no longer has it. An
    absent object, or a kind the API does not serve, is left as it is (not
    changed).
  - The counterpart of C(superkubernetex.platform.manifests) for removals,
    with the same API client (C(module_utils/kubeapi.py)).
author:
  - SuperKuberneteX platform team (@superkubernetex)
options:
  api_version:
    description: API group and version of O(kind), C(v1) for the core group.
    type: str
    default: v1
  kind:
    description: Kind of the object. Required without O(objects).
    type: str
  name:
    description: Name of the object. Required without O(objects).
    type: str
  namespace:
    description: Namespace of a namespaced object.
    type: str
  objects:
    description:
      - Several objects, removed in this order with one client, instead of
        O(api_version), O(kind), O(name) and O(namespace).
    type: list
    elements: dict
    suboptions:
      api_version:
        description: API group and version of O(objects[].kind).
        type: str
        default: v1
      kind:
        description: Kind of the object.
        type: str
        required: true
      name:
        description: Name of the object.
        type: str
        required: true
      namespace:
        description: Namespace of a namespaced object.
        type: str
  only_with_labels:
    description:
      - Remove an object only when it carries all these labels with these
        values; one without them (made by someone else, such as a cluster's
        own Traefik TLSOption named C(default)) is left alone and reported
        in RV(kept).
    type: dict
  wait:
    description: Wait until the object is gone (its finalizers done). Not in check mode.
    type: bool
    default: false
  wait_timeout:
    description: Seconds the wait may take.
    type: int
    default: 300
extends_documentation_fragment:
  - superkubernetex.platform.kube
attributes:
  check_mode:
    description: Says whether the object would be deleted (a server-side dry run).
    support: full
'''

EXAMPLES = r'''
- name: Remove the snapshot CronJob
  superkubernetex.platform.kube_absent:
    api_version: batch/v1
    kind: CronJob
    namespace: skx-data
    name: backup-snapshots

- name: Remove the platform's TLSOption, not one the cluster made itself
  superkubernetex.platform.kube_absent:
    api_version: traefik.io/v1alpha1
    kind: TLSOption
    namespace: kube-system
    name: default
    only_with_labels:
      app.kubernetes.io/managed-by: superkubernetex

- name: Remove a DaemonSet and its NetworkPolicy
  superkubernetex.platform.kube_absent:
    objects:
      - {api_version: apps/v1, kind: DaemonSet, namespace: skx-monitoring, name: node-exporter}
      - {api_version: networking.k8s.io/v1, kind: NetworkPolicy, namespace: skx-monitoring, name: node-exporter}
'''

RETURN = r'''
object:
  description: kind/namespace/name of the object.
  returned: without O(objects)
  type: str
deleted:
  description: kind/namespace/name of each object deleted (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
kept:
  description: kind/namespace/name of each object left because it lacks O(only_with_labels).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.superkubernetex.platform.plugins.module_utils.kube import kube_argument_spec
from ansible_collections.superkubernetex.platform.plugins.module_utils.kubeapi import (
    ApiError, KubeClient, KubeConfigError)


def main():
    argument_spec = kube_argument_spec()
    argument_spec.update(
        api_version=dict(type='str', default='v1'),
        kind=dict(type='str'),
        name=dict(type='str'),
        namespace=dict(type='str'),
        objects=dict(type='list', elements='dict', options=dict(
            api_version=dict(type='str', default='v1'),
            kind=dict(type='str', required=True),
            name=dict(type='str', required=True),
            namespace=dict(type='str'),
        )),
        only_with_labels=dict(type='dict'),
        wait=dict(type='bool', default=False),
        wait_timeout=dict(type='int', default=300),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('objects', 'kind'), ('objects', 'name')],
                           required_one_of=[('objects', 'kind')],
                           required_by={'kind': 'name'})
    p = module.params
    single = p['objects'] is None
    objects = [dict((k, p[k]) for k in ('api_version', 'kind', 'name', 'namespace'))] if single else p['objects']
    deleted = []
    kept = []
    wanted = dict((k, str(v)) for k, v in (p['only_with_labels'] or {}).items())
    label = None
    try:
        api = KubeClient(p['kubeconfig'], p['context'])
        for o in objects:
            label = '/'.join(x for x in (o['kind'], o['namespace'], o['name']) if x)
            if api.resource(o['api_version'], o['kind']) is None:
                continue
            if wanted:
                current = api.get(o['api_version'], o['kind'], o['name'], o['namespace'])
                if current is None:
                    continue
                labels = (current.get('metadata') or {}).get('labels') or {}
                if any(labels.get(k) != v for k, v in wanted.items()):
                    kept.append(label)
                    continue
            if api.delete(o['api_version'], o['kind'], o['name'], o['namespace'], dry_run=module.check_mode):
                deleted.append(label)
                if p['wait'] and not module.check_mode:
                    api.wait_gone(o['api_version'], o['kind'], o['name'], o['namespace'], timeout=p['wait_timeout'])
    except (KubeConfigError, IOError, OSError, ValueError) as e:
        module.fail_json(msg='cannot reach the cluster: %s' % e, object=label, deleted=deleted, kept=kept)
    except ApiError as e:
        module.fail_json(msg='%s: %s' % (label, e.message), object=label, deleted=deleted, kept=kept)
    result = dict(changed=bool(deleted), deleted=deleted, kept=kept)
    if single:
        result['object'] = label
    module.exit_json(**result)


if __name__ == '__main__':
    main()
