#!/usr/bin/env bash
# Builds the observability binaries the tests run, from Go modules, into
# /var/cache/skx/bin (kept between runs; a present binary is not rebuilt):
#   promtool      2.42.0 with Kubernetes service discovery (Debian's promtool
#                 is built without it and rejects kubernetes_sd_configs)
#   victoria-logs, vlagent  v1.52.1 (the log store and collector)
#   prometheus-k8s  Prometheus 2.42.0 with Kubernetes SD, with --with-prometheus
#                 (the testbed test runs it against the cluster from here)
# Debian packages used as they are: prometheus, prometheus-alertmanager (amtool).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${SKX_BIN:-/var/cache/skx/bin}
SRC=${SKX_SRC:-/var/cache/skx/src}
VL_VERSION=v1.52.1
PROM_VERSION=v0.42.0   # Go module version of Prometheus 2.42.0 (platform_images.prometheus)
mkdir -p "$BIN" "$SRC"
export GOBIN=$BIN GOFLAGS=-buildvcs=false

if [ ! -x "$BIN/victoria-logs" ] || [ ! -x "$BIN/vlagent" ]; then
  echo "building victoria-logs and vlagent $VL_VERSION"
  nice -n 19 go install \
    "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@$VL_VERSION" \
    "github.com/VictoriaMetrics/VictoriaLogs/app/vlagent@$VL_VERSION"
fi

# Prometheus' go.mod has replace and exclude directives, which
# "go install pkg@version" refuses: build from the small wrapper module in
# tools/prometheus (requires the release, copies upstream's two replace
# lines, and pins every dependency in its go.sum so builds repeat).
prometheus_module() {
  mkdir -p "$SRC/prometheus-$PROM_VERSION"
  cp "$HERE"/tools/prometheus/{go.mod,go.sum,tools.go} "$SRC/prometheus-$PROM_VERSION/"
  cd "$SRC/prometheus-$PROM_VERSION"
}

if [ ! -x "$BIN/promtool" ]; then
  echo "building promtool (Prometheus $PROM_VERSION) with Kubernetes service discovery"
  prometheus_module
  nice -n 19 go build -o "$BIN/promtool" github.com/prometheus/prometheus/cmd/promtool
fi

# Prometheus itself, for the testbed test that runs it from this machine.
if [ "${1:-}" = "--with-prometheus" ] && [ ! -x "$BIN/prometheus-k8s" ]; then
  echo "building prometheus (Prometheus $PROM_VERSION) with Kubernetes service discovery"
  prometheus_module
  nice -n 19 go build -o "$BIN/prometheus-k8s" github.com/prometheus/prometheus/cmd/prometheus
fi
ls -l "$BIN"/promtool "$BIN"/victoria-logs "$BIN"/vlagent
