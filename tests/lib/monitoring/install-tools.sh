#!/usr/bin/env bash
# Builds the observability binaries the tests run, from Go modules, into
# /var/cache/skx/bin (kept between runs; a present binary is not rebuilt):
#   promtool      2.42.0 with Kubernetes service discovery (Debian's promtool
#                 is built without it and rejects kubernetes_sd_configs)
#   victoria-logs, vlagent  v1.52.1 (the log store and collector)
#   prometheus-k8s  Prometheus 2.42.0 with Kubernetes SD, with --with-prometheus
#                 (the testbed test runs it against the cluster from here)
#   registry      only when named (tests/integration/images): the OCI
#                 registry (github.com/distribution/distribution/v3) that
#                 playbooks/images.yml pushes to in its test
#   kube-score    only when named (tests/static/test_kube_score.py): the
#                 second policy scanner of the rendered manifests; a binary
#                 of another version than versions.env's is rebuilt
# Debian packages used as they are: prometheus, prometheus-alertmanager (amtool).
#
# The testbed images (testbed/images/defs/prometheus.sh, victoria-logs.sh,
# vlagent.sh) are built from the same script: testbed/lib/components.sh runs
#   SKX_BIN=<dir> CGO_ENABLED=0 install-tools.sh prometheus-k8s | victoria-logs vlagent
# (explicit names build only those). The versions live in testbed/versions.env.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../../testbed/versions.env
. "$HERE/../../../testbed/versions.env"
BIN=${SKX_BIN:-/var/cache/skx/bin}
SRC=${SKX_SRC:-/var/cache/skx/src}
VL_VERSION=$VICTORIALOGS_VERSION
PROM_VERSION=$PROMETHEUS_VERSION
KS_VERSION=$KUBE_SCORE_VERSION
mkdir -p "$BIN" "$SRC"
export GOBIN=$BIN GOFLAGS=-buildvcs=false GOTOOLCHAIN=${GOTOOLCHAIN:-local}

case "${1:-}" in
  "") TOOLS="promtool victoria-logs vlagent" ;;
  --with-prometheus) TOOLS="promtool victoria-logs vlagent prometheus-k8s" ;;
  *) TOOLS="$*" ;;
esac
named() { case " $TOOLS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
want() { named "$1" && [ ! -x "$BIN/$1" ]; }

# kube-score prints the version it was built with (-X main.version): a
# present binary of another version is rebuilt.
if named kube-score && ! { [ -x "$BIN/kube-score" ] && "$BIN/kube-score" version | grep -q "version: $KS_VERSION,"; }; then
  echo "building kube-score $KS_VERSION"
  nice -n 19 go install -trimpath -ldflags "-s -w -X main.version=$KS_VERSION" "github.com/zegl/kube-score/cmd/kube-score@$KS_VERSION"
fi

# The registry prints its version (registry --version): another is rebuilt.
if named registry && ! { [ -x "$BIN/registry" ] && "$BIN/registry" --version | grep -q " $REGISTRY_VERSION"; }; then
  echo "building registry $REGISTRY_VERSION"
  nice -n 19 go install -trimpath -ldflags "-s -w -X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION" \
    "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"
fi

for tool in victoria-logs vlagent; do
  if want "$tool"; then
    echo "building $tool $VL_VERSION"
    nice -n 19 go install -trimpath -ldflags "-s -w" "github.com/VictoriaMetrics/VictoriaLogs/app/$tool@$VL_VERSION"
  fi
done

# Prometheus' go.mod has replace and exclude directives, which
# "go install pkg@version" refuses: build from the small wrapper module in
# tools/prometheus (requires the release, copies upstream's two replace
# lines, and pins every dependency in its go.sum so builds repeat).
prometheus_module() {
  grep -q "github.com/prometheus/prometheus $PROM_VERSION\$" "$HERE/tools/prometheus/go.mod" \
    || { echo "tools/prometheus/go.mod does not require prometheus $PROM_VERSION (testbed/versions.env)" >&2; exit 1; }
  mkdir -p "$SRC/prometheus-$PROM_VERSION"
  cp "$HERE"/tools/prometheus/{go.mod,go.sum,tools.go} "$SRC/prometheus-$PROM_VERSION/"
  cd "$SRC/prometheus-$PROM_VERSION"
}

if want promtool; then
  echo "building promtool (Prometheus $PROM_VERSION) with Kubernetes service discovery"
  ( prometheus_module
    nice -n 19 go build -trimpath -ldflags "-s -w" -o "$BIN/promtool" github.com/prometheus/prometheus/cmd/promtool )
fi

# Prometheus itself: the testbed image, and the testbed test that runs it from this machine.
if want prometheus-k8s; then
  echo "building prometheus (Prometheus $PROM_VERSION) with Kubernetes service discovery"
  ( prometheus_module
    nice -n 19 go build -trimpath -o "$BIN/prometheus-k8s" \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=2.${PROM_VERSION#v0.}" github.com/prometheus/prometheus/cmd/prometheus )
fi
for tool in $TOOLS; do ls -l "$BIN/$tool"; done
