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

if [ ! -x "$BIN/promtool" ]; then
  echo "building promtool (Prometheus $PROM_VERSION) with Kubernetes service discovery"
  # Prometheus' go.mod has exclude directives, which "go install pkg@version"
  # refuses: build it from a one-line wrapper module instead.
  mkdir -p "$SRC/promtool"
  cd "$SRC/promtool"
  cat > go.mod <<MOD
module skx/promtool

go 1.21

require github.com/prometheus/prometheus $PROM_VERSION

// As Prometheus' own go.mod: client-go logs through go-kit.
replace (
	k8s.io/klog => github.com/simonpasquier/klog-gokit v0.3.0
	k8s.io/klog/v2 => github.com/simonpasquier/klog-gokit/v3 v3.0.0
)
MOD
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
GO
  go mod tidy
  nice -n 19 go install github.com/prometheus/prometheus/cmd/promtool
fi
# Prometheus itself, for the testbed test run from this machine (optional).
if [ "${1:-}" = "--with-prometheus" ] && [ ! -x "$BIN/prometheus-k8s" ]; then
  cd "$SRC/promtool"
  sed -i 's#^import _ "github.com/prometheus/prometheus/cmd/promtool"#import (\n\t_ "github.com/prometheus/prometheus/cmd/prometheus"\n\t_ "github.com/prometheus/prometheus/cmd/promtool"\n)#' tools.go
  go mod tidy
  nice -n 19 go build -o "$BIN/prometheus-k8s" github.com/prometheus/prometheus/cmd/prometheus
fi
"$BIN/promtool" --version | head -1
"$BIN/victoria-logs" -version
