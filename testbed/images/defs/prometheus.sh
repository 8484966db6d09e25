# Prometheus with Kubernetes service discovery, from the Go module at the
# version platform_images.prometheus ships (tests/lib/monitoring/install-tools.sh,
# which also builds the promtool the tests check the configuration with).
# Upstream's layout; no web UI assets (the API and /metrics are what the
# platform uses).
REF=quay.io/prometheus/prometheus:v$PROMETHEUS_RELEASE
KIND=static
NEEDS=build_prometheus
ADD=("$SKX_CACHE/bin/prometheus-$PROMETHEUS_VERSION/prometheus:/bin/prometheus:0755"
  "$SKX_CACHE/bin/prometheus-$PROMETHEUS_VERSION/promtool:/bin/promtool:0755"
  "prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:0644")
DIRS=("/prometheus:0755:65534")
ENTRYPOINT='["/bin/prometheus"]'
CMD='["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
USER=nobody
WORKDIR=/prometheus
PORTS="9090/tcp"
VOLUMES="/prometheus"
