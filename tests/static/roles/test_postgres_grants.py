"""The superkube grants: the table of docs/user-guide.md, the list the
postgres role applies (roles/postgres/vars/main.yml) and the rendered
Secrets and app settings that name the roles agree. The database itself is
compared with the list by tests/integration/modules/test_shared_database.py."""
import glob
import os
import re

import yaml

from static_support import ROOT

GUIDE = os.path.join(ROOT, "docs", "user-guide.md")
VARS = os.path.join(ROOT, "roles", "postgres", "vars", "main.yml")
ROW = re.compile(r"^\| (?P<role>[^|]+) \| (?P<what>[^|]+) \| (?P<privileges>[^|]+) \| (?P<why>[^|]+) \|$")
RELATION = re.compile(r"^`(?P<name>[a-z_]+)(?: \((?P<columns>[a-z_, ]+)\))?`$")


def platform_vars():
    with open(VARS) as f:
        return yaml.safe_load(f)


def documented_grants():
    """{owner: {'tables': {table: {privilege: [columns]}}, 'sequences': {sequence: [privileges]}}}
    from the rows of the guide's table naming a service's login roles."""
    with open(GUIDE) as f:
        text = f.read()
    section = text.split("### Who may do what in `superkube`", 1)[1].split("\n## ", 1)[0]
    grants = {}
    for line in section.splitlines():
        row = ROW.match(line)
        login = row and re.match(r"^`(superkube_[a-z]+)_a`, `\1_b`", row["role"])
        if not login:
            continue
        relation = RELATION.match(row["what"].strip())
        assert relation, f"not a table (columns) cell: {row['what']!r}"
        assert row["why"].strip(), f"{line}: every grant says why"
        spec = grants.setdefault(login.group(1), {"tables": {}, "sequences": {}})
        for privilege in row["privileges"].split(","):
            privilege = privilege.strip().lower()
            if relation["columns"]:
                columns = [c.strip() for c in relation["columns"].split(",")]
                spec["tables"].setdefault(relation["name"], {})[privilege] = columns
            else:
                spec["sequences"].setdefault(relation["name"], []).append(privilege)
    return grants


def listed_grants():
    out = {}
    for owner, spec in platform_vars()["__postgres_superkube_grants"].items():
        tables = {t: {p: list(c) for p, c in (g or {}).items()} for t, g in spec["tables"].items() if g}
        out[owner] = {"tables": tables, "sequences": spec.get("sequences") or {}}
    return out


def test_the_guide_shows_exactly_the_grants_the_role_applies():
    documented, listed = documented_grants(), listed_grants()
    assert set(documented) == {"superkube_auth", "superkube_payment"}
    for owner in listed:
        for table, privileges in listed[owner]["tables"].items():
            for privilege, columns in privileges.items():
                assert sorted(documented[owner]["tables"].get(table, {}).get(privilege, [])) == sorted(columns), \
                    f"{owner}: {privilege.upper()} on {table}"
        assert documented[owner] == listed[owner], owner


def test_each_table_belongs_to_one_service_and_no_service_touches_the_other():
    grants = platform_vars()["__postgres_superkube_grants"]
    auth, payment = set(grants["superkube_auth"]["tables"]), set(grants["superkube_payment"]["tables"])
    assert not auth & payment
    assert "users" in auth and "subscriptions" in payment
    # The migrations of each app create exactly its tables.
    apps = os.path.join(ROOT, "apps", "skx_apps")
    for service, tables in (("auth", auth), ("payment", payment)):
        with open(os.path.join(apps, f"{service}.py")) as f:
            created = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", f.read()))
        assert created | {f"{service}_schema_migrations"} == tables, service


def test_the_apps_migrate_as_their_owner_role_and_log_in_with_their_own_secret():
    superkube = platform_vars()["__postgres_superkube"]
    with open(os.path.join(ROOT, "roles", "services", "defaults", "main.yml")) as f:
        services = yaml.safe_load(f)["services_definitions"]
    for svc in superkube["services"]:
        app = svc["secret"]["app"]
        assert services[app]["env"]["DATABASE_MIGRATION_ROLE"] == svc["owner"], app
        assert svc["secret"]["name"] in services[app]["secrets"], app
        assert services[app]["env"]["DATABASE_CREDENTIALS_DIR"].endswith("/" + svc["secret"]["name"]), app
    assert len({svc["owner"] for svc in superkube["services"]}) == len(superkube["services"])


def test_each_service_secret_names_its_own_login_role(rendered):
    secrets = {}
    for path in glob.glob(f"{rendered}/postgres/*.yaml"):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc and doc["kind"] == "Secret" and doc["metadata"]["name"] in ("auth-db", "payment-db"):
                    secrets[doc["metadata"]["name"]] = doc["stringData"]
    assert secrets["auth-db"]["username"] == "superkube_auth_a"
    assert secrets["payment-db"]["username"] == "superkube_payment_a"
    assert secrets["auth-db"]["database"] == secrets["payment-db"]["database"] == "superkube"
