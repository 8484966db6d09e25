#!/usr/bin/env bash
# Builds the observability binaries the tests run, from Go modules, into
# /var/cache/skx/bin (kept between runs; a present binary is not rebuilt):
#   promtool      2.42.0 with Kubernetes service discovery (Debian's promtool
#                 is built without it and rejects kubernetes_sd_configs)
#   victoria-logs, vlagent  v1.52.1 (the log store and collector)
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
MOD
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
GO
  go mod tidy
  nice -n 19 go install github.com/prometheus/prometheus/cmd/promtool
fi
"$BIN/promtool" --version | head -1
"$BIN/victoria-logs" -version
