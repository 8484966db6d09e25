# redis_exporter from the Go module at the version platform_images.redis_exporter
# ships (tests/lib/monitoring/install-tools.sh). Upstream's layout and user.
REF=docker.io/oliver006/redis_exporter:$REDIS_EXPORTER_VERSION
KIND=static
NEEDS=build_redis_exporter
ADD=("$SKX_CACHE/bin/redis-exporter-$REDIS_EXPORTER_VERSION/redis_exporter:/redis_exporter:0755")
ENTRYPOINT='["/redis_exporter"]'
USER=59000:59000
PORTS="9121/tcp"
