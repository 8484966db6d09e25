# Prometheus with Kubernetes service discovery: Debian's package is built
# without it (`field kubernetes_sd_configs not found`), so the binary comes
# from the Go module (tests/lib/monitoring/install-tools.sh, static here). No web
# UI assets (the API and /metrics are what the platform uses).
REF=quay.io/prometheus/prometheus:v2.${PROMETHEUS_VERSION#v0.}
KIND=static
NEEDS=build_prometheus
ADD=("$SKX_CACHE/bin/prometheus-$PROMETHEUS_VERSION/prometheus-k8s:/bin/prometheus:0755"
  "prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:0644")
DIRS=("/prometheus:0755:65534")
ENTRYPOINT='["/bin/prometheus"]'
CMD='["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
USER=nobody
WORKDIR=/prometheus
PORTS="9090/tcp"
VOLUMES="/prometheus"
