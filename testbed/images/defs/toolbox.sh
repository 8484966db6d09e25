# Small image for Jobs (backups, migrations, checks): psql/pg_dump, redis-cli, curl, python3.
REF=ghcr.io/superkubernetex/toolbox:1.0.0
KIND=debian
PACKAGES="postgresql-client-15 redis-tools curl python3 ca-certificates gzip jq"
CMD='["bash"]'
