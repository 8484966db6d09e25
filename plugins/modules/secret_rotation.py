#!/usr/bin/python
# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: secret_rotation
short_description: Rotate one credential across its source of truth, its Kubernetes Secrets and its workloads
version_added: 0.1.0
description:
  - Rotates one credential in one step and without downtime. The module makes
    the source of truth accept the new value next to the current one, checks
    the new value works, patches every Secret in O(secrets), rolls every
    workload in O(restart) (pod template annotation C(checksum/<secret>)
    carrying the digest of the Secret), waits for the rollouts, and only then
    stops accepting the previous value.
  - If any step fails, the steps already done are undone in reverse order
    (Secrets and annotations restored, workloads rolled back, the new value
    removed from the source of truth), so the previous credential keeps
    working. The failure message lists what was done and undone.
  - Secret values are never logged, returned or shown in a diff; the diff only
    says which keys changed.
  - O(kind=postgres) uses dual-user alternation. The Secret names the active
    login role (C(<owner>_a) or C(<owner>_b), created by
    M(superkubernetex.platform.tenant_database)); the rotation sets a fresh
    password on the other one, publishes that role and password, waits for
    every pod to use it, then removes the password of the previous role.
    PostgreSQL keeps one password per role, so a grace window on a single role
    would break every pod that has not yet read the new Secret; two roles
    sharing one C(NOLOGIN) owner role that owns the objects let both
    credentials work during the rollout.
  - O(kind=redis) adds the new password to the Redis C(default) ACL user
    (C(ACL SETUSER default >new)), so both are accepted during the rollout,
    then removes the old one. Redis is changed live and never restarted; its
    own Secret is patched so a restart keeps the new password.
  - Under Sentinel (O(redis.pods) and O(redis.sentinel_port)) the same is done
    on every member and on every Sentinel, whose C(default) user is the
    clients' too. Every one accepts both passwords before the Secrets change,
    and refuses the old one only after the workloads rolled. On a member the
    C(default) user changes its own password; on a Sentinel, whose
    C(default) user may not run C(ACL), the user O(redis.sentinel_user) does.
  - O(kind=jwt) publishes the new public key in C(jwks.json) first and rolls
    the auth service, then makes the new key sign (C(current.kid),
    C(current.pem)) and rolls again. A previous public key stays in the key set
    until the key that replaced it has signed for longer than
    O(jwt_token_ttl); a later rotation drops it.
  - O(kind=stripe) installs keys given by the operator. The new webhook secret
    becomes the first line of C(webhook_secrets) and the previous one stays on
    the second line, so events signed with either are accepted during Stripe's
    overlap; an older one is dropped.
  - O(kind=grafana) changes the admin password through the Grafana API and
    records it in the Secret; Grafana reads that Secret only on first start,
    so no restart is needed.
  - The source of truth is reached from the control node through a
    port-forward opened through the Kubernetes API (see O(port_forward),
    O(redis.pod), O(redis.pods), O(grafana.pod)); nothing is exposed outside the cluster.
author:
  - SuperKuberneteX platform team (@superkubernetex)
