# PostgreSQL 15 from Debian with an entrypoint that honours the upstream image's interface:
# POSTGRES_PASSWORD / POSTGRES_USER / POSTGRES_DB / POSTGRES_INITDB_ARGS / POSTGRES_HOST_AUTH_METHOD,
# PGDATA=/var/lib/postgresql/data, /docker-entrypoint-initdb.d, port 5432, user postgres uid 999.
REF=docker.io/library/postgres:15
KIND=debian
PACKAGES="postgresql-15 postgresql-client-15 locales tzdata gzip"
USERS="postgres:999:999:/var/lib/postgresql"
CUSTOMIZE='echo "en_US.UTF-8 UTF-8" > "$1/etc/locale.gen"; chroot "$1" locale-gen >/dev/null;
  mkdir -p "$1/docker-entrypoint-initdb.d" "$1/var/lib/postgresql/data" "$1/var/run/postgresql";
  chroot "$1" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql; chmod 3777 "$1/var/run/postgresql"'
ADD=("postgres/docker-entrypoint.sh:/usr/local/bin/docker-entrypoint.sh:0755")
ENTRYPOINT='["docker-entrypoint.sh"]'
CMD='["postgres"]'
ENV=("PATH=/usr/local/sbin:/usr/local/bin:/usr/lib/postgresql/15/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  "PG_MAJOR=15" "PGDATA=/var/lib/postgresql/data" "LANG=en_US.utf8")
PORTS="5432/tcp"
VOLUMES="/var/lib/postgresql/data"
STOP_SIGNAL=SIGINT
