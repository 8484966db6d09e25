"""Backups of the platform's PostgreSQL databases and Redis, their
verification and their restore.

The same package runs in the backup CronJobs (toolbox image: python3,
postgresql-client, redis-tools; the package is mounted from the ConfigMap
backup-scripts) and in the test suite against real servers:

  PYTHONPATH=<directory holding skx_backup/> python3 -s -P -m skx_backup <command> ...

Standard library only. Configuration comes from the environment (set by the
CronJob manifests), command-line options override it:

  PGHOST, PGPORT                  PostgreSQL server (libpq variables)
  SKX_PG_CREDENTIALS_DIR          directory with files `username`, `password`
                                  (PGUSER/PGPASSWORD are used when it is unset)
  REDIS_HOST, REDIS_PORT          Redis server
  REDIS_PASSWORD_FILE             file holding the Redis password
  SKX_BACKUP_DIR                  backup volume (default /backups)
  SKX_BACKUP_RETENTION_DAYS       age after which local backups are removed (7)
  SKX_PUSHGATEWAY_URL             Pushgateway base URL; empty: no metrics
  SKX_S3_ENDPOINT, SKX_S3_BUCKET  optional S3-compatible export
  SKX_S3_PREFIX, SKX_S3_REGION
  SKX_S3_CREDENTIALS_DIR          files `access_key_id`, `secret_access_key`
  SKX_S3_CA_FILE                  CA bundle for a private endpoint
  SKX_S3_RETENTION_DAYS           age after which exported backups are removed
  SKX_RESULT_FILE                 file that receives the result as JSON
                                  (/dev/termination-log in the pods); unset:
                                  no result file (--result-file overrides)

Layout of the backup volume:
  postgres/<db>/<db>-<YYYYmmddTHHMMSSZ>.dump         pg_dump -Fc
  postgres/<db>/<db>-<...>.dump.sha256               sha256sum -c compatible
  postgres/<db>/<db>-<...>.dump.json                 table row counts and newest
                                                     timestamp, same snapshot
  redis/redis-<YYYYmmddTHHMMSSZ>.rdb (+ .sha256)

Exit status: 0 success, 1 failure, 2 refused (bad input, missing backup,
checksum mismatch): nothing was changed. The result file then holds
{"ok": true, ...what the command returns} or
{"ok": false, "refused": true|false, "msg": "..."}, at most 4096 bytes (the
Kubernetes termination message limit).

Modules: common (errors, log, names), files (checksums, listing, retention),
postgres, redis, s3 (S3 client and export), snapshots, metrics, cli,
pgbackrest (pgBackRest's configuration for an S3 repository, the restore
options for a point in time; used by no command yet).
"""
