# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Kubernetes API access shared by the collection's modules.

Options and their documentation (doc fragment ``superkubernetex.platform.kube``)
match kubernetes.core so one ``module_defaults`` group serves both.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import traceback

try:
    from kubernetes import client, config
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError:
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()


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
    default = os.environ.get('KUBECONFIG') or os.path.expanduser('~/.kube/config')
    if kubeconfig or context or os.path.exists(default.split(os.pathsep)[0]):
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)
