#!/bin/bash
# Entrypoint of the platform's PostgreSQL image (images/postgres/Dockerfile). Follows the
# documented interface of the docker.io/library/postgres image: POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
# POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER), POSTGRES_INITDB_ARGS,
# POSTGRES_HOST_AUTH_METHOD, PGDATA, *_FILE variants, and /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz}.
# With `patroni [CONFIG]` as its command it starts Patroni instead (the highly available layout).
set -Eeo pipefail

file_env() { # VAR [default]: allow VAR_FILE to hold the value
  local var=$1 fileVar="${1}_FILE" def=${2:-}
  if [ -n "${!var:-}" ] && [ -n "${!fileVar:-}" ]; then
    echo >&2 "error: both $var and $fileVar are set"; exit 1
  fi
  local val=$def
  if [ -n "${!var:-}" ]; then val=${!var}; elif [ -n "${!fileVar:-}" ]; then val=$(< "${!fileVar}"); fi
  export "$var"="$val"; unset "$fileVar"
}

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi

if { [ "$1" = postgres ] || [ "$1" = patroni ]; } && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA" || true
  chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

if [ "$1" = postgres ]; then
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  : "${POSTGRES_HOST_AUTH_METHOD:=}"
  mkdir -p "$PGDATA"; chmod 700 "$PGDATA" 2>/dev/null || true
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
      echo >&2 "error: database is uninitialized and superuser password is not specified."
      echo >&2 "  Set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust)."
      exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
    # shellcheck disable=SC2086
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" $POSTGRES_INITDB_ARGS -D "$PGDATA"
    rm -f "$pwfile"
    auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
    sed -ri "s/^#?(listen_addresses\s*=\s*)\S+/\1'*'/" "$PGDATA/postgresql.conf"
    grep -q "^listen_addresses" "$PGDATA/postgresql.conf" || echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"

    export PGPASSWORD="${POSTGRES_PASSWORD:-}"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
    psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    if [ "$POSTGRES_DB" != postgres ]; then
      "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db" ;'
    fi
    psql+=(--dbname "$POSTGRES_DB")
    for f in /docker-entrypoint-initdb.d/*; do
      [ -e "$f" ] || continue
      case "$f" in
        *.sh) if [ -x "$f" ]; then echo "running $f"; "$f"; else echo "sourcing $f"; . "$f"; fi ;;
        *.sql) echo "running $f"; "${psql[@]}" -f "$f" ;;
        *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql[@]}" ;;
        *) echo "ignoring $f" ;;
      esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    unset PGPASSWORD
    echo "PostgreSQL init process complete; ready for start up."
  fi
fi

# Patroni mode: Patroni runs initdb for a new cluster, adopts a data directory it finds, or copies one
# from the leader; none of the single-server steps above apply. Its configuration is CONFIG (default
# /etc/patroni/patroni.yml, the ConfigMap, which holds no secret) merged with the PATRONI_* environment.
# Each password may be given as a file, PATRONI_<USER>_PASSWORD_FILE, as the Secrets are mounted;
# Patroni passes none of the PATRONI_* variables on to PostgreSQL.
if [ "$1" = patroni ]; then
  for user in SUPERUSER REPLICATION REWIND RESTAPI; do
    fileVar=PATRONI_${user}_PASSWORD_FILE
    if [ -n "${!fileVar:-}" ]; then file_env "PATRONI_${user}_PASSWORD"; fi
  done
  if [ $# -eq 1 ]; then set -- patroni /etc/patroni/patroni.yml; fi
fi

exec "$@"
