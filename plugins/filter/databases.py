# Copyright: SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE)
"""The logins of the databases roles/postgres provisions, one per credential."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: database_logins
short_description: One item per database login of the postgres role's database list
description:
  - Takes the database list of roles/postgres (C(__postgres_databases)) and
    returns one item per credential. A tenant's database gives one, shared
    by the Secrets of its C(secrets) list, for the login roles of its
    C(owner). A database with C(services) (superkube) gives one per
    service, in that service's C(secret), for the login roles of the
    service's C(owner).
  - Each item has C(database), C(base) (the login roles are C(<base>_a)
    and C(<base>_b)), C(secrets) (the first one keys the credential,
    C(namespace/name)), C(key) and C(service) (true for a service's).
options:
  _input:
    description: The database list.
    type: list
    elements: dict
    required: true
"""


def database_logins(databases):
    logins = []
    for database in databases or []:
        if not isinstance(database, dict) or "database" not in database:
            raise AnsibleFilterError("database_logins: every item needs a database name, got %r" % (database,))
        if database.get("services"):
            for service in database["services"]:
                secrets = [service["secret"]]
                logins.append(dict(database=database["database"], base=service["owner"], secrets=secrets,
                                   service=True, key=_key(secrets)))
        else:
            secrets = list(database.get("secrets") or [])
            if not secrets:
                raise AnsibleFilterError("database_logins: %s has neither services nor secrets"
                                         % database["database"])
            logins.append(dict(database=database["database"], base=database["owner"], secrets=secrets,
                               service=False, key=_key(secrets)))
    return logins


def _key(secrets):
    return "%s/%s" % (secrets[0]["namespace"], secrets[0]["name"])


class FilterModule:
    def filters(self):
        return {"database_logins": database_logins}
