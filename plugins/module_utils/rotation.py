# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Credential rotation without downtime, independent of Kubernetes.

A rotation is a list of ``Step``s run in order; when one fails, the steps
already done are undone in reverse order, so the previous credential keeps
working. Each credential kind builds its steps from the current content of
its Secret and a *store* that publishes new content to the consumers:

- ``store.read()`` returns the current Secret data (key -> str);
- ``store.publish(data)`` makes every consumer use ``data`` and returns once
  they do (in a cluster: patch the Secrets, roll the workloads, wait).

The order is always: make the source of truth accept the new value *as well
as* the old one, check the new value works, publish it, then stop accepting
the old one. Nothing here logs or returns a secret value.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import calendar
import json
import secrets
import string
import time

try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False


class RotationError(Exception):
    def __init__(self, msg, done=None, undone=None, undo_errors=None):
        super(RotationError, self).__init__(msg)
        self.done = done or []
        self.undone = undone or []
        self.undo_errors = undo_errors or []


class Step(object):
    """``undo`` reverts ``do``. ``partial`` steps change several things, so a
    failure halfway is undone too (their ``undo`` is safe on any state)."""

    def __init__(self, name, do, undo=None, partial=False):
        self.name = name
        self.do = do
        self.undo = undo
        self.partial = partial


def run_steps(steps):
    """Run ``steps``; on failure undo the completed ones and raise RotationError."""
    done = []
    for step in steps:
        try:
            step.do()
        except Exception as e:
            undone, undo_errors = [], []
            for previous in ([step] if step.partial else []) + list(reversed(done)):
                if previous.undo is None:
                    continue
                try:
                    previous.undo()
                    undone.append(previous.name)
                except Exception as undo_error:
                    undo_errors.append('%s: %s' % (previous.name, undo_error))
            raise RotationError('%s: %s' % (step.name, e), [s.name for s in done], undone, undo_errors)
        done.append(step)
    return [s.name for s in done]


def generate_password(length=32):
    """Letters and digits only: safe in URLs, connection strings and shells."""
    alphabet = string.ascii_letters + string.digits
    return ''.join(secrets.choice(alphabet) for dummy in range(length))


def publish_step(store, data, previous, what):
    return Step('publish the new %s to the Secrets and roll their workloads' % what,
                lambda: store.publish(data), lambda: store.publish(previous), partial=True)


class PostgresPassword(object):
    """Dual-user alternation. Two login roles (``<owner>_a``, ``<owner>_b``)
    share one NOLOGIN owner role that owns every object. The Secret names the
    active one; a rotation sets a fresh password on the *other* role, publishes
    that role and password, and once every pod uses it removes the password of
    the previous role. Old pods keep connecting with the old pair until they
    are replaced, new pods use the new pair: at no time does a valid Secret
    content fail to log in. A grace window on a single role cannot do this:
    PostgreSQL holds one password per role, so changing it breaks every pod
    that has not yet read the new Secret.

    ``connect(user=None, password=None, dbname=None)`` returns an autocommit
    psycopg connection, as the admin when ``user`` is None.
    """

    what = 'database credential'

    def __init__(self, connect, login_roles, verifier):
        self.connect = connect
        self.login_roles = login_roles
        self.verifier = verifier  # password -> SCRAM verifier

    def _get(self, role):
        with self.connect() as conn:
            row = conn.execute('SELECT rolpassword FROM pg_authid WHERE rolname = %s', (role,)).fetchone()
        if row is None:
            raise RotationError('login role %s does not exist: run tenant_database first' % role)
        return row[0] if not isinstance(row, dict) else row['rolpassword']

    def _set(self, role, verifier):
        quoted = '"%s"' % role.replace('"', '""')
        with self.connect() as conn:
            if verifier is None:
                conn.execute('ALTER ROLE %s PASSWORD NULL' % quoted)
            else:
                # DDL takes no bind parameters; a verifier holds no quote.
                conn.execute("ALTER ROLE %s PASSWORD '%s'" % (quoted, verifier.replace("'", "''")))

    def _login(self, role, password, dbname):
        with self.connect(role, password, dbname) as conn:
            conn.execute('SELECT 1')

    def plan(self, current, new, store):
        active = current.get('username')
        if active not in self.login_roles or len(self.login_roles) != 2:
            raise RotationError('the Secret username %r is not one of the two login roles %s'
                                % (active, self.login_roles))
        standby = [r for r in self.login_roles if r != active][0]
        saved = dict((role, self._get(role)) for role in self.login_roles)
        dbname = current.get('database')
        data = dict(current, username=standby, password=new)
        return [
            Step('set a new password on the standby login role %s' % standby,
                 lambda: self._set(standby, self.verifier(new)), lambda: self._set(standby, saved[standby])),
            Step('log in as %s with the new password' % standby, lambda: self._login(standby, new, dbname)),
            publish_step(store, data, current, self.what),
            Step('log in as %s again now that every workload uses it' % standby,
                 lambda: self._login(standby, new, dbname)),
            Step('remove the password of the previous login role %s' % active,
                 lambda: self._set(active, None), lambda: self._set(active, saved[active])),
        ]


