# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options of module_utils/postgres.py postgres_argument_spec().
    DOCUMENTATION = r'''
options:
  login_host:
    description:
      - Host of the PostgreSQL server. Empty uses the libpq default (local Unix socket).
      - Ignored when O(port_forward) is set.
    type: str
    default: ''
  login_port:
    description:
      - Port of the PostgreSQL server. Ignored when O(port_forward) is set.
    type: int
    default: 5432
  login_user:
    description:
      - Role the module connects as. It must be a superuser, because the module
        reads password verifiers from C(pg_authid) to stay idempotent.
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user).
    type: str
    default: ''
  login_db:
    description:
      - Maintenance database the module connects to for cluster-wide statements.
    type: str
    default: postgres
  ssl_mode:
    description:
      - libpq C(sslmode). Ignored over the O(port_forward) socket, which is a
        local Unix socket tunnelled through the TLS connection to the Kubernetes API.
    type: str
    default: prefer
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file used to verify the server certificate (libpq C(sslrootcert)).
    type: path
  port_forward:
    description:
      - Reach a PostgreSQL that runs in a Kubernetes pod from the control node
        without exposing it. The module opens a Unix socket in a private
        temporary directory (mode 0700) and carries each connection to the pod
        through the Kubernetes API server, like C(kubectl port-forward) but
        without the binary. Nothing is published outside the cluster; access
        is what the kubeconfig's RBAC grants (C(pods/portforward)).
      - The Kubernetes python client is then required on the control node.
    type: dict
    suboptions:
      namespace:
        description: Namespace of the pod.
        type: str
        required: true
      pod:
        description:
          - Name of the pod running PostgreSQL.
          - One of O(port_forward.pod) and O(port_forward.selector) is required.
        type: str
      selector:
        description:
          - Label selector of the pod running PostgreSQL, resolved once when the
            module starts; exactly one Running pod must match, or the module
            fails naming the pods it found and changes nothing.
          - For the platform's PostgreSQL under Patroni, the primary is
            C(app.kubernetes.io/name=postgres,cluster-name=postgres,role=primary).
            Patroni sets C(role) on the member that holds the leader lock, so
            no pod name is assumed to be the primary.
        type: str
      port:
        description: Port PostgreSQL listens on in the pod.
        type: int
        default: 5432
      kubeconfig:
        description:
          - Kubeconfig file. Defaults to C(KUBECONFIG), then C(~/.kube/config),
            then the in-cluster service account.
        type: path
      context:
        description: Kubeconfig context to use. Defaults to the current context.
        type: str
requirements:
  - psycopg >= 3.1 (or psycopg2)
  - kubernetes (python client), only with O(port_forward)
'''
