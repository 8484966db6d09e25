#!/usr/bin/env bash
# Builds the observability binaries from their Go modules, at the versions of
# testbed/versions.env (the versions platform_images ships), into
# /var/cache/skx/bin (kept between runs). Each binary has a stamp
# ($BIN/.<tool>.version): a binary of another version is rebuilt.
#   prometheus, promtool   PROMETHEUS_VERSION (module v0.3NN.P = Prometheus 3.NN.P;
#                          Kubernetes service discovery included, no web UI assets)
#   alertmanager, amtool   ALERTMANAGER_VERSION
#   pushgateway            PUSHGATEWAY_VERSION
#   node_exporter          NODE_EXPORTER_VERSION
#   redis_exporter         REDIS_EXPORTER_VERSION
#   victoria-logs, vlagent VICTORIALOGS_VERSION (the log store and collector)
#   registry               only when named (tests/integration/images): the OCI
#                          registry (github.com/distribution/distribution/v3)
#                          that playbooks/images.yml pushes to in its test
#   kube-score             only when named (tests/static/test_kube_score.py):
#                          the second policy scanner of the rendered manifests
# Without arguments: the tools the monitoring and backup tests run (promtool,
# prometheus, amtool, alertmanager, pushgateway, victoria-logs, vlagent).
#
# The testbed images (testbed/images/defs/prometheus.sh, alertmanager.sh, ...)
# are built by the same script: testbed/lib/components.sh runs
#   SKX_BIN=<dir> CGO_ENABLED=0 install-tools.sh <tool>...
# so the testbed runs the binaries the tests check the configuration with.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../../testbed/versions.env
. "$HERE/../../../testbed/versions.env"
BIN=${SKX_BIN:-/var/cache/skx/bin}
SRC=${SKX_SRC:-/var/cache/skx/src}
mkdir -p "$BIN" "$SRC"
# Static binaries, as in the images: the tests and the testbed share one build.
export GOBIN=$BIN GOFLAGS=-buildvcs=false GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0

case "${1:-}" in
  "") TOOLS="promtool prometheus amtool alertmanager pushgateway victoria-logs vlagent" ;;
  *) TOOLS="$*" ;;
esac

# tool -> module version, Go package, -ldflags version setting
PROMETHEUS_COMMON=github.com/prometheus/common/version.Version
spec() {
  case "$1" in
    prometheus|promtool) echo "$PROMETHEUS_VERSION github.com/prometheus/prometheus/cmd/$1 $PROMETHEUS_COMMON=$PROMETHEUS_RELEASE" ;;
    alertmanager|amtool) echo "$ALERTMANAGER_VERSION github.com/prometheus/alertmanager/cmd/$1 $PROMETHEUS_COMMON=${ALERTMANAGER_VERSION#v}" ;;
    pushgateway) echo "$PUSHGATEWAY_VERSION github.com/prometheus/pushgateway $PROMETHEUS_COMMON=${PUSHGATEWAY_VERSION#v}" ;;
    node_exporter) echo "$NODE_EXPORTER_VERSION github.com/prometheus/node_exporter $PROMETHEUS_COMMON=${NODE_EXPORTER_VERSION#v}" ;;
    redis_exporter) echo "$REDIS_EXPORTER_VERSION github.com/oliver006/redis_exporter main.BuildVersion=${REDIS_EXPORTER_VERSION#v}" ;;
    victoria-logs|vlagent) echo "$VICTORIALOGS_VERSION github.com/VictoriaMetrics/VictoriaLogs/app/$1 -" ;;
    registry) echo "$REGISTRY_VERSION github.com/distribution/distribution/v3/cmd/registry github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION" ;;
    kube-score) echo "$KUBE_SCORE_VERSION github.com/zegl/kube-score/cmd/kube-score main.version=$KUBE_SCORE_VERSION" ;;
    *) echo "install-tools.sh: unknown tool $1" >&2; return 1 ;;
  esac
}

# Alertmanager embeds its web UI (ui/app/dist), which is built by npm and not
# in the Go module: build from a copy of the module with a one-page
# placeholder there. The API, which the platform and amtool use, is complete.
alertmanager_source() { # VERSION -> prints the source directory
  local dir="$SRC/alertmanager-$1" mod
  if [ ! -f "$dir/.ready" ]; then
    mod=$(cd "$SRC" && go mod download -json "github.com/prometheus/alertmanager@$1" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -n "$mod" ] || { echo "cannot download github.com/prometheus/alertmanager@$1" >&2; return 1; }
    rm -rf "$dir"; cp -r "$mod" "$dir"; chmod -R u+w "$dir"
    for ui in elm mantine; do
      mkdir -p "$dir/ui/app/dist/$ui"
      echo '<!doctype html><title>Alertmanager</title><p>This build serves the API only (/api/v2).' > "$dir/ui/app/dist/$ui/index.html"
    done
    touch "$dir/.ready"
  fi
  echo "$dir"
}

for tool in $TOOLS; do
  read -r version pkg setting < <(spec "$tool")
  stamp="$BIN/.$tool.version"
  if [ -x "$BIN/$tool" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
    continue
  fi
  echo "building $tool $version"
  ldflags="-s -w"
  [ "$setting" = - ] || ldflags="$ldflags -X $setting"
  case "$tool" in
    alertmanager|amtool)
      src=$(alertmanager_source "$version")
      (cd "$src" && nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$BIN/$tool" "./cmd/$tool") ;;
    *) nice -n 19 go install -trimpath -ldflags "$ldflags" "$pkg@$version" ;;
  esac
  echo "$version" > "$stamp"
done
for tool in $TOOLS; do ls -l "$BIN/$tool"; done