class RedisTarget(object):
    """One server whose ``default`` user takes the clients' password: a Redis
    member, or a Sentinel. ``connect(password)`` returns a redis client logged
    in as ``default``. ``admin`` is None where ``default`` may run ``ACL
    SETUSER`` itself (a Redis member: the rotation logs in with the password
    it keeps, the current one while adding the new, the new one while
    removing the old); on a Sentinel, whose ``default`` user may not,
    ``admin()`` returns a client logged in as a user that may (``rotation``).
    ``name`` names the target in the steps (None: "Redis", one server)."""

    def __init__(self, connect, name=None, admin=None):
        self.connect = connect
        self.name = name
        self.admin = admin

    @property
    def label(self):
        return self.name or 'Redis'

    def setuser(self, auth, rule):
        client = self.admin() if self.admin is not None else self.connect(auth)
        client.execute_command('ACL', 'SETUSER', 'default', 'on', rule)


class RedisPassword(object):
    """Redis ACL users accept several passwords: ``>new`` adds the new one next
    to the current, ``<old`` removes the old one once every client uses the new
    one. ``connect(password)`` returns a redis client for the default user of
    the one server; under Sentinel ``targets`` lists every member and every
    Sentinel (``RedisTarget``), each changed in turn: every one accepts both
    passwords before any client is given the new one, and each refuses the
    old one only once every client has it. A failure undoes the targets done,
    in reverse order."""

    what = 'Redis password'

    def __init__(self, connect=None, targets=None):
        if (connect is None) == (targets is None):
            raise ValueError('RedisPassword: give either connect (one server) or targets')
        self.targets = [RedisTarget(connect)] if targets is None else list(targets)
        if not self.targets:
            raise ValueError('RedisPassword: no target')

    def plan(self, current, new, store):
        old = current.get('password', '')
        for target in self.targets:
            self.check(target, old)
        data = dict(current, password=new)
        add = [Step('make %s accept the new password next to the current one' % t.label,
                    partial_setuser(t, old, '>' + new), partial_setuser(t, old, '<' + new))
               for t in self.targets]
        login = [Step('log in to %s with the new password' % t.label, partial_ping(t, new)) for t in self.targets]
        remove = [Step('make %s refuse the previous password' % t.label,
                       partial_setuser(t, new, '<' + old), partial_setuser(t, new, '>' + old))
                  for t in self.targets]
        return add + login + [publish_step(store, data, current, self.what)] + remove

    @staticmethod
    def check(target, old):
        """Before anything changes: the current password works, and on a
        Sentinel the user that changes it logs in (one server: as ever, the
        client's own error)."""
        try:
            target.connect(old).ping()
        except Exception as e:
            if target.name is None:
                raise
            raise RotationError('%s refuses the current password of the Secret: %s' % (target.label, e))
        if target.admin is not None:
            try:
                target.admin().ping()
            except Exception as e:
                raise RotationError('%s refuses the user that changes its password (%s): run the redis role '
                                    'first, which gives every Sentinel that user' % (target.label, e))


def partial_setuser(target, auth, rule):
    return lambda: target.setuser(auth, rule)


def partial_ping(target, password):
    return lambda: target.connect(password).ping()


class GrafanaAdminPassword(object):
    """Grafana keeps the admin password in its database and reads the Secret
    only on first start: the API changes it, the Secret records it.
    ``request(method, path, user, password, body=None)`` returns the status."""

    what = 'Grafana admin password'

    def __init__(self, request):
        self.request = request

    def _change(self, user, from_password, to_password):
        status = self.request('PUT', '/api/user/password', user, from_password,
                              dict(oldPassword=from_password, newPassword=to_password, confirmNew=to_password))
        if status != 200:
            raise RotationError('Grafana refused the password change (HTTP %s)' % status)

    def _login(self, user, password):
        status = self.request('GET', '/api/user', user, password)
        if status != 200:
            raise RotationError('Grafana refused the login of %s (HTTP %s)' % (user, status))

    def plan(self, current, new, store):
        user, old = current.get('username', 'admin'), current.get('password', '')
        self._login(user, old)
        return [
            Step('change the Grafana admin password', lambda: self._change(user, old, new),
                 lambda: self._change(user, new, old)),
            Step('log in to Grafana with the new password', lambda: self._login(user, new)),
            publish_step(store, dict(current, username=user, password=new), current, self.what),
        ]


def _b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b'=').decode('ascii')


def _b64url_int(value):
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, 'big'))


def kid_time(kid):
    """Creation time encoded at the start of a kid made by JwtKeys, or None."""
    try:
        return calendar.timegm(time.strptime(kid.split('-')[0], '%Y%m%dT%H%M%SZ'))
    except (ValueError, AttributeError):
        return None


