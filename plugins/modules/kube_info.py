#!/usr/bin/python
# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: kube_info
short_description: Read Kubernetes objects, as kubernetes.core.k8s_info does, in a fraction of its time
version_added: 0.3.0
description:
  - Reads one object by O(name), or lists the objects of O(kind) (in
    O(namespace), or in every namespace) that match O(label_selectors).
    Returns them as the API stores them, in RV(resources), with the same
    result keys as C(kubernetes.core.k8s_info), so a task can use either.
  - Talks to the API with the collection's own client
    (C(module_utils/kubeapi.py)) instead of the kubernetes Python client,
    whose import and discovery take most of an idempotent run's module
    time (C(docs/benchmarks.md)).
  - When the API does not serve O(kind) in O(api_version) (a custom
    resource whose definition is not installed), RV(api_found) is false and
    RV(resources) empty.
author:
  - SuperKuberneteX platform team (@superkubernetex)
options:
  api_version:
    description: API group and version of O(kind), C(v1) for the core group.
    type: str
    default: v1
  kind:
    description: Kind of the objects.
    type: str
    required: true
  name:
    description: Name of the one object to read. Without it, every object of O(kind) that matches.
    type: str
  namespace:
    description: Namespace of namespaced objects. Without it, a list covers every namespace.
    type: str
  label_selectors:
    description: Label selectors (C(key=value), C(key!=value), C(key)) that the listed objects must all match.
    type: list
    elements: str
    default: []
  field_selectors:
    description: Field selectors (C(status.phase=Running)) that the listed objects must all match.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - superkubernetex.platform.kube
attributes:
  check_mode:
    description: Reads only, so it runs in check mode too.
    support: full
notes:
  - Reading Secrets returns their data, so use C(no_log) on such a task.
'''

EXAMPLES = r'''
- name: Read the tenant namespaces
  superkubernetex.platform.kube_info:
    kind: Namespace
    label_selectors:
      - superkubernetex.com/concern=instance
  register: tenants
'''

RETURN = r'''
resources:
  description: The objects found (one at most with O(name)), as the API returns them.
  returned: always
  type: list
  elements: dict
api_found:
  description: Whether the API serves O(kind) in O(api_version).
  returned: always
  type: bool
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.superkubernetex.platform.plugins.module_utils.kube import kube_argument_spec
from ansible_collections.superkubernetex.platform.plugins.module_utils.kubeapi import (
    ApiError, KubeClient, KubeConfigError)


def main():
    argument_spec = kube_argument_spec()
    argument_spec.update(
        api_version=dict(type='str', default='v1'),
        kind=dict(type='str', required=True),
        name=dict(type='str'),
        namespace=dict(type='str'),
        label_selectors=dict(type='list', elements='str', default=[]),
        field_selectors=dict(type='list', elements='str', default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    try:
        api = KubeClient(p['kubeconfig'], p['context'])
        if api.resource(p['api_version'], p['kind']) is None:
            module.exit_json(changed=False, api_found=False, resources=[])
        if p['name']:
            found = api.get(p['api_version'], p['kind'], p['name'], p['namespace'])
            resources = [found] if found is not None else []
        else:
            resources = api.list(p['api_version'], p['kind'], p['namespace'],
                                 label_selector=','.join(p['label_selectors']) or None,
                                 field_selector=','.join(p['field_selectors']) or None)
    except (KubeConfigError, IOError, OSError, ValueError) as e:
        module.fail_json(msg='cannot reach the cluster: %s' % e)
    except ApiError as e:
        module.fail_json(msg='the API refused to read %s %s: %s' % (p['api_version'], p['kind'], e.message),
                         status=e.status)
    module.exit_json(changed=False, api_found=True, resources=resources)


if __name__ == '__main__':
    main()
