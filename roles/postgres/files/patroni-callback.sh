#!/bin/sh
# Patroni callback (on_start, on_role_change), called as
#   callback.sh SUPERUSER SUPERUSER_PASSWORD_FILE REPLICATION_USER REPLICATION_PASSWORD_FILE ACTION ROLE SCOPE
# (the first four from the configuration: Patroni gives a callback none of
# the PATRONI_* variables of its environment, and appends the last three).
# On the primary, the replication role exists, may log in and replicate,
# and has the password the members use (the Secret postgres-patroni). A new
# cluster gets it from Patroni's bootstrap; a data directory Patroni adopted
# (the single-server layout before it) does not: this is what makes its
# replicas able to copy it. Run again at each start and promotion: a
# rotated password is applied where it is needed.
set -eu
superuser=$1 user=$3
PGPASSWORD=$(cat "$2")
PSQL_REPLICATION_PASSWORD=$(cat "$4")
export PGPASSWORD PSQL_REPLICATION_PASSWORD PGCONNECT_TIMEOUT=5
i=0
# PostgreSQL may still be starting when Patroni calls: bounded retries.
until psql -h 127.0.0.1 -p "${PGPORT:-5432}" -U "$superuser" -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -ge 60 ]; then echo "callback: PostgreSQL did not answer in 60 s" >&2; exit 1; fi
  sleep 1
done
# The password reaches psql through its environment (\getenv), never a
# command line; the statement is not logged.
psql -h 127.0.0.1 -p "${PGPORT:-5432}" -U "$superuser" -d postgres -v ON_ERROR_STOP=1 -v user="$user" -Atq <<'SQL'
SELECT pg_is_in_recovery() AS standby \gset
\if :standby
\quit
\endif
SET log_statement = 'none';
SET log_min_duration_statement = -1;
\getenv password PSQL_REPLICATION_PASSWORD
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') AS missing \gset
\if :missing
CREATE ROLE :"user" WITH REPLICATION LOGIN PASSWORD :'password';
\else
ALTER ROLE :"user" WITH REPLICATION LOGIN PASSWORD :'password';
\endif
SQL
