#!/usr/bin/python
# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: tenant_database
short_description: Create or remove one tenant's isolated PostgreSQL database and its login roles
version_added: 0.1.0
description:
  - Ensures, in one step, everything a tenant instance needs in PostgreSQL and
    nothing more. A C(NOLOGIN) owner role O(owner) owns the database, its
    schema and every object the application creates.
  - Login roles O(login_roles) are members of the owner role with least
    privilege (C(NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS),
    a connection limit) and start each session as the owner role
    (C(ALTER ROLE ... SET role)), so objects never belong to a login role.
  - Two login roles (C(<owner>_a) and C(<owner>_b) by default) allow a
    password rotation without downtime, see
    M(superkubernetex.platform.secret_rotation). Only O(password_role) gets
    O(password); the module never touches the password of the other login
    roles, so it does not undo a rotation in progress.
  - C(CONNECT) and C(TEMPORARY) are revoked from C(PUBLIC); C(CONNECT) is
    granted only to the login roles and to O(metrics_role), every other grant
    on the database is revoked. Another tenant's roles cannot connect.
  - Passwords are sent as SCRAM-SHA-256 verifiers computed on the control
    node; the plaintext never appears in a statement, a server log or
    RV(executed_queries).
  - Role and privilege changes run in one transaction, rolled back in check
    mode. C(CREATE DATABASE) and C(DROP DATABASE) cannot run in a transaction;
    in check mode they, and what depends on them, are computed and reported,
    not executed.
author:
  - SuperKuberneteX platform team (@superkubernetex)
options:
  name:
    description:
      - Name of the database, for example C(instance1_db).
    type: str
    required: true
  owner:
    description:
      - C(NOLOGIN) role that owns the database, its schema and objects.
      - Defaults to O(name).
    type: str
  login_roles:
    description:
      - Login roles of the tenant, members of O(owner).
      - Defaults to C(<owner>_a) and C(<owner>_b) (dual-user alternation).
    type: list
    elements: str
  password_role:
    description:
      - The login role that receives O(password), the one the tenant currently
        uses. Defaults to the first of O(login_roles).
    type: str
  password:
    description:
      - Password of O(password_role). Without it the role is created without a
        password (it cannot log in) and an existing password is kept.
    type: str
  update_password:
    description:
      - C(always) sets O(password) when it differs from the stored one;
        C(on_create) sets it only when the role is created.
    type: str
    default: always
    choices: [always, on_create]
  connection_limit:
    description:
      - Maximum concurrent connections of each login role.
    type: int
    default: 20
  encoding:
    description:
      - Encoding of the database. Checked, never changed, on an existing database.
    type: str
    default: UTF8
  locale:
    description:
      - C(LC_COLLATE) and C(LC_CTYPE) of the database. Checked, never changed, on
        an existing database.
      - C(C.UTF-8) sorts by code point, so indexes do not depend on the glibc
        version of the server image.
    type: str
    default: C.UTF-8
  schema:
    description:
      - Schema owned by O(owner); created when missing.
    type: str
    default: public
  metrics_role:
    description:
      - Read-only role of the metrics exporter that gets C(CONNECT) so database
        sizes stay visible. Created C(NOLOGIN) and member of C(pg_monitor) when
        missing; its login is managed where the exporter is deployed.
      - Empty to grant nothing.
    type: str
    default: ''
  state:
    description:
      - C(present) ensures the database and roles; C(absent) drops them.
    type: str
    default: present
    choices: [present, absent]
  delete_data:
    description:
      - With O(state=absent), drop the database even when it holds tables or
        other relations. Without it the module refuses and changes nothing.
    type: bool
    default: false
  dump_file:
    description:
      - With O(state=absent), take a final C(pg_dump -Fc) of the database into
        this file on the control node (mode 0600) before dropping it. The
        C(pg_dump) binary must be on the control node.
    type: path
extends_documentation_fragment:
  - superkubernetex.platform.postgres
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
notes:
  - O(login_user) must be a superuser.
  - With O(state=absent), sessions still connected to the database are
    terminated (C(DROP DATABASE ... WITH (FORCE))).
seealso:
  - module: superkubernetex.platform.secret_rotation
  - module: community.postgresql.postgresql_db
