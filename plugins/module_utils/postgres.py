# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""PostgreSQL connection options and helpers shared by the collection's modules.

Connecting and quoting reuse community.postgresql; this file adds the
port-forward through the Kubernetes API and client-side SCRAM verifiers, so a
plaintext password never travels in a statement nor lands in a server log.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import contextlib
import hashlib
import hmac
import os
import re

from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    connect_to_db,
    ensure_required_libs,
)
from ansible_collections.community.postgresql.plugins.module_utils.saslprep import saslprep
from ansible_collections.superkubernetex.platform.plugins.module_utils.kubeapi import (
    HAS_WEBSOCKET,
    KubeClient,
    KubeConfigError,
)
from ansible_collections.superkubernetex.platform.plugins.module_utils.portforward import (
    PortForward,
    PortForwardError,
)
from ansible.module_utils.basic import missing_required_lib

SCRAM_RE = re.compile(r'^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$')
REDACTED = '********'


def postgres_argument_spec():
    """Connection options, documented in doc fragment superkubernetex.platform.postgres."""
    return dict(
        login_host=dict(type='str', default=''),
        login_port=dict(type='int', default=5432),
        login_user=dict(type='str', default='postgres'),
        login_password=dict(type='str', default='', no_log=True),
        login_db=dict(type='str', default='postgres'),
        ssl_mode=dict(type='str', default='prefer',
                      choices=['allow', 'disable', 'prefer', 'require', 'verify-ca', 'verify-full']),
        ca_cert=dict(type='path'),
        port_forward=dict(type='dict', options=dict(
            namespace=dict(type='str', required=True),
            pod=dict(type='str'),
            selector=dict(type='str'),
            port=dict(type='int', default=5432),
            kubeconfig=dict(type='path'),
            context=dict(type='str'),
        ), mutually_exclusive=[('pod', 'selector')], required_one_of=[('pod', 'selector')]),
    )


@contextlib.contextmanager
def postgres_endpoint(module, kubeconfig=None, context=None):
    """Yield libpq connection parameters (without dbname) for the module's
    options, through a port-forward when ``port_forward`` is set.
    ``kubeconfig``/``context`` are the fallback cluster selection."""
    ensure_required_libs(module)
    p = module.params
    params = dict(user=p['login_user'], sslmode=p['ssl_mode'])
    if p['login_password']:
        params['password'] = p['login_password']
    if p['ca_cert']:
        params['sslrootcert'] = p['ca_cert']
    forward = p.get('port_forward')
    if not forward:
        if p['login_host']:
            params['host'] = p['login_host']
        params['port'] = p['login_port']
        yield params
        return
    if not HAS_WEBSOCKET:
        module.fail_json(msg=missing_required_lib('websocket-client'))
    try:
        api = KubeClient(forward['kubeconfig'] or kubeconfig, forward['context'] or context)
    except (KubeConfigError, IOError, OSError, ValueError) as e:
        module.fail_json(msg='Cannot use the cluster for port_forward: %s' % e)
    try:
        with PortForward(api, forward['namespace'], forward['pod'], forward['port'], forward['selector']) as pf:
            params.update(host=pf.directory, port=pf.port)
            yield params
    except PortForwardError as e:
        module.fail_json(msg='Cannot open the port-forward to PostgreSQL (port_forward): %s' % e)


def connect(module, params, dbname, autocommit=False):
    """A psycopg connection (dict rows, client-side binding) or fail_json."""
    return connect_to_db(module, dict(params, dbname=dbname), autocommit=autocommit)[0]


def libpq_env(params, dbname):
    """Environment for libpq tools (pg_dump): the password never goes in argv."""
    env = dict(os.environ)
    names = dict(host='PGHOST', port='PGPORT', user='PGUSER', password='PGPASSWORD',
                 sslmode='PGSSLMODE', sslrootcert='PGSSLROOTCERT')
    env.update((names[k], str(v)) for k, v in params.items() if k in names)
    env['PGDATABASE'] = dbname
    return env


def scram_verifier(password, salt=None, iterations=4096):
    """The SCRAM-SHA-256 verifier PostgreSQL would store for ``password``."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac('sha256', saslprep(password).encode('utf-8'), salt, iterations)
    client_key = hmac.new(salted, b'Client Key', hashlib.sha256).digest()
    server_key = hmac.new(salted, b'Server Key', hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    return 'SCRAM-SHA-256$%d:%s$%s:%s' % (iterations, _b64(salt), _b64(stored_key), _b64(server_key))


def _b64(raw):
    return base64.b64encode(raw).decode('ascii')


def scram_matches(verifier, password):
    """True when the stored ``verifier`` was made from ``password``."""
    m = SCRAM_RE.match(verifier or '')
    if not m:
        return False
    candidate = scram_verifier(password, base64.b64decode(m.group(2)), int(m.group(1)))
    return hmac.compare_digest(candidate, verifier)
