# The log store: a static binary from the Go module
# github.com/VictoriaMetrics/VictoriaLogs (tests/lib/monitoring/install-tools.sh),
# with upstream's entrypoint name.
REF=docker.io/victoriametrics/victoria-logs:$VICTORIALOGS_VERSION
KIND=static
NEEDS=build_victorialogs
ADD=("$SKX_CACHE/bin/victorialogs-$VICTORIALOGS_VERSION/victoria-logs:/victoria-logs-prod:0755")
ENTRYPOINT='["/victoria-logs-prod"]'
PORTS="9428/tcp"
