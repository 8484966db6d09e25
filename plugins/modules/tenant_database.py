#!/usr/bin/python
# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: tenant_database
short_description: Create or remove one isolated PostgreSQL database and its login roles, per tenant or per service
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
  - With O(services), several services share the database without sharing
    a role. Each service gets a C(NOLOGIN) owner role that owns its tables
    (its schema migrations run as it, C(SET ROLE)) and two login roles
    (C(NOINHERIT), members of that owner role only) holding exactly the
    table, column and sequence privileges of O(services[].tables) and
    O(services[].sequences). No role of one service can read, write or
    become a table or role of another. See O(services) for what a run
    corrects.
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
      - Defaults to C(<owner>_a) and C(<owner>_b) (dual-user alternation),
        or to none with O(services).
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
  services:
    description:
      - Services sharing the database, each with roles of its own. O(owner)
        then owns the database and O(schema) only, and has no login roles
        unless O(login_roles) names some.
      - Each run sets, for every service, its owner role (C(NOLOGIN)), its
        login roles (C(LOGIN NOINHERIT), connection limit, member of the
        service's owner role and of nothing else, no C(SET role) default), the
        members of the owner role (its login roles only), and the ownership
        of every table and sequence listed.
      - On O(schema) C(USAGE, CREATE) go to the services' owner roles and
        C(USAGE) to their login roles; every other grant on it, C(PUBLIC)'s
        included, is revoked.
      - On every relation of O(schema), the privileges of C(PUBLIC), of the
        services' owner roles and of their login roles become exactly those
        listed; a relation a service owns but does not list keeps its
        privileges, with a warning. Listed tables and columns that do not
        exist yet (the service's migrations create them at start) are skipped
        and returned in RV(waiting); run the module again once the service
        has started.
    type: list
    elements: dict
    default: []
    suboptions:
      owner:
        description:
          - C(NOLOGIN) role owning the service's tables; its migrations run
            as it (C(SET LOCAL ROLE), the app's C(DATABASE_MIGRATION_ROLE)).
        type: str
        required: true
      login_roles:
        description:
          - The service's two login roles. Defaults to C(<owner>_a) and C(<owner>_b).
        type: list
        elements: str
      password_role:
        description:
          - The login role that receives O(services[].password). Defaults to
            the first of O(services[].login_roles).
        type: str
      password:
        description:
          - Password of O(services[].password_role), as O(password).
        type: str
      tables:
        description:
          - The service's tables (owned by O(services[].owner)), each mapped
            to the privileges of its login roles C({select, insert, update,
            references} -> list of columns), and C(delete) set to true for
            C(DELETE). An empty mapping owns the table and grants nothing.
        type: dict
        default: {}
      sequences:
        description:
          - The service's sequences not linked to one of its tables (those
            follow their table's owner), each mapped to a list of privileges
            of its login roles among C(usage), C(select), C(update).
            Ownership is set here only for a sequence no table owns.
        type: dict
        default: {}
  former_login_roles:
    description:
      - Login roles the services used before they had their own (for
        example C(superkube_a) and C(superkube_b), members of O(owner) that
        start each session as it). While any of them exists and
        O(retire_former_login_roles) is false, they keep C(CONNECT) and
        O(owner) is a member of every service's owner role, so their
        sessions keep working while the services switch to their own roles.
      - Never created.
    type: list
    elements: str
    default: []
  retire_former_login_roles:
    description:
      - Make the O(former_login_roles) C(NOLOGIN), end their sessions, give
        what they own in the database to O(owner), drop them, and remove
        O(owner) from the services' owner roles. Run it once no workload
        uses them (after the services rolled out with their own roles).
      - In check mode the sessions are counted, not ended.
    type: bool
    default: false
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
      selector: app.kubernetes.io/name=postgres,cluster-name=postgres,role=primary

- name: The shared database of auth and payment, each service with its own roles and grants
  superkubernetex.platform.tenant_database:
    name: superkube
    owner: superkube
    services:
      - owner: superkube_auth
        password: "{{ auth_db_password }}"
        tables:
          users: {select: [id, email, password_hash], insert: [email, password_hash]}
          auth_schema_migrations: {}
      - owner: superkube_payment
        password_role: superkube_payment_b
        password: "{{ payment_db_password }}"
        tables:
          plans: {select: [id, name, amount_cents, currency, billing_interval, stripe_price_id]}
          subscriptions: {select: [user_id, plan_id, status, created_at], insert: [user_id, plan_id, status]}
        sequences:
          subscriptions_id_seq: [usage]
    former_login_roles: [superkube_a, superkube_b]
    login_password: "{{ postgres_superuser_password }}"
    port_forward:
      namespace: skx-data
      selector: app.kubernetes.io/name=postgres,cluster-name=postgres,role=primary

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
  description: Owner role first, then the login roles, then each service's owner and login roles.
  returned: always
  type: list
  elements: str
  sample: [instance1, instance1_a, instance1_b]
waiting:
  description:
    - Listed tables (C(table)) and columns (C(table.column)) that do not
      exist yet, so that nothing was granted on them. The services'
      migrations create them when they start; run the module again then.
  returned: when O(services) is set and O(state=present)
  type: list
  elements: str
  sample: [users, subscriptions.updated_at]
former_login_roles:
  description: The O(former_login_roles) that exist after the run (before it in check mode).
  returned: when O(state=present)
  type: list
  elements: str
  sample: [superkube_a, superkube_b]
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
# Privileges a service's login roles may hold: per column, per table, per sequence.
COLUMN_PRIVILEGES = ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
TABLE_PRIVILEGES = ('DELETE',)
SEQUENCE_PRIVILEGES = ('USAGE', 'SELECT', 'UPDATE')
RELATION_KINDS = {'r': 'TABLE', 'p': 'TABLE', 'v': 'VIEW', 'm': 'MATERIALIZED VIEW', 'f': 'FOREIGN TABLE',
                  'S': 'SEQUENCE'}


def q(name):
    return pg_quote_identifier(name, 'role')


def ident(name):
    """An identifier already checked against NAME_RE, quoted."""
    return '"%s"' % name.replace('"', '""')


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
    if p['login_roles'] is None:
        p['login_roles'] = [] if p['services'] else [p['owner'] + '_a', p['owner'] + '_b']
    p['password_role'] = p['password_role'] or (p['login_roles'][0] if p['login_roles'] else None)
    names = [('name', p['name']), ('owner', p['owner']), ('schema', p['schema'])]
    names += [('login_roles', r) for r in p['login_roles']] + [('former_login_roles', r) for r in p['former_login_roles']]
    if p['password_role']:
        names.append(('password_role', p['password_role']))
    if p['metrics_role']:
        names.append(('metrics_role', p['metrics_role']))
    for i, svc in enumerate(p['services']):
        svc['login_roles'] = svc['login_roles'] or [svc['owner'] + '_a', svc['owner'] + '_b']
        svc['password_role'] = svc['password_role'] or svc['login_roles'][0]
        where = 'services[%d]' % i
        names += [(where + '.owner', svc['owner']), (where + '.password_role', svc['password_role'])]
        names += [(where + '.login_roles', r) for r in svc['login_roles']]
        svc['tables'], svc['sequences'] = check_grants(module, where, svc['tables'], svc['sequences'] or {})
        names += [(where + '.tables', t) for t in svc['tables']] + [(where + '.sequences', s) for s in svc['sequences']]
        if svc['password_role'] not in svc['login_roles']:
            module.fail_json(msg='%s.password_role: %s is not one of its login_roles %s'
                                 % (where, svc['password_role'], svc['login_roles']))
    for option, value in names:
        if not NAME_RE.match(value):
            module.fail_json(msg='%s: %r is not a valid name; expected lower-case letters, digits and _, '
                                 'starting with a letter or _, at most 63 characters' % (option, value))
    for option in ('encoding', 'locale'):
        if not WORD_RE.match(p[option]):
            module.fail_json(msg='%s: %r is not a valid %s name' % (option, p[option], option))
    if p['password_role'] and p['password_role'] not in p['login_roles']:
        module.fail_json(msg='password_role: %s is not one of login_roles %s' % (p['password_role'], p['login_roles']))
    if p['password'] and not p['login_roles']:
        module.fail_json(msg='password: there is no login role to give it to (login_roles is empty)')
    if p['owner'] in p['login_roles'] or p['metrics_role'] in [p['owner']] + p['login_roles']:
        module.fail_json(msg='owner, login_roles and metrics_role must be distinct roles')
    roles = [p['owner']] + p['login_roles'] + ([p['metrics_role']] if p['metrics_role'] else []) + p['former_login_roles']
    for svc in p['services']:
        roles += [svc['owner']] + svc['login_roles']
    if len(set(roles)) != len(roles):
        module.fail_json(msg='owner, login_roles, metrics_role, former_login_roles and the owner and login roles '
                             'of each service must be distinct roles')
    relations = [r for svc in p['services'] for r in list(svc['tables']) + list(svc['sequences'])]
    if len(set(relations)) != len(relations):
        module.fail_json(msg='services: a table or sequence belongs to one service only')
    if p['connection_limit'] < 1:
        module.fail_json(msg='connection_limit: expected a positive number, got %d' % p['connection_limit'])


def check_grants(module, where, tables, sequences):
    """The tables and sequences of one service in a canonical form:
    {table: {'columns': {PRIV: set(columns)}, 'table': set(PRIV)}}, {sequence: set(PRIV)}."""
    out_tables, out_sequences = {}, {}
    if not isinstance(tables, dict) or not isinstance(sequences, dict):
        module.fail_json(msg='%s: tables and sequences are mappings' % where)
    for table, grants in tables.items():
        grants = grants or {}
        if not isinstance(grants, dict):
            module.fail_json(msg='%s.tables.%s: expected a mapping of privileges, got %r' % (where, table, grants))
        spec = dict(columns={}, table=set())
        for key, value in grants.items():
            priv = str(key).upper()
            if priv in COLUMN_PRIVILEGES:
                if not isinstance(value, list) or not value:
                    module.fail_json(msg='%s.tables.%s.%s: expected a list of columns' % (where, table, key))
                for column in value:
                    if not isinstance(column, str) or not NAME_RE.match(column):
                        module.fail_json(msg='%s.tables.%s.%s: %r is not a valid column name'
                                             % (where, table, key, column))
                spec['columns'][priv] = set(value)
            elif priv in TABLE_PRIVILEGES:
                if not isinstance(value, bool):
                    module.fail_json(msg='%s.tables.%s.%s: expected true or false' % (where, table, key))
                if value:
                    spec['table'].add(priv)
            else:
                module.fail_json(msg='%s.tables.%s: unknown privilege %r; expected %s' % (
                    where, table, key, ', '.join(p.lower() for p in COLUMN_PRIVILEGES + TABLE_PRIVILEGES)))
        out_tables[table] = spec
    for sequence, privileges in sequences.items():
        privileges = privileges or []
        if not isinstance(privileges, list):
            module.fail_json(msg='%s.sequences.%s: expected a list of privileges' % (where, sequence))
        wanted = set(str(x).upper() for x in privileges)
        if wanted - set(SEQUENCE_PRIVILEGES):
            module.fail_json(msg='%s.sequences.%s: unknown privilege %s; expected usage, select, update'
                                 % (where, sequence, ', '.join(sorted(wanted - set(SEQUENCE_PRIVILEGES))).lower()))
        out_sequences[sequence] = wanted
    return out_tables, out_sequences


def read_roles(cursor, names):
    cursor.execute(
        "SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, "
        "r.rolbypassrls, r.rolinherit, r.rolconnlimit, a.rolpassword, "
        "ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "      WHERE m.member = r.oid) AS member_of, "
        "ARRAY(SELECT u.rolname::text FROM pg_auth_members m JOIN pg_roles u ON u.oid = m.member "
        "      WHERE m.roleid = r.oid) AS members, "
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


def plan_owner(name, role, stmts):
    """A NOLOGIN owner role without special rights; returns its current state."""
    if role is None:
        stmts.add('CREATE ROLE %s NOLOGIN %s' % (q(name), ROLE_LIMITS))
        return dict(member_of=[], members=[])
    if role['rolcanlogin'] or any(role[a] for a in PRIVILEGED):
        stmts.add('ALTER ROLE %s NOLOGIN %s' % (q(name), ROLE_LIMITS))
    return role


def plan_login(p, name, role, password, inherit, stmts):
    """A login role with a connection limit and no special rights, its
    password when given; returns its current state."""
    attrs = 'LOGIN %s %s CONNECTION LIMIT %d' % ('INHERIT' if inherit else 'NOINHERIT', ROLE_LIMITS,
                                                 p['connection_limit'])
    if role is None:
        if password:
            stmts.add('CREATE ROLE %s %s PASSWORD %%s' % (q(name), attrs), secret=scram_verifier(password))
        else:
            stmts.add('CREATE ROLE %s %s' % (q(name), attrs))
        return dict(member_of=[], settings=[])
    if (not role['rolcanlogin'] or role['rolinherit'] != inherit or role['rolconnlimit'] != p['connection_limit']
            or any(role[a] for a in PRIVILEGED)):
        stmts.add('ALTER ROLE %s %s' % (q(name), attrs))
    if password and p['update_password'] == 'always' and not scram_matches(role['rolpassword'], password):
        stmts.add('ALTER ROLE %s PASSWORD %%s' % q(name), secret=scram_verifier(password))
    return role


def plan_roles(p, roles, stmts):
    plan_owner(p['owner'], roles.get(p['owner']), stmts)
    for name in p['login_roles']:
        password = p['password'] if name == p['password_role'] else None
        role = plan_login(p, name, roles.get(name), password, True, stmts)
        if p['owner'] not in role['member_of']:
            stmts.add('GRANT %s TO %s' % (q(p['owner']), q(name)))
        if 'role=%s' % p['owner'] not in role['settings']:
            stmts.add("ALTER ROLE %s SET role = '%s'" % (q(name), p['owner']))
    if p['metrics_role'] and p['metrics_role'] not in roles:
        stmts.add('CREATE ROLE %s NOLOGIN IN ROLE pg_monitor' % q(p['metrics_role']))


def plan_service_roles(p, roles, bridge, stmts):
    """Each service's owner role and login roles; the owner role's members are
    its login roles, and O(owner) while former login roles bridge."""
    for svc in p['services']:
        owner = plan_owner(svc['owner'], roles.get(svc['owner']), stmts)
        # An owner role that is a member of another role could become it.
        for other in sorted(owner['member_of']):
            stmts.add('REVOKE %s FROM %s' % (q(other), q(svc['owner'])))
        members = set(svc['login_roles']) | (set([p['owner']]) if bridge else set())
        for member in sorted(set(owner['members']) - members):
            stmts.add('REVOKE %s FROM %s' % (q(svc['owner']), q(member)))
        for name in svc['login_roles']:
            password = svc['password'] if name == svc['password_role'] else None
            # NOINHERIT: the owner role's rights only after SET ROLE (migrations).
            role = plan_login(p, name, roles.get(name), password, False, stmts)
            for other in sorted(set(role['member_of']) - set([svc['owner']])):
                stmts.add('REVOKE %s FROM %s' % (q(other), q(name)))
            if svc['owner'] not in role['member_of'] and name not in owner['members']:
                stmts.add('GRANT %s TO %s' % (q(svc['owner']), q(name)))
            if any(s.startswith('role=') for s in role['settings']):
                stmts.add('ALTER ROLE %s RESET role' % q(name))
        if bridge and p['owner'] not in owner['members']:
            stmts.add('GRANT %s TO %s' % (q(svc['owner']), q(p['owner'])))


def connect_grantees(p, former):
    """Who gets CONNECT on the database."""
    names = p['login_roles'] + [r for svc in p['services'] for r in svc['login_roles']] + list(former)
    return names + ([p['metrics_role']] if p['metrics_role'] else [])


def plan_database(p, db, stmts, grantees):
    name = q(p['name'])
    if db['owner'] != p['owner']:
        stmts.add('ALTER DATABASE %s OWNER TO %s' % (name, q(p['owner'])))
    wanted = dict((r, set(['CONNECT'])) for r in grantees)
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


def grantee_sql(column):
    return "CASE WHEN %s = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(%s) END" % (column, column)


def read_objects(cursor, schema):
    """The schema's grants and its relations: owner, kind, columns, grants."""
    state = dict(schema_grants={}, relations={})
    cursor.execute(
        "SELECT %s AS grantee, a.privilege_type FROM pg_namespace n, "
        "aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a "
        "WHERE n.nspname = %%s AND a.grantee <> n.nspowner" % grantee_sql('a.grantee'), (schema,))
    for row in cursor.fetchall():
        state['schema_grants'].setdefault(row['grantee'], set()).add(row['privilege_type'])
    cursor.execute(
        "SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner) AS owner, "
        "EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
        "        AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')) AS linked, "
        "ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 "
        "      AND NOT a.attisdropped ORDER BY a.attnum) AS columns "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')", (schema,))
    for row in cursor.fetchall():
        state['relations'][row['relname']] = dict(kind=row['relkind'], owner=row['owner'], linked=row['linked'],
                                                  columns=row['columns'], table={}, columns_acl={})
    cursor.execute(
        "SELECT c.relname, %s AS grantee, a.privilege_type FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a "
        "WHERE n.nspname = %%s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND a.grantee <> c.relowner"
        % grantee_sql('a.grantee'), (schema,))
    for row in cursor.fetchall():
        state['relations'][row['relname']]['table'].setdefault(row['grantee'], set()).add(row['privilege_type'])
    cursor.execute(
        "SELECT c.relname, t.attname, %s AS grantee, a.privilege_type FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute t ON t.attrelid = c.oid, "
        "aclexplode(t.attacl) a WHERE n.nspname = %%s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
        "AND t.attnum > 0 AND NOT t.attisdropped AND t.attacl IS NOT NULL" % grantee_sql('a.grantee'), (schema,))
    for row in cursor.fetchall():
        acl = state['relations'][row['relname']]['columns_acl'].setdefault(row['grantee'], {})
        acl.setdefault(row['privilege_type'], set()).add(row['attname'])
    return state


def empty_objects():
    """A fresh database's public schema (PostgreSQL 15+): nothing in it."""
    return dict(schema_grants={'PUBLIC': set(['USAGE'])}, relations={})


def describe(table_privs, column_privs):
    """Privileges in the shape the diff shows: ['INSERT (a, b)', 'SELECT (a)', 'DELETE']."""
    out = ['%s (%s)' % (priv, ', '.join(sorted(cols))) for priv, cols in sorted(column_privs.items()) if cols]
    return sorted(out + sorted(table_privs))


def plan_objects(p, state, stmts, former, bridge):
    """Ownership and privileges inside the database, for O(services).
    Returns (waiting, before, after, warnings)."""
    schema = p['schema']
    services = p['services']
    waiting, warnings = [], []
    before, after = dict(schema={}, relations={}), dict(schema={}, relations={})

    # The schema: services' owners create in it, their login roles use it.
    wanted = {}
    for svc in services:
        wanted[svc['owner']] = set(['USAGE', 'CREATE'])
        for name in svc['login_roles']:
            wanted[name] = set(['USAGE'])
    for grantee in sorted(set(state['schema_grants']) | set(wanted)):
        have, want = state['schema_grants'].get(grantee, set()), wanted.get(grantee, set())
        who = grantee if grantee == 'PUBLIC' else q(grantee)
        if have - want:
            stmts.add('REVOKE %s ON SCHEMA %s FROM %s' % (', '.join(sorted(have - want)), q(schema), who))
        if want - have:
            stmts.add('GRANT %s ON SCHEMA %s TO %s' % (', '.join(sorted(want - have)), q(schema), who))
        if have:
            before['schema'][grantee] = sorted(have)
        if want:
            after['schema'][grantee] = sorted(want)

    # Ownership of the listed tables and sequences.
    listed = {}
    for svc in services:
        for name in list(svc['tables']) + list(svc['sequences']):
            listed[name] = svc
    owners = dict((svc['owner'], svc) for svc in services)
    final_owner = {}
    for name, rel in sorted(state['relations'].items()):
        svc = listed.get(name)
        final_owner[name] = rel['owner']
        if svc is None:
            continue
        final_owner[name] = svc['owner']
        if rel['owner'] == svc['owner']:
            continue
        if rel['kind'] == 'S' and rel['linked']:
            # ALTER TABLE ... OWNER moves a table's sequences with it.
            continue
        stmts.add('ALTER %s %s.%s OWNER TO %s' % (RELATION_KINDS[rel['kind']], ident(schema), ident(name),
                                                  q(svc['owner'])))
    for name in sorted(listed):
        if name not in state['relations']:
            waiting.append(name)

    # Privileges of PUBLIC and of every service role, on every relation.
    grantees = ['PUBLIC'] + sorted(r for svc in services for r in [svc['owner']] + svc['login_roles'])
    for name, rel in sorted(state['relations'].items()):
        owner = final_owner[name]
        owning = owners.get(owner)
        if owning is None:
            warnings.append('%s.%s belongs to %s, no service: no service role can use it; list it under '
                            'the service whose migrations created it' % (schema, name, owner))
        elif name not in listed:
            warnings.append('%s.%s belongs to %s but is not in its tables: its login roles keep the privileges '
                            'they have on it' % (schema, name, owner))
        svc = listed.get(name)
        for grantee in grantees:
            if grantee == owner:
                continue
            have_t = set(rel['table'].get(grantee, set()))
            have_c = dict((k, set(v)) for k, v in rel['columns_acl'].get(grantee, {}).items())
            if svc is not None and grantee in svc['login_roles']:
                if rel['kind'] == 'S':
                    want_t, want_c = set(svc['sequences'].get(name, set())), {}
                else:
                    spec = svc['tables'].get(name, dict(columns={}, table=set()))
                    want_t, want_c = set(spec['table']), {}
                    for priv, cols in spec['columns'].items():
                        present = cols & set(rel['columns'])
                        waiting.extend('%s.%s' % (name, c) for c in sorted(cols - present))
                        if present:
                            want_c[priv] = present
            elif owning is not None and name not in listed and grantee in owning['login_roles']:
                want_t, want_c = have_t, have_c
            else:
                want_t, want_c = set(), {}
            key = '%s (%s)' % (name, grantee)
            if have_t or any(have_c.values()):
                before['relations'][key] = describe(have_t, have_c)
            if want_t or any(want_c.values()):
                after['relations'][key] = describe(want_t, want_c)
            plan_relation_grants(schema, name, rel['kind'], grantee, have_t, have_c, want_t, want_c, stmts)
    return sorted(set(waiting)), before, after, warnings


def plan_relation_grants(schema, name, kind, grantee, have_t, have_c, want_t, want_c, stmts):
    target = '%s %s.%s' % ('SEQUENCE' if kind == 'S' else 'TABLE', ident(schema), ident(name))
    who = grantee if grantee == 'PUBLIC' else q(grantee)
    revoke = sorted(have_t - want_t)
    if revoke:
        stmts.add('REVOKE %s ON %s FROM %s' % (', '.join(revoke), target, who))
        # Revoking a privilege on a table revokes it on every column too.
        for priv in revoke:
            have_c.pop(priv, None)
    grant = sorted(want_t - have_t)
    if grant:
        stmts.add('GRANT %s ON %s TO %s' % (', '.join(grant), target, who))
    revoke_c, grant_c = [], []
    for priv in COLUMN_PRIVILEGES + tuple(sorted(set(have_c) - set(COLUMN_PRIVILEGES))):
        have, want = have_c.get(priv, set()), want_c.get(priv, set())
        if have - want:
            revoke_c.append('%s (%s)' % (priv, ', '.join(ident(c) for c in sorted(have - want))))
        if want - have:
            grant_c.append('%s (%s)' % (priv, ', '.join(ident(c) for c in sorted(want - have))))
    if revoke_c:
        stmts.add('REVOKE %s ON %s FROM %s' % (', '.join(revoke_c), target, who))
    if grant_c:
        stmts.add('GRANT %s ON %s TO %s' % (', '.join(grant_c), target, who))


def plan_retire(p, former, stmts):
    """What is left of the former login roles: given to the owner, dropped."""
    for name in former:
        stmts.add('REASSIGN OWNED BY %s TO %s' % (q(name), q(p['owner'])))
        stmts.add('DROP OWNED BY %s' % q(name))
        stmts.add('DROP ROLE %s' % q(name))


def view(p, roles, db, schema_owner, password_changed=()):
    """What the diff shows: managed properties only, never a password."""
    result = dict(database=None, roles={})
    if db is not None:
        result['database'] = dict(
            name=p['name'], owner=db['owner'], encoding=db['encoding'], locale=db['datcollate'],
            schema_owner=schema_owner,
            connect=sorted(g for g, privs in db['grants'].items() if 'CONNECT' in privs))
    password_roles = [p['password_role']] + [svc['password_role'] for svc in p['services']]
    for name, role in sorted(roles.items()):
        result['roles'][name] = dict(
            login=role['rolcanlogin'], connection_limit=role['rolconnlimit'], member_of=sorted(role['member_of']),
            password='set' if role.get('rolpassword') else 'none')
        if name in password_roles and name in password_changed:
            result['roles'][name]['password'] = 'changed'
    return result


def desired_view(p, roles, former, bridge):
    """The state ensured by the module, in the shape of view()."""
    wanted = {p['owner']: dict(rolcanlogin=False, rolconnlimit=-1, member_of=[])}
    logins = [(name, p['owner'], p['password_role'], p['password']) for name in p['login_roles']]
    for svc in p['services']:
        wanted[svc['owner']] = dict(rolcanlogin=False, rolconnlimit=-1, member_of=[])
        logins += [(name, svc['owner'], svc['password_role'], svc['password']) for name in svc['login_roles']]
    for name, owner, password_role, password in logins:
        current = roles.get(name) or {}
        has_password = bool(current.get('rolpassword')) or (name == password_role and bool(password))
        wanted[name] = dict(rolcanlogin=True, rolconnlimit=p['connection_limit'], member_of=[owner],
                            rolpassword=has_password)
    if bridge:
        wanted[p['owner']]['member_of'] = sorted(svc['owner'] for svc in p['services'])
        for name in former:
            wanted[name] = roles[name]
    if p['metrics_role']:
        wanted[p['metrics_role']] = roles.get(p['metrics_role']) or dict(
            rolcanlogin=False, rolconnlimit=-1, member_of=['pg_monitor'])
    grants = dict((r, set(['CONNECT'])) for r in connect_grantees(p, former if bridge else []))
    db = dict(owner=p['owner'], encoding=p['encoding'], datcollate=p['locale'], datctype=p['locale'], grants=grants)
    return wanted, db


def changed_passwords(p, stmts):
    """The login roles whose password the statements change."""
    return [sql.split('"')[1] for sql, params, dummy in stmts.items if params is not None]


def ensure_present(module, params):
    p = module.params
    owners = [svc['owner'] for svc in p['services']]
    service_logins = [r for svc in p['services'] for r in svc['login_roles']]
    names = ([p['owner']] + p['login_roles'] + owners + service_logins
             + ([p['metrics_role']] if p['metrics_role'] else []) + p['former_login_roles'])
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
    former = [r for r in p['former_login_roles'] if r in roles]
    retire = former if p['retire_former_login_roles'] else []
    bridge = bool(former) and not retire
    grantees = connect_grantees(p, [] if retire else former)

    # Steps: the former roles' sessions are ended first (outside the
    # transaction, after they lose their login); CREATE DATABASE cannot run
    # in a transaction; the schema lives inside the database.
    pre, cluster, create, grants, in_db, dropped = (Statements(), Statements(), Statements(), Statements(),
                                                    Statements(), Statements())
    for name in retire:
        pre.add('ALTER ROLE %s NOLOGIN' % q(name))
    if retire:
        pre.add('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN (%s)'
                % ', '.join("'%s'" % name for name in retire))
    plan_roles(p, roles, cluster)
    plan_service_roles(p, roles, bridge, cluster)
    plan_retire(p, retire, dropped)
    schema_owner, waiting, objects = None, [], None
    if db is None:
        create.add("CREATE DATABASE %s OWNER %s ENCODING '%s' LC_COLLATE '%s' LC_CTYPE '%s' TEMPLATE template0"
                   % (q(p['name']), q(p['owner']), p['encoding'], p['locale'], p['locale']))
        plan_database(p, fresh_database(p), grants, grantees)
        cluster.run(cursor)
        conn.rollback() if module.check_mode else conn.commit()
        if not module.check_mode:
            conn.autocommit = True
            create.run(cursor)
            conn.autocommit = False
            grants.run(cursor)
            conn.commit()
        conn.close()
        if module.check_mode:
            plan_schema(p, 'pg_database_owner' if p['schema'] == 'public' else None, in_db)
            if p['services']:
                objects = plan_objects(p, empty_objects(), in_db, former, bridge)
        else:
            dbconn = connect(module, params, p['name'])
            dbcursor = dbconn.cursor()
            schema_owner = read_schema_owner(dbcursor, p['schema'])
            plan_schema(p, schema_owner, in_db)
            if p['services']:
                objects = plan_objects(p, read_objects(dbcursor, p['schema']) if schema_owner else empty_objects(),
                                       in_db, former, bridge)
            in_db.run(dbcursor)
            dbconn.commit()
            dbconn.close()
    else:
        conn.close()
        # Everything in one transaction of the database itself, so that a
        # preview (rolled back) runs the statements on roles it creates.
        dbconn = connect(module, params, p['name'])
        dbcursor = dbconn.cursor()
        plan_database(p, db, cluster, grantees)
        schema_owner = read_schema_owner(dbcursor, p['schema'])
        plan_schema(p, schema_owner, in_db)
        if p['services']:
            objects = plan_objects(p, read_objects(dbcursor, p['schema']) if schema_owner else empty_objects(),
                                   in_db, former, bridge)
        dbconn.commit()
        if pre.items and not module.check_mode:
            dbconn.autocommit = True
            pre.run(dbcursor)
            dbconn.autocommit = False
        for stmts in (cluster, in_db, dropped):
            stmts.run(dbcursor)
        dbconn.rollback() if module.check_mode else dbconn.commit()
        dbconn.close()

    executed = pre.shown + cluster.shown + create.shown + grants.shown + in_db.shown + dropped.shown
    result = dict(changed=bool(executed), database=p['name'], roles=names[:len(names) - len(p['former_login_roles'])],
                  executed_queries=executed)
    if p['services']:
        waiting, before_objects, after_objects, warnings = objects
        result['waiting'] = waiting
        for warning in warnings:
            module.warn(warning)
    result['former_login_roles'] = former if module.check_mode else [r for r in former if r not in retire]
    if module._diff:
        wanted_roles, wanted_db = desired_view(p, roles, [] if retire else former, bridge)
        password_changed = changed_passwords(p, cluster)
        result['diff'] = dict(before=view(p, roles, db, schema_owner),
                              after=view(p, wanted_roles, wanted_db, p['owner'], password_changed))
        if p['services']:
            result['diff']['before'].update(before_objects)
            result['diff']['after'].update(after_objects)
    return result


def ensure_absent(module, params):
    p = module.params
    names = [p['owner']] + p['login_roles']
    for svc in p['services']:
        names += [svc['owner']] + svc['login_roles']
    names += p['former_login_roles']
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
        services=dict(type='list', elements='dict', default=[], options=dict(
            owner=dict(type='str', required=True),
            login_roles=dict(type='list', elements='str'),
            password_role=dict(type='str', no_log=False),
            password=dict(type='str', no_log=True),
            tables=dict(type='dict', default={}),
            sequences=dict(type='dict', default={}),
        )),
        former_login_roles=dict(type='list', elements='str', default=[]),
        retire_former_login_roles=dict(type='bool', default=False),
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