options:
  kind:
    description: What the credential is.
    type: str
    required: true
    choices: [postgres, redis, jwt, stripe, grafana]
  secrets:
    description:
      - Secrets holding the credential. The first one is the reference; the
        keys that change are applied to all of them (for example C(redis-auth)
        in C(skx-data) and in C(skx-app)).
    type: list
    elements: dict
    required: true
    suboptions:
      namespace:
        description: Namespace of the Secret.
        type: str
        required: true
      name:
        description: Name of the Secret.
        type: str
        required: true
  restart:
    description:
      - Workloads that consume the Secrets; they are rolled and waited for.
    type: list
    elements: dict
    default: []
    suboptions:
      kind:
        description: Kind of the workload.
        type: str
        default: Deployment
        choices: [Deployment, StatefulSet, DaemonSet]
      namespace:
        description: Namespace of the workload.
        type: str
        required: true
      name:
        description: Name of the workload.
        type: str
        required: true
  value:
    description:
      - New password for O(kind=postgres), O(kind=redis) or O(kind=grafana).
        Generated (O(password_length) letters and digits) when omitted.
      - When the Secret already holds it, nothing changes.
    type: str
  password_length:
    description: Length of a generated password.
    type: int
    default: 32
  rollout_timeout:
    description: Seconds to wait for each workload to roll out.
    type: int
    default: 600
  login_roles:
    description:
      - The two login roles alternated by O(kind=postgres). Defaults to
        C(<base>_a) and C(<base>_b) derived from the Secret's C(username).
    type: list
    elements: str
  redis:
    description: How to reach Redis for O(kind=redis).
    type: dict
    suboptions:
      host:
        description: Host of Redis when neither O(redis.pod) nor O(redis.pods) is set.
        type: str
        default: 127.0.0.1
      port:
        description: Port of Redis.
        type: int
        default: 6379
      namespace:
        description: Namespace of O(redis.pod) or O(redis.pods).
        type: str
      pod:
        description:
          - Pod running Redis, reached through a port-forward.
          - Mutually exclusive with O(redis.pods).
        type: str
      pods:
        description:
          - Every Redis member's pod (under Sentinel, C(redis-0) to C(redis-N)),
            each reached through a port-forward of its own; the password
            changes on each.
          - Mutually exclusive with O(redis.pod).
        type: list
        elements: str
      sentinel_port:
        description:
          - Port of the Sentinel in each pod of O(redis.pod) or O(redis.pods).
            When set, each of those Sentinels' C(default) user is rotated too.
        type: int
      sentinel_user:
        description:
          - The Sentinels' ACL user allowed C(ACL SETUSER) (the redis role's
            C(rotation) user), which changes their C(default) user.
        type: str
        default: rotation
      sentinel_password:
        description:
          - Password of O(redis.sentinel_user) (the redis role keeps it in the
            Secret C(redis-ha-auth), key C(rotation-password)).
          - Required with O(redis.sentinel_port).
        type: str
  grafana:
    description: How to reach Grafana for O(kind=grafana).
    type: dict
    suboptions:
      url:
        description: Base URL of Grafana when O(grafana.pod) is not set.
        type: str
        default: http://127.0.0.1:3000
      port:
        description: Port Grafana listens on in the pod.
        type: int
        default: 3000
      namespace:
        description: Namespace of O(grafana.pod).
        type: str
      pod:
        description: Pod running Grafana, reached through a port-forward.
        type: str
  jwt_algorithm:
    description: Algorithm of a new JWT signing key.
    type: str
    default: EdDSA
    choices: [EdDSA, RS256]
  jwt_token_ttl:
    description:
      - Lifetime of the tokens in seconds (the auth service's C(JWT_TTL_SECONDS)).
    type: int
    default: 3600
  stripe_secret_key:
    description: New Stripe secret key for O(kind=stripe).
    type: str
  stripe_webhook_secret:
    description: New Stripe webhook signing secret for O(kind=stripe).
    type: str
  stripe_api_base:
    description:
      - When set, the new secret key is checked with C(GET /v1/balance) on this
        API before anything changes.
    type: str
extends_documentation_fragment:
  - superkubernetex.platform.kube
  - superkubernetex.platform.postgres
attributes:
  check_mode:
    description: >-
      Reads the Secrets, the workloads and the source of truth with the current
      credential, and patches Secrets and workloads with a server-side dry run.
      Nothing changes.
    support: full
  diff_mode:
    description: Says which Secret keys change, never their values.
    support: full
notes:
  - The connection options (O(login_user), O(port_forward), ...) are used by
    O(kind=postgres) only. Without O(kubeconfig) and O(context), those of
    O(port_forward) select the cluster.
  - Consumers must read the Secret again for new connections, or be listed in
    O(restart).
seealso:
  - module: superkubernetex.platform.tenant_database
'''

EXAMPLES = r'''
- name: Rotate the database credential of instance1
  superkubernetex.platform.secret_rotation:
    kind: postgres
    secrets:
      - {namespace: skx-instance1, name: db-credentials}
    restart:
      - {namespace: skx-instance1, name: instance}
    login_password: "{{ postgres_superuser_password }}"
    port_forward: {namespace: skx-data, selector: "app.kubernetes.io/name=postgres,cluster-name=postgres,role=primary"}

- name: Rotate the Redis password used by Redis and the frontend
  superkubernetex.platform.secret_rotation:
    kind: redis
    secrets:
      - {namespace: skx-data, name: redis-auth}
      - {namespace: skx-app, name: redis-auth}
    restart:
      - {namespace: skx-app, name: frontend}
    redis: {namespace: skx-data, pod: redis-0}

- name: Rotate it under Sentinel, on every member and every Sentinel
  superkubernetex.platform.secret_rotation:
    kind: redis
    secrets:
      - {namespace: skx-data, name: redis-auth}
      - {namespace: skx-app, name: redis-auth}
    restart:
      - {namespace: skx-app, name: frontend}
    redis:
      namespace: skx-data
      pods: [redis-0, redis-1, redis-2]
      sentinel_port: 26379
      sentinel_password: "{{ redis_rotation_password }}"
  no_log: true

- name: Install the new Stripe keys
  superkubernetex.platform.secret_rotation:
    kind: stripe
    secrets:
      - {namespace: skx-app, name: payment-stripe}
    restart:
      - {namespace: skx-app, name: payment}
    stripe_secret_key: "{{ vault_stripe_secret_key }}"
    stripe_webhook_secret: "{{ vault_stripe_webhook_secret }}"
'''

RETURN = r'''
steps:
  description: Steps done (or that would be, in check mode), in order.
  returned: always
  type: list
  elements: str
secrets:
  description: Secrets patched, as C(namespace/name).
  returned: always
  type: list
  elements: str
restarted:
  description: Workloads rolled, as C(Kind namespace/name).
  returned: always
  type: list
  elements: str
username:
  description: Login role now in the Secret (O(kind=postgres)).
  returned: when O(kind=postgres)
  type: str
key_id:
  description: Key id of the new signing key (O(kind=jwt)).
  returned: when O(kind=jwt) and changed
  type: str
'''

import contextlib
import json
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.urls import open_url
from ansible.module_utils.six.moves.urllib.error import HTTPError
from ansible_collections.superkubernetex.platform.plugins.module_utils.kube import KubeSecretStore, kube_argument_spec
from ansible_collections.superkubernetex.platform.plugins.module_utils.kubeapi import HAS_WEBSOCKET, KubeClient
from ansible_collections.superkubernetex.platform.plugins.module_utils.portforward import PortForward
from ansible_collections.superkubernetex.platform.plugins.module_utils.postgres import (
    REDACTED,
    postgres_argument_spec,
    postgres_endpoint,
    scram_verifier,
)
from ansible_collections.superkubernetex.platform.plugins.module_utils.rotation import (
    HAS_CRYPTOGRAPHY,
    GrafanaAdminPassword,
    JwtKeys,
    PostgresPassword,
    RedisPassword,
    RedisTarget,
    RotationError,
    StripeKeys,
    generate_password,
    run_steps,
)

try:
    import psycopg
    HAS_PSYCOPG = True
except ImportError:
    HAS_PSYCOPG = False

try:
    import redis
    HAS_REDIS = True
except ImportError:
    HAS_REDIS = False

ROTATED_KEYS = dict(postgres=['username', 'password'], redis=['password'], grafana=['password'],
                    jwt=['current.kid', 'current.pem', 'jwks.json'], stripe=['secret_key', 'webhook_secrets'])


def check_params(module):
    p = module.params
    if p['kind'] == 'stripe' and not (p['stripe_secret_key'] or p['stripe_webhook_secret']):
        module.fail_json(msg='kind=stripe: set stripe_secret_key and/or stripe_webhook_secret')
    if p['value'] is not None and p['kind'] not in ('postgres', 'redis', 'grafana'):
        module.fail_json(msg='value: only for kind postgres, redis or grafana')
    if p['value'] is not None and len(p['value']) < 16:
        module.fail_json(msg='value: expected at least 16 characters')
    if p['password_length'] < 16:
        module.fail_json(msg='password_length: expected at least 16, got %d' % p['password_length'])
    if not p['secrets']:
        module.fail_json(msg='secrets: expected at least one Secret')
    check_redis_params(module, p['redis'] or {})
    for option in ('redis', 'grafana'):
        target = p[option] or {}
        if bool(target.get('pod') or target.get('pods')) != bool(target.get('namespace')):
            module.fail_json(msg='%s: pod%s and namespace go together' % (option, ' (or pods)' if option == 'redis' else ''))
    missing = [lib for lib, ok, needed in (
        ('websocket-client', HAS_WEBSOCKET, kind_needs_port_forward(p)), ('psycopg', HAS_PSYCOPG, p['kind'] == 'postgres'),
        ('redis', HAS_REDIS, p['kind'] == 'redis'), ('cryptography', HAS_CRYPTOGRAPHY, p['kind'] == 'jwt'))
        if needed and not ok]
    if missing:
        module.fail_json(msg=missing_required_lib(missing[0]))


def check_redis_params(module, target):
    if target.get('pod') and target.get('pods') is not None:
        module.fail_json(msg='redis.pod and redis.pods are mutually exclusive: give redis.pods alone')
    pods = target.get('pods')
    if pods is not None and (not pods or not all(pods) or len(set(pods)) != len(pods)):
        module.fail_json(msg='redis.pods: expected one or more distinct pod names')
    if target.get('sentinel_port') is not None and not (target.get('pod') or pods):
        module.fail_json(msg='redis.sentinel_port: the Sentinels are reached in the pods of redis.pod or redis.pods')
    if (target.get('sentinel_port') is None) != (not target.get('sentinel_password')):
        module.fail_json(msg='redis.sentinel_password: required with redis.sentinel_port, and only with it')


def kind_needs_port_forward(p):
    """Whether the rotation reaches a pod through a port-forward."""
    redis_target = p['redis'] or {}
    return bool(p['port_forward'] or redis_target.get('pod') or redis_target.get('pods')
                or (p['grafana'] or {}).get('pod'))


def redis_targets(api, stack, target):
    """One RedisTarget per member, then one per Sentinel, each through a
    port-forward of its own (one per pod and port)."""
    def client(path, **kwargs):
        return redis.Redis(unix_socket_path=path, socket_timeout=15, **kwargs)

    def member(path):
        return lambda password: client(path, password=password or None)

    def sentinel(path):
        admin = dict(username=target['sentinel_user'], password=target['sentinel_password'])
        return lambda password: client(path, password=password or None), lambda: client(path, **admin)

    pods = target['pods'] or [target['pod']]
    forward = dict((pod, stack.enter_context(PortForward(api, target['namespace'], pod, target['port'])).path)
                   for pod in pods)
    targets = [RedisTarget(member(forward[pod]), 'Redis %s' % pod) for pod in pods]
    for pod in pods if target['sentinel_port'] is not None else []:
        path = stack.enter_context(PortForward(api, target['namespace'], pod, target['sentinel_port'])).path
        connect, admin = sentinel(path)
        targets.append(RedisTarget(connect, 'the Sentinel of %s' % pod, admin))
    return targets


def http_status(url, method='GET', headers=None, body=None, unix_socket=None, **auth):
    try:
        response = open_url(url, method=method, headers=headers, data=body and json.dumps(body),
                            unix_socket=unix_socket, force_basic_auth=bool(auth), timeout=30, **auth)
        return response.getcode()
    except HTTPError as e:
        return e.code


def build_credential(module, api, stack, current):
    """The kind's source of truth, reached through port-forwards held by ``stack``."""
    p = module.params
    if p['kind'] == 'postgres':
        params = stack.enter_context(postgres_endpoint(module, p['kubeconfig'], p['context']))
        roles = p['login_roles']
        if not roles:
            base = (current.get('username') or '').rsplit('_', 1)
            if len(base) != 2 or base[1] not in ('a', 'b'):
                module.fail_json(msg='login_roles: cannot derive the two login roles from the Secret username %r; '
                                     'set login_roles' % current.get('username'))
            roles = [base[0] + '_a', base[0] + '_b']

        def connect(user=None, password=None, dbname=None):
            kwargs = dict(params, dbname=dbname or p['login_db'], autocommit=True, connect_timeout=15)
            if user:
                kwargs.update(user=user, password=password)
            return psycopg.connect(**kwargs)
        return PostgresPassword(connect, roles, scram_verifier)
    if p['kind'] == 'redis':
        target = p['redis'] or dict(host='127.0.0.1', port=6379, pod=None, pods=None, sentinel_port=None)
        if target['pods'] or target['sentinel_port'] is not None:
            return RedisPassword(targets=redis_targets(api, stack, target))
        if target['pod']:
            where = dict(unix_socket_path=stack.enter_context(
                PortForward(api, target['namespace'], target['pod'], target['port'])).path)
        else:
            where = dict(host=target['host'], port=target['port'])
        return RedisPassword(lambda password: redis.Redis(password=password or None, socket_timeout=15, **where))
    if p['kind'] == 'grafana':
        target = p['grafana'] or dict(url='http://127.0.0.1:3000', pod=None)
        socket_path, base = None, target['url'].rstrip('/')
        if target['pod']:
            socket_path = stack.enter_context(
                PortForward(api, target['namespace'], target['pod'], target['port'])).path
            base = 'http://grafana'

        def request(method, path, user, password, body=None):
            return http_status(base + path, method, {'Content-Type': 'application/json'}, body,
                               unix_socket=socket_path, url_username=user, url_password=password)
        return GrafanaAdminPassword(request)
    if p['kind'] == 'jwt':
        return JwtKeys(p['jwt_algorithm'], p['jwt_token_ttl'], grace=p['rollout_timeout'])

    def verify(key):
        status = http_status(p['stripe_api_base'].rstrip('/') + '/v1/balance',
                             headers={'Authorization': 'Bearer ' + key})
        if status != 200:
            raise RotationError('the Stripe API refused the new secret key (HTTP %s)' % status)
    return StripeKeys(p['stripe_secret_key'], p['stripe_webhook_secret'],
                      verify if p['stripe_api_base'] else None)


def scrub(text, values):
    for value in values:
        if value:
            text = text.replace(value, REDACTED)
    return text


def main():
    argument_spec = kube_argument_spec()
    argument_spec.update(postgres_argument_spec())
    argument_spec.update(
        kind=dict(type='str', required=True, choices=list(ROTATED_KEYS)),
        secrets=dict(type='list', elements='dict', required=True, no_log=False, options=dict(
            namespace=dict(type='str', required=True), name=dict(type='str', required=True))),
        restart=dict(type='list', elements='dict', default=[], options=dict(
            kind=dict(type='str', default='Deployment', choices=['Deployment', 'StatefulSet', 'DaemonSet']),
            namespace=dict(type='str', required=True), name=dict(type='str', required=True))),
        value=dict(type='str', no_log=True),
        password_length=dict(type='int', default=32, no_log=False),
        rollout_timeout=dict(type='int', default=600),
        login_roles=dict(type='list', elements='str'),
        redis=dict(type='dict', options=dict(
            host=dict(type='str', default='127.0.0.1'), port=dict(type='int', default=6379),
            namespace=dict(type='str'), pod=dict(type='str'), pods=dict(type='list', elements='str'),
            sentinel_port=dict(type='int'), sentinel_user=dict(type='str', default='rotation'),
            sentinel_password=dict(type='str', no_log=True))),
        grafana=dict(type='dict', options=dict(
            url=dict(type='str', default='http://127.0.0.1:3000'), port=dict(type='int', default=3000),
            namespace=dict(type='str'), pod=dict(type='str'))),
        jwt_algorithm=dict(type='str', default='EdDSA', choices=['EdDSA', 'RS256']),
        jwt_token_ttl=dict(type='int', default=3600, no_log=False),
        stripe_secret_key=dict(type='str', no_log=True),
        stripe_webhook_secret=dict(type='str', no_log=True),
        stripe_api_base=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_params(module)
    p = module.params
    names = ['%s/%s' % (s['namespace'], s['name']) for s in p['secrets']]
    workloads = ['%s %s/%s' % (w['kind'], w['namespace'], w['name']) for w in p['restart']]
    result = dict(changed=False, steps=[], secrets=names, restarted=[])

    forward = p['port_forward'] or {}
    try:
        api = KubeClient(p['kubeconfig'] or forward.get('kubeconfig'), p['context'] or forward.get('context'))
    except Exception as e:
        module.fail_json(msg='Cannot use the cluster (kubeconfig, context): %s' % to_native(e))
    store = KubeSecretStore(api, p['secrets'], p['restart'], p['rollout_timeout'])
    try:
        current = store.read()
    except Exception as e:
        hint = ''
        if getattr(e, 'status', None) == 404:
            hint = 'Create them first (the role that deploys the component does).'
        elif not isinstance(e, RuntimeError):
            hint = 'Check kubeconfig, context and RBAC (get/patch secrets and workloads).'
        reason = getattr(e, 'reason', None) or to_native(e)
        module.fail_json(msg=('Cannot rotate %s (workloads: %s), nothing changed: %s. %s'
                              % (', '.join(names), ', '.join(workloads) or 'none', reason, hint)).strip())
    known = [current.get(k) for k in ('password', 'current.pem', 'secret_key')]
    known.append((p['redis'] or {}).get('sentinel_password'))
    known += current.get('webhook_secrets', '').split()
    new = p['value'] or generate_password(p['password_length'])
    if p['value'] is not None and current.get('password') == p['value']:
        module.exit_json(**result)

    with contextlib.ExitStack() as stack:
        try:
            credential = build_credential(module, api, stack, current)
            steps = credential.plan(current, new, store)
        except Exception as e:
            module.fail_json(msg='Cannot prepare the rotation of %s, nothing changed: %s'
                                 % (', '.join(names), scrub(to_native(e), known + [new])))
        if not steps:
            module.exit_json(**result)
        result.update(changed=True, steps=[s.name for s in steps], restarted=workloads)
        if module.check_mode:
            try:
                store.publish(current, dry_run=True)
            except Exception as e:
                module.fail_json(msg='The dry run of the Secret and workload patches failed: %s'
                                     % scrub(to_native(e), known), **result)
        else:
            try:
                result['steps'] = run_steps(steps)
            except RotationError as e:
                msg = ('Rotation of %s failed at "%s"; undone: %s. The previous credential is in place.'
                       % (', '.join(names), e, ', '.join(e.undone) or 'nothing'))
                if e.undo_errors:
                    msg = ('Rotation of %s failed at "%s" and could NOT be fully undone (%s): check the Secrets '
                           'and the source of truth by hand.' % (', '.join(names), e, '; '.join(e.undo_errors)))
                module.fail_json(msg=scrub(msg, known + [new]), steps_done=e.done, steps_undone=e.undone,
                                 exception=scrub(traceback.format_exc(), known + [new]))
    if p['kind'] == 'postgres':
        result['username'] = store.read().get('username') if not module.check_mode else current['username']
    if p['kind'] == 'jwt' and not module.check_mode:
        result['key_id'] = credential.kid
    if module._diff:
        keys = ROTATED_KEYS[p['kind']]
        result['diff'] = dict(before=dict((n, dict((k, 'hidden') for k in keys)) for n in names),
                              after=dict((n, dict((k, 'hidden, rotated') for k in keys)) for n in names))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
