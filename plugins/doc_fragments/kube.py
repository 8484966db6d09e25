# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Cluster selection of module_utils/kube.py kube_argument_spec(), read by
    # module_utils/kubeapi.py.
    DOCUMENTATION = r'''
options:
  kubeconfig:
    description:
      - Kubeconfig file. Defaults to C(KUBECONFIG), then C(~/.kube/config), then
        the in-cluster service account.
    type: path
  context:
    description:
      - Kubeconfig context to use. Defaults to the current context.
    type: str
requirements:
  - PyYAML
  - websocket-client (for a port-forward to a pod)
'''
