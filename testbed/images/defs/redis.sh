# Redis 7.0 from Debian. Like upstream: redis user uid 999, WORKDIR /data, CMD redis-server,
# entrypoint drops root to redis and disables protected mode when no config file is given.
REF=docker.io/library/redis:7.0
KIND=debian
PACKAGES="redis-server"
USERS="redis:999:999:/data"
CUSTOMIZE='mkdir -p "$1/data"; chroot "$1" chown redis:redis /data'
ADD=("redis/docker-entrypoint.sh:/usr/local/bin/docker-entrypoint.sh:0755")
ENTRYPOINT='["docker-entrypoint.sh"]'
CMD='["redis-server"]'
WORKDIR=/data
PORTS="6379/tcp"
VOLUMES="/data"