'''

EXAMPLES = r'''
- name: Create the instance1 database, its owner and login roles
  superkubernetex.platform.tenant_database:
    name: instance1_db
    owner: instance1
    password: "{{ instance1_db_password }}"
    metrics_role: postgres_exporter
    login_password: "{{ postgres_superuser_password }}"
    port_forward:
      namespace: skx-data
      pod: postgres-0

- name: Remove the instance3 database after a final dump
  superkubernetex.platform.tenant_database:
    name: instance3_db
    owner: instance3
    state: absent
    delete_data: true
    dump_file: /var/backups/skx/instance3_db-final.dump
    login_host: 127.0.0.1
    login_password: "{{ postgres_superuser_password }}"
'''

RETURN = r'''
database:
  description: Name of the database.
  returned: always
  type: str
  sample: instance1_db
roles:
  description: Owner role first, then the login roles.
  returned: always
  type: list
  elements: str
  sample: [instance1, instance1_a, instance1_b]
executed_queries:
  description:
    - Statements executed, or that would be in check mode. Passwords are
      replaced by C(********).
  returned: always
  type: list
  elements: str
  sample: ['CREATE ROLE "instance1_a" LOGIN PASSWORD ********']
dump_file:
  description: Path of the final dump, when one was taken.
  returned: when O(dump_file) is set and a database was dropped
  type: str
relations:
  description: Number of relations the database held, with O(state=absent).
  returned: when O(state=absent) and the database existed
  type: int