class JwtKeys(object):
    """The auth service signs with ``current.pem`` (kid ``current.kid``) and
    accepts every key of ``jwks.json``. Two publications: first the new public
    key joins the JWKS while the old key still signs (every auth pod learns it
    before any token is signed with it), then the new key signs. The old public
    key stays until the key that replaced it has signed for longer than the
    token lifetime; it is dropped by a later rotation."""

    what = 'JWT signing key'

    def __init__(self, algorithm='EdDSA', token_ttl=3600, grace=600, now=time.time):
        self.algorithm = algorithm
        self.token_ttl = token_ttl
        self.grace = grace
        self.now = now

    def new_key(self):
        if self.algorithm == 'EdDSA':
            key = ed25519.Ed25519PrivateKey.generate()
            raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            jwk = dict(kty='OKP', crv='Ed25519', x=_b64url(raw))
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
            numbers = key.public_key().public_numbers()
            jwk = dict(kty='RSA', n=_b64url_int(numbers.n), e=_b64url_int(numbers.e))
        kid = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(self.now())) + '-' + secrets.token_hex(4)
        jwk.update(kid=kid, use='sig', alg=self.algorithm)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode('ascii')
        return kid, pem, jwk

    def kept_keys(self, current):
        """Public keys of the current JWKS that tokens may still need."""
        keys = json.loads(current.get('jwks.json') or '{"keys": []}').get('keys', [])
        active = current.get('current.kid')
        since = kid_time(active)
        if since is not None and self.now() - since > self.token_ttl + self.grace:
            return [k for k in keys if k.get('kid') == active]
        return keys

    def plan(self, current, new, store):
        kid, pem, jwk = self.new_key()
        jwks = json.dumps(dict(keys=self.kept_keys(current) + [jwk]), sort_keys=True)
        accept = dict(current, **{'jwks.json': jwks})
        sign = dict(accept, **{'current.kid': kid, 'current.pem': pem})
        self.kid = kid
        return [
            Step('publish the new public key next to the current ones',
                 lambda: store.publish(accept), lambda: store.publish(current), partial=True),
            # Undoing this leaves the new key accepted but unused: tokens it
            # signed meanwhile stay valid.
            Step('sign with the new key', lambda: store.publish(sign), lambda: store.publish(accept),
                 partial=True),
            Step('check that the published key set verifies the new signing key',
                 lambda: verify_key_set(store.read())),
        ]


def verify_key_set(data):
    """Sign with ``current.pem`` and verify with the JWKS entry of ``current.kid``."""
    key = serialization.load_pem_private_key(data['current.pem'].encode('ascii'), password=None)
    jwks = dict((k['kid'], k) for k in json.loads(data['jwks.json'])['keys'])
    jwk = jwks.get(data['current.kid'])
    if jwk is None:
        raise RotationError('the JWKS has no key %s' % data['current.kid'])
    message = b'superkubernetex key check'
    if isinstance(key, ed25519.Ed25519PrivateKey):
        public = ed25519.Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk['x'] + '=='))
        public.verify(key.sign(message), message)
    else:
        n = int.from_bytes(base64.urlsafe_b64decode(jwk['n'] + '=='), 'big')
        e = int.from_bytes(base64.urlsafe_b64decode(jwk['e'] + '=='), 'big')
        public = rsa.RSAPublicNumbers(e, n).public_key()
        public.verify(key.sign(message, padding.PKCS1v15(), hashes.SHA256()), message,
                      padding.PKCS1v15(), hashes.SHA256())


class StripeKeys(object):
    """Keys come from Stripe (the dashboard), so they are given, not made.
    The new webhook signing secret goes first in ``webhook_secrets`` and the
    previous one stays on the second line, because Stripe keeps signing with
    the old secret during its own overlap; an older one is dropped.
    ``verify(secret_key)`` raises if the API refuses the key."""

    what = 'Stripe keys'

    def __init__(self, secret_key=None, webhook_secret=None, verify=None):
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.verify = verify

    def new_data(self, current):
        data = dict(current)
        if self.secret_key:
            data['secret_key'] = self.secret_key
        lines = [line.strip() for line in current.get('webhook_secrets', '').splitlines() if line.strip()]
        if self.webhook_secret and lines[:1] != [self.webhook_secret]:
            # Installed already: keep the overlap as it is (idempotent).
            data['webhook_secrets'] = '\n'.join([self.webhook_secret] + lines[:1]) + '\n'
        return data

    def plan(self, current, new, store):
        data = self.new_data(current)
        if data == current:
            return []
        steps = []
        if self.verify and self.secret_key and self.secret_key != current.get('secret_key'):
            steps.append(Step('check the new Stripe secret key against the Stripe API',
                              lambda: self.verify(self.secret_key)))
        steps.append(publish_step(store, data, current, self.what))
        return steps
