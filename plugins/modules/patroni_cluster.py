#!/usr/bin/python
# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: patroni_cluster
short_description: Bring a Patroni cluster's shared configuration to the given settings
version_added: 0.4.0
description:
  - Patroni writes a cluster's shared settings (C(synchronous_mode),
    C(ttl), the PostgreSQL parameters every member must share such as
    C(max_connections)) from C(bootstrap.dcs) once, when the cluster is
    made or a data directory adopted. Later changes of those settings in
    the configuration file are ignored; they go through the REST API's
    C(PATCH /config). This module reads C(GET /config) on the primary,
    compares it with O(config), and sends only what differs.
  - Reaches the REST API through a port-forward opened by the Kubernetes
    API (as C(kubectl port-forward), no binary) to the pod that O(selector)
    matches, so nothing is exposed outside the cluster.
  - A setting present in the cluster but absent from O(config) is left as
    it is; a value of C(null) in O(config) removes it.
author:
  - SuperKuberneteX platform team (@superkubernetex)
options:
  namespace:
    description: Namespace of the PostgreSQL pods.
    type: str
    required: true
  selector:
    description:
      - Label selector of the pod whose REST API is asked, normally the
        primary; exactly one Running pod must match.
    type: str
    required: true
  config:
    description: The shared settings wanted, as in C(bootstrap.dcs) (nested dicts are compared key by key).
    type: dict
    required: true
extends_documentation_fragment:
  - superkubernetex.platform.kube
  - superkubernetex.platform.patroni
attributes:
  check_mode:
    description: Reads the configuration and reports what would be sent, sends nothing.
    support: full
  diff_mode:
    description: The settings that differ, before and after.
    support: full
'''

EXAMPLES = r'''
- name: Turn synchronous replication on for a cluster made with one member
  superkubernetex.platform.patroni_cluster:
    namespace: skx-data
    selector: app.kubernetes.io/name=postgres,cluster-name=postgres,role=primary
    username: patroni
    password: "{{ patroni_restapi_password }}"
    config:
      synchronous_mode: true
      postgresql:
        parameters:
          max_connections: 300
'''

RETURN = r'''
patch:
  description: The settings sent (or that check mode would send); empty when the cluster has them.
  returned: always
  type: dict
pod:
  description: The pod whose REST API answered.
  returned: always
  type: str
'''

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.superkubernetex.platform.plugins.module_utils.kube import kube_argument_spec
from ansible_collections.superkubernetex.platform.plugins.module_utils.kubeapi import KubeClient, KubeConfigError
from ansible_collections.superkubernetex.platform.plugins.module_utils.patroni_api import call, patroni_argument_spec
from ansible_collections.superkubernetex.platform.plugins.module_utils.portforward import (
    PortForward, PortForwardError)


def same(wanted, current):
    """Whether Patroni's value equals the wanted one: numbers and their text
    (Patroni keeps what it was sent: '200' or 200) and on/off and booleans
    are the same setting for PostgreSQL."""
    def norm(value):
        if isinstance(value, bool):
            return 'on' if value else 'off'
        text = str(value).strip().lower()
        return {'true': 'on', 'false': 'off'}.get(text, text)
    return norm(wanted) == norm(current)


def config_patch(wanted, current):
    """The part of wanted that current lacks or holds another value of
    (None: the key removed). Nested dicts compare key by key."""
    patch = {}
    current = current if isinstance(current, dict) else {}
    for key, value in wanted.items():
        if value is None:
            if key in current:
                patch[key] = None
        elif isinstance(value, dict):
            sub = config_patch(value, current.get(key))
            if sub:
                patch[key] = sub
        elif key not in current or not same(value, current[key]):
            patch[key] = value
    return patch


def pick(patch, current):
    """The values of current under the keys of patch (the diff's before)."""
    out = {}
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            out[key] = pick(value, current[key])
        elif key in current:
            out[key] = current[key]
    return out


def main():
    argument_spec = kube_argument_spec()
    argument_spec.update(patroni_argument_spec())
    argument_spec.update(
        namespace=dict(type='str', required=True),
        selector=dict(type='str', required=True),
        config=dict(type='dict', required=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_together=[('username', 'password')])
    p = module.params
    try:
        api = KubeClient(p['kubeconfig'], p['context'])
    except (KubeConfigError, IOError, OSError, ValueError) as e:
        module.fail_json(msg='cannot reach the cluster: %s' % e)
    try:
        with PortForward(api, p['namespace'], None, p['port'], selector=p['selector']) as pf:
            status, text = call(pf.path, 'GET', '/config')
            if status != 200:
                module.fail_json(msg='GET /config on %s answered %s: %s' % (pf.pod, status, text[:300]), pod=pf.pod)
            current = json.loads(text)
            patch = config_patch(p['config'], current)
            result = dict(changed=bool(patch), patch=patch, pod=pf.pod)
            if patch:
                result['diff'] = dict(before=json.dumps(pick(patch, current), indent=2, sort_keys=True) + '\n',
                                      after=json.dumps(patch, indent=2, sort_keys=True) + '\n',
                                      before_header='%s/%s GET /config' % (p['namespace'], pf.pod),
                                      after_header='PATCH /config')
            if patch and not module.check_mode:
                auth = (p['username'], p['password']) if p['username'] else None
                status, text = call(pf.path, 'PATCH', '/config', patch, auth)
                if status != 200:
                    module.fail_json(msg='PATCH /config on %s answered %s: %s (nothing else changed)'
                                         % (pf.pod, status, text[:300]), pod=pf.pod, patch=patch)
    except PortForwardError as e:
        module.fail_json(msg='cannot reach Patroni\'s REST API (selector %s): %s' % (p['selector'], e))
    except (IOError, OSError, ValueError) as e:
        module.fail_json(msg='Patroni\'s REST API did not answer as expected: %s' % e)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