'''

import os
import re
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.community.postgresql.plugins.module_utils.database import pg_quote_identifier
from ansible_collections.superkubernetex.platform.plugins.module_utils.postgres import (
    REDACTED,
    connect,
    libpq_env,
    postgres_argument_spec,
    postgres_endpoint,
    scram_matches,
    scram_verifier,
)

NAME_RE = re.compile(r'^[a-z_][a-z0-9_]{0,62}$')
WORD_RE = re.compile(r'^[A-Za-z0-9_.@-]+$')
ROLE_LIMITS = 'NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS'
PRIVILEGED = ('rolsuper', 'rolcreatedb', 'rolcreaterole', 'rolreplication', 'rolbypassrls')
RELATIONS_SQL = ("SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'")


def q(name):
    return pg_quote_identifier(name, 'role')


class Statements(object):
    """Statements to run in order, with what may be shown of each."""

    def __init__(self):
        self.items = []

    def add(self, sql, secret=None):
        shown = sql.replace('%s', REDACTED) if secret is not None else sql
        self.items.append((sql, None if secret is None else (secret,), shown))

    @property
    def shown(self):
        return [shown for dummy, dummy, shown in self.items]

    def run(self, cursor):
        for sql, params, dummy in self.items:
            cursor.execute(sql, params)

    def changes_password(self):
        return any(params is not None for dummy, params, dummy in self.items)


def check_params(module):
    """Fail on bad input, naming the option, before anything is touched."""
    p = module.params
    p['owner'] = p['owner'] or p['name']
    p['login_roles'] = p['login_roles'] or [p['owner'] + '_a', p['owner'] + '_b']
    p['password_role'] = p['password_role'] or p['login_roles'][0]
    names = [('name', p['name']), ('owner', p['owner']), ('schema', p['schema']),
             ('password_role', p['password_role'])] + [('login_roles', r) for r in p['login_roles']]
    if p['metrics_role']:
        names.append(('metrics_role', p['metrics_role']))
    for option, value in names:
        if not NAME_RE.match(value):
            module.fail_json(msg='%s: %r is not a valid name; expected lower-case letters, digits and _, '
                                 'starting with a letter or _, at most 63 characters' % (option, value))
    for option in ('encoding', 'locale'):
        if not WORD_RE.match(p[option]):
            module.fail_json(msg='%s: %r is not a valid %s name' % (option, p[option], option))
    if p['password_role'] not in p['login_roles']:
        module.fail_json(msg='password_role: %s is not one of login_roles %s' % (p['password_role'], p['login_roles']))
    if p['owner'] in p['login_roles'] or p['metrics_role'] in [p['owner']] + p['login_roles']:
        module.fail_json(msg='owner, login_roles and metrics_role must be distinct roles')
    if p['connection_limit'] < 1:
        module.fail_json(msg='connection_limit: expected a positive number, got %d' % p['connection_limit'])


def read_roles(cursor, names):
    cursor.execute(
        "SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, "
        "r.rolbypassrls, r.rolinherit, r.rolconnlimit, a.rolpassword, "
        "ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "      WHERE m.member = r.oid) AS member_of, "
        "coalesce((SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = r.oid "
        "          AND s.setdatabase = 0), '{}') AS settings "
        "FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname = ANY(%s)", (list(names),))
    return dict((row['rolname'], row) for row in cursor.fetchall())


def read_database(cursor, name):
    cursor.execute(
        "SELECT pg_get_userbyid(datdba) AS owner, pg_encoding_to_char(encoding) AS encoding, "
        "datcollate, datctype FROM pg_database WHERE datname = %s", (name,))
    row = cursor.fetchone()
    if row is None:
        return None
    cursor.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee, "
        "a.privilege_type FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
        "WHERE d.datname = %s AND a.grantee <> d.datdba", (name,))
    row['grants'] = {}
    for grant in cursor.fetchall():
        row['grants'].setdefault(grant['grantee'], set()).add(grant['privilege_type'])
    return row


def fresh_database(p):
    """What CREATE DATABASE ... TEMPLATE template0 gives: PUBLIC may connect."""
    return dict(owner=p['owner'], encoding=p['encoding'], datcollate=p['locale'], datctype=p['locale'],
                grants={'PUBLIC': set(['CONNECT', 'TEMPORARY'])})


def plan_roles(p, roles, stmts):
    owner = roles.get(p['owner'])
    if owner is None:
        stmts.add('CREATE ROLE %s NOLOGIN %s' % (q(p['owner']), ROLE_LIMITS))
    elif owner['rolcanlogin'] or any(owner[a] for a in PRIVILEGED):
        stmts.add('ALTER ROLE %s NOLOGIN %s' % (q(p['owner']), ROLE_LIMITS))
    for name in p['login_roles']:
        role = roles.get(name)
        password = p['password'] if name == p['password_role'] else None
        attrs = 'LOGIN INHERIT %s CONNECTION LIMIT %d' % (ROLE_LIMITS, p['connection_limit'])
        if role is None:
            if password:
                stmts.add('CREATE ROLE %s %s PASSWORD %%s' % (q(name), attrs), secret=scram_verifier(password))
            else:
                stmts.add('CREATE ROLE %s %s' % (q(name), attrs))
            role = dict(member_of=[], settings=[])
        else:
            if (not role['rolcanlogin'] or not role['rolinherit'] or role['rolconnlimit'] != p['connection_limit']
                    or any(role[a] for a in PRIVILEGED)):
                stmts.add('ALTER ROLE %s %s' % (q(name), attrs))
            if password and p['update_password'] == 'always' and not scram_matches(role['rolpassword'], password):
                stmts.add('ALTER ROLE %s PASSWORD %%s' % q(name), secret=scram_verifier(password))
        if p['owner'] not in role['member_of']:
            stmts.add('GRANT %s TO %s' % (q(p['owner']), q(name)))
        if 'role=%s' % p['owner'] not in role['settings']:
            stmts.add("ALTER ROLE %s SET role = '%s'" % (q(name), p['owner']))
    if p['metrics_role'] and p['metrics_role'] not in roles:
        stmts.add('CREATE ROLE %s NOLOGIN IN ROLE pg_monitor' % q(p['metrics_role']))


def plan_database(p, db, stmts):
    name = q(p['name'])
    if db['owner'] != p['owner']:
        stmts.add('ALTER DATABASE %s OWNER TO %s' % (name, q(p['owner'])))
    wanted = dict((r, set(['CONNECT'])) for r in p['login_roles'] + [p['metrics_role']] if r)
    for grantee in sorted(set(db['grants']) | set(wanted)):
        have, want = db['grants'].get(grantee, set()), wanted.get(grantee, set())
        who = grantee if grantee == 'PUBLIC' else q(grantee)
        if have - want:
            stmts.add('REVOKE %s ON DATABASE %s FROM %s' % (', '.join(sorted(have - want)), name, who))
        if want - have:
            stmts.add('GRANT %s ON DATABASE %s TO %s' % (', '.join(sorted(want - have)), name, who))


def plan_schema(p, schema_owner, stmts):
    if schema_owner is None:
        stmts.add('CREATE SCHEMA %s AUTHORIZATION %s' % (q(p['schema']), q(p['owner'])))
    elif schema_owner != p['owner']:
        stmts.add('ALTER SCHEMA %s OWNER TO %s' % (q(p['schema']), q(p['owner'])))


def read_schema_owner(cursor, schema):
    cursor.execute("SELECT pg_get_userbyid(nspowner) AS owner FROM pg_namespace WHERE nspname = %s", (schema,))
    row = cursor.fetchone()
    return row and row['owner']


def view(p, roles, db, schema_owner, password_changed=False):
    """What the diff shows: managed properties only, never a password."""
    result = dict(database=None, roles={})
    if db is not None:
        result['database'] = dict(
            name=p['name'], owner=db['owner'], encoding=db['encoding'], locale=db['datcollate'],
            schema_owner=schema_owner,
            connect=sorted(g for g, privs in db['grants'].items() if 'CONNECT' in privs))
    for name, role in sorted(roles.items()):
        result['roles'][name] = dict(
            login=role['rolcanlogin'], connection_limit=role['rolconnlimit'], member_of=sorted(role['member_of']),
            password='set' if role.get('rolpassword') else 'none')
        if name == p['password_role'] and password_changed:
            result['roles'][name]['password'] = 'changed'
    return result


def desired_view(p, roles):
    """The state ensured by the module, in the shape of view()."""
    wanted = {p['owner']: dict(rolcanlogin=False, rolconnlimit=-1, member_of=[])}
    for name in p['login_roles']:
        current = roles.get(name) or {}
        has_password = bool(current.get('rolpassword')) or (name == p['password_role'] and bool(p['password']))
        wanted[name] = dict(rolcanlogin=True, rolconnlimit=p['connection_limit'], member_of=[p['owner']],
                            rolpassword=has_password)
    if p['metrics_role']:
        wanted[p['metrics_role']] = roles.get(p['metrics_role']) or dict(
            rolcanlogin=False, rolconnlimit=-1, member_of=['pg_monitor'])
    grants = dict((r, set(['CONNECT'])) for r in p['login_roles'] + [p['metrics_role']] if r)
    db = dict(owner=p['owner'], encoding=p['encoding'], datcollate=p['locale'], datctype=p['locale'], grants=grants)
    return wanted, db


def ensure_present(module, params):
    p = module.params
    names = [p['owner']] + p['login_roles'] + ([p['metrics_role']] if p['metrics_role'] else [])
    conn = connect(module, params, p['login_db'])
    cursor = conn.cursor()
    roles = read_roles(cursor, names)
    db = read_database(cursor, p['name'])
    if db is not None:
        checks = (('encoding', 'encoding'), ('locale', 'datcollate'), ('locale', 'datctype'))
        mismatch = [(k, db[col]) for k, col in checks if db[col] != p[k]]
        if mismatch:
            module.fail_json(msg='Database %s exists with %s; PostgreSQL cannot change it in place. Set %s to '
                                 'match, or dump and recreate the database.'
                                 % (p['name'], ', '.join('%s %s' % m for m in mismatch), mismatch[0][0]))
    # Three steps because CREATE DATABASE cannot run in a transaction and the
    # schema lives inside the new database.
    cluster, create, grants, in_db = Statements(), Statements(), Statements(), Statements()
    plan_roles(p, roles, cluster)
    schema_owner = None
    if db is None:
        create.add("CREATE DATABASE %s OWNER %s ENCODING '%s' LC_COLLATE '%s' LC_CTYPE '%s' TEMPLATE template0"
                   % (q(p['name']), q(p['owner']), p['encoding'], p['locale'], p['locale']))
        plan_database(p, fresh_database(p), grants)
    else:
        plan_database(p, db, cluster)
    cluster.run(cursor)
    conn.rollback() if module.check_mode else conn.commit()
    if create.items and not module.check_mode:
        conn.autocommit = True
        create.run(cursor)
        conn.autocommit = False
        grants.run(cursor)
        conn.commit()
    conn.close()

    if db is None and module.check_mode:
        plan_schema(p, 'pg_database_owner' if p['schema'] == 'public' else None, in_db)
    else:
        dbconn = connect(module, params, p['name'])
        dbcursor = dbconn.cursor()
        schema_owner = read_schema_owner(dbcursor, p['schema'])
        plan_schema(p, schema_owner, in_db)
        in_db.run(dbcursor)
        dbconn.rollback() if module.check_mode else dbconn.commit()
        dbconn.close()

    executed = cluster.shown + create.shown + grants.shown + in_db.shown
    wanted_roles, wanted_db = desired_view(p, roles)
    result = dict(changed=bool(executed), database=p['name'], roles=names, executed_queries=executed)
    if module._diff:
        result['diff'] = dict(before=view(p, roles, db, schema_owner),
                              after=view(p, wanted_roles, wanted_db, p['owner'], cluster.changes_password()))
    return result


def ensure_absent(module, params):
    p = module.params
    names = [p['owner']] + p['login_roles']
    conn = connect(module, params, p['login_db'], autocommit=True)
    cursor = conn.cursor()
    roles = read_roles(cursor, names)
    db = read_database(cursor, p['name'])
    result = dict(database=p['name'], roles=names)
    stmts = Statements()
    schema_owner = None
    if db is not None:
        dbconn = connect(module, params, p['name'], autocommit=True)
        dbcursor = dbconn.cursor()
        dbcursor.execute(RELATIONS_SQL)
        result['relations'] = dbcursor.fetchone()['n']
        schema_owner = read_schema_owner(dbcursor, p['schema'])
        dbconn.close()
        if result['relations'] and not p['delete_data']:
            module.fail_json(msg='Database %s holds %d relations: nothing was dropped. Set delete_data=true to '
                                 'delete them (and dump_file to keep a final dump).'
                                 % (p['name'], result['relations']), **result)
        if p['dump_file'] and not module.check_mode:
            dump(module, params, p['name'], p['dump_file'])
            result['dump_file'] = p['dump_file']
        stmts.add('DROP DATABASE %s WITH (FORCE)' % q(p['name']))
    for name in reversed(names):
        if name in roles:
            stmts.add('DROP ROLE %s' % q(name))
    if not module.check_mode:
        stmts.run(cursor)
    conn.close()
    result.update(changed=bool(stmts.items), executed_queries=stmts.shown)
    if module._diff:
        result['diff'] = dict(before=view(p, roles, db, schema_owner), after=view(p, {}, None, None))
    return result


def dump(module, params, dbname, path):
    pg_dump = module.get_bin_path('pg_dump', required=True)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        module.fail_json(msg='dump_file: directory %s does not exist' % directory)
    old_umask = os.umask(0o077)
    try:
        rc, dummy, err = module.run_command([pg_dump, '--format=custom', '--file', path],
                                            environ_update=libpq_env(params, dbname))
    finally:
        os.umask(old_umask)
    if rc != 0:
        module.fail_json(msg='pg_dump of %s failed, nothing was dropped: %s' % (dbname, err.strip()))


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        name=dict(type='str', required=True),
        owner=dict(type='str'),
        login_roles=dict(type='list', elements='str'),
        password_role=dict(type='str', no_log=False),
        password=dict(type='str', no_log=True),
        update_password=dict(type='str', default='always', choices=['always', 'on_create'], no_log=False),
        connection_limit=dict(type='int', default=20),
        encoding=dict(type='str', default='UTF8'),
        locale=dict(type='str', default='C.UTF-8'),
        schema=dict(type='str', default='public'),
        metrics_role=dict(type='str', default=''),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        delete_data=dict(type='bool', default=False),
        dump_file=dict(type='path'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_params(module)
    try:
        with postgres_endpoint(module) as params:
            if module.params['state'] == 'present':
                result = ensure_present(module, params)
            else:
                result = ensure_absent(module, params)
    except Exception as e:
        module.fail_json(msg='tenant_database %s failed: %s' % (module.params['name'], to_native(e)),
                         exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == '__main__':
    main()
