REF=docker.io/oliver006/redis_exporter:v1.45.0
KIND=debian
PACKAGES="prometheus-redis-exporter"
SYMLINKS=("/usr/bin/prometheus-redis-exporter:/redis_exporter" "/usr/bin/prometheus-redis-exporter:/usr/local/bin/redis_exporter")
ENTRYPOINT='["/redis_exporter"]'
USER=59000:59000
PORTS="9121/tcp"
