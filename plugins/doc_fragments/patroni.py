# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Patroni's REST API, reached through a port-forward
    # (module_utils/patroni_api.py): patroni_cluster, patroni_rollout.
    DOCUMENTATION = r'''
options:
  port:
    description: Port of Patroni's REST API in the pod.
    type: int
    default: 8008
  username:
    description: User of the REST API's writing calls (C(restapi.authentication)).
    type: str
  password:
    description: Its password.
    type: str
'''
