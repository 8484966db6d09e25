"""The shared superkube database as roles/postgres provisions it, for tests
against a real PostgreSQL: the grants of roles/postgres/vars/main.yml
(__postgres_superkube_grants, read as they are), the tenant_database
arguments the role passes, and the apps' own migrations run as a login role
would run them (skx_apps.db.migrate with DATABASE_MIGRATION_ROLE)."""
import contextlib
import os

import psycopg
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARS = os.path.join(ROOT, "roles", "postgres", "vars", "main.yml")


def platform_grants():
    """{'superkube_auth': {'tables': ..., 'sequences': ...}, 'superkube_payment': ...}."""
    with open(VARS) as f:
        return yaml.safe_load(f)["__postgres_superkube_grants"]


def superkube_args(pg, database, owner, services, former=(), retire=False, connection_limit=20):
    """tenant_database arguments for a superkube-like database. services:
    [(service owner, password, platform owner name whose grants it gets,
    password_role or None)]."""
    grants = platform_grants()
    return dict(
        login_host=pg.host, login_port=pg.port, login_password=pg.password,
        name=database, owner=owner, connection_limit=connection_limit,
        former_login_roles=list(former), retire_former_login_roles=retire,
        services=[dict(owner=svc_owner, password=password, **({"password_role": role} if role else {}),
                       tables=grants[spec]["tables"], sequences=grants[spec].get("sequences") or {})
                  for svc_owner, password, spec, role in services])


class _Login:
    """What skx_apps.db.migrate needs of a Database: transaction() and
    migration_role, as one login role."""

    def __init__(self, pg, database, user, password, migration_role):
        self.dsn = pg.dsn(database, user, password)
        self.migration_role = migration_role

    @contextlib.contextmanager
    def transaction(self):
        with psycopg.connect(self.dsn, row_factory=psycopg.rows.dict_row) as conn:
            with conn.transaction():
                yield conn


def migrate_as(pg, database, user, password, component, migrations, migration_role):
    """Apply an app's migrations exactly as the app does at start-up."""
    from skx_apps import db as dbmod
    return dbmod.migrate(_Login(pg, database, user, password, migration_role), component, migrations)


def column_privileges(pg, database, roles):
    """{role: {table: {PRIVILEGE: sorted columns}}} granted at column or
    table level (information_schema expands table grants to columns), and
    {role: {relation: sorted table-level privileges}}."""
    columns, tables = {}, {}
    with psycopg.connect(pg.dsn(database)) as conn:
        for role, table, column, privilege in conn.execute(
                "SELECT grantee, table_name, column_name, privilege_type FROM information_schema.column_privileges "
                "WHERE grantee = ANY(%s) AND table_schema = 'public'", (list(roles),)):
            columns.setdefault(role, {}).setdefault(table, {}).setdefault(privilege, []).append(column)
        for role, relation, privilege in conn.execute(
                "SELECT r.rolname, c.relname, a.privilege_type FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a "
                "JOIN pg_roles r ON r.oid = a.grantee WHERE n.nspname = 'public' AND r.rolname = ANY(%s) "
                "AND a.grantee <> c.relowner",
                (list(roles),)):
            tables.setdefault(role, {}).setdefault(relation, []).append(privilege)
    for per_table in columns.values():
        for privileges in per_table.values():
            for privilege in privileges:
                privileges[privilege] = sorted(privileges[privilege])
    for per_relation in tables.values():
        for relation in per_relation:
            per_relation[relation] = sorted(per_relation[relation])
    return columns, tables
