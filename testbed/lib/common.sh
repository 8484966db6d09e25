# Shared settings and helpers for testbed/up, testbed/down and the image builders.
set -euo pipefail

TESTBED_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../versions.env
. "$TESTBED_DIR/versions.env"

SKX_CACHE="${SKX_CACHE:-/var/cache/skx-testbed}"   # survives down; keyed by component+version
SKX_STATE="${SKX_STATE:-/var/lib/skx-testbed}"     # removed by down
SKX_RUN="${SKX_RUN:-/run/skx-testbed}"             # removed by down
SKX_LOG="$SKX_STATE/log"
KUBECONFIG_PATH="$SKX_STATE/admin.kubeconfig"
# The kubectl every step of up/down runs: the versioned build, never a link an
# earlier run may have left. $KUBECTL is the convenience link for operators and
# tests; up makes it right after the build and down removes it.
KUBECTL_BIN="$SKX_CACHE/bin/kubernetes-$K8S_VERSION/kubectl"
KUBECTL="$SKX_CACHE/bin/kubectl"

# Network layout (k3s defaults for pod/service CIDRs).
POD_CIDR=10.42.0.0/24
POD_GW=10.42.0.1
SERVICE_CIDR=10.43.0.0/16
KUBERNETES_SVC_IP=10.43.0.1
CLUSTER_DNS=10.43.0.10
CLUSTER_DOMAIN=cluster.local
NODE_IF=skx-node          # bridge without ports, carries only the node address
NODE_IP=10.44.0.1
CNI_BRIDGE=skx-cni0
NODE_NAME="${SKX_NODE_NAME:-skx-testbed}"
ETCD_CLIENT_PORT=23790
ETCD_PEER_PORT=23800
APISERVER_PORT=6443

export GOFLAGS="-p=2 ${GOFLAGS:-} -buildvcs=false -mod=mod"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export PATH="/usr/local/go/bin:$PATH"

log() { printf '[testbed %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# retry N CMD...: run CMD up to N times with a growing pause (network steps).
retry() {
  local n=$1 i=1; shift
  until "$@"; do
    if [ "$i" -ge "$n" ]; then return 1; fi
    log "retry $i/$n failed: $*"; sleep $((i * 5)); i=$((i + 1))
  done
}

apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive retry 3 apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || { retry 2 apt-get -o DPkg::Lock::Timeout=600 update -q >&2; DEBIAN_FRONTEND=noninteractive retry 3 apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2; }
}
