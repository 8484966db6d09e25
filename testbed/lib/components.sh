# What each cluster component is built from (see versions.env for versions).

build_kubernetes() {
  local v=$K8S_VERSION sv=$K8S_STAGING_VERSION minor
  minor=$(echo "$v" | cut -d. -f2)
  local staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
    cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api cri-client
    csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
    kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils
    pod-security-admission sample-apiserver sample-cli-plugin sample-controller"
  local s
  H_REQUIRE="k8s.io/kubernetes $v"
  H_REPLACE=""
  for s in $staging; do H_REPLACE+="k8s.io/$s => k8s.io/$s $sv"$'\n'; done
  H_PKGS="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
    k8s.io/kubernetes/cmd/kubectl"
  local ld="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    ld+=" -X $pkg.buildDate=2026-01-01T00:00:00Z"
  done
  H_LDFLAGS="$ld" H_TAGS="" H_CGO=0 H_GOVER=1.25.0 H_MAIN=""
  go_build_component kubernetes "$v"
}

build_etcd() {
  H_REQUIRE="go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  H_REPLACE="" H_PKGS="" H_TAGS="" H_CGO=0 H_GOVER=1.25.0 H_LDFLAGS="-s -w"
  H_MAIN='package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }'
  go_build_component etcd "$ETCD_VERSION"
}

build_containerd() {
  local p=github.com/containerd/containerd/v2
  H_REQUIRE="$p $CONTAINERD_VERSION"
  H_REPLACE="" H_MAIN="" H_CGO=0 H_GOVER=1.25.0
  H_PKGS="$p/cmd/containerd $p/cmd/ctr $p/cmd/containerd-shim-runc-v2"
  H_TAGS="no_btrfs no_devmapper no_zfs"
  H_LDFLAGS="-s -w -X $p/version.Version=$CONTAINERD_VERSION -X $p/version.Package=github.com/containerd/containerd/v2"
  go_build_component containerd "$CONTAINERD_VERSION"
}

build_runc() {
  apt_install libseccomp-dev pkg-config gcc libc6-dev
  # runc pins go-selinux to an in-repo copy (not part of its module zip); use the
  # upstream release that carries the same CVE-2025-52881 fixes.
  H_REQUIRE="github.com/opencontainers/runc $RUNC_VERSION"
  H_REPLACE="github.com/opencontainers/selinux => github.com/opencontainers/selinux v1.13.1"
  H_PKGS="github.com/opencontainers/runc" H_MAIN="" H_CGO=1 H_GOVER=1.25.0
  H_TAGS="seccomp urfave_cli_no_docs"
  H_LDFLAGS="-s -w -X main.version=${RUNC_VERSION#v}"
  go_build_component runc "$RUNC_VERSION"
}

build_cni_plugins() {
  local p=github.com/containernetworking/plugins/plugins
  H_REQUIRE="github.com/containernetworking/plugins $CNI_PLUGINS_VERSION"
  H_REPLACE="" H_MAIN="" H_CGO=0 H_GOVER=1.26.0 H_TAGS="" H_LDFLAGS="-s -w"
  H_PKGS="$p/main/bridge $p/main/loopback $p/ipam/host-local $p/meta/portmap $p/meta/bandwidth"
  go_build_component cni-plugins "$CNI_PLUGINS_VERSION"
}

build_kube_router() {
  H_REQUIRE="github.com/cloudnativelabs/kube-router/v2 $KUBE_ROUTER_VERSION"
  H_REPLACE="" H_MAIN="" H_CGO=0 H_GOVER=1.25.0 H_TAGS=""
  H_PKGS="github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
  H_LDFLAGS="-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION"
  go_build_component kube-router "$KUBE_ROUTER_VERSION"
}

build_coredns() {
  H_REQUIRE="github.com/coredns/coredns $COREDNS_VERSION"
  H_REPLACE="" H_MAIN="" H_CGO=0 H_GOVER=1.25.0 H_TAGS="" H_LDFLAGS="-s -w"
  H_PKGS="github.com/coredns/coredns"
  go_build_component coredns "$COREDNS_VERSION"
}

build_metrics_server() {
  H_REQUIRE="sigs.k8s.io/metrics-server $METRICS_SERVER_VERSION"
  H_REPLACE="" H_MAIN="" H_CGO=0 H_GOVER=1.25.0 H_TAGS=""
  H_PKGS="sigs.k8s.io/metrics-server/cmd/metrics-server"
  H_LDFLAGS="-s -w -X sigs.k8s.io/metrics-server/pkg/version.gitVersion=$METRICS_SERVER_VERSION"
  go_build_component metrics-server "$METRICS_SERVER_VERSION"
}

build_local_path() {
  H_REQUIRE="github.com/rancher/local-path-provisioner $LOCAL_PATH_VERSION"
  H_REPLACE="" H_MAIN="" H_CGO=0 H_GOVER=1.25.0 H_TAGS="" H_LDFLAGS="-s -w -X main.VERSION=$LOCAL_PATH_VERSION"
  H_PKGS="github.com/rancher/local-path-provisioner"
  go_build_component local-path-provisioner "$LOCAL_PATH_VERSION"
}

build_traefik() {
  H_REQUIRE="github.com/traefik/traefik/v3 $TRAEFIK_VERSION"
  # Traefik's own replace directives (replaces of a dependency are not inherited).
  H_REPLACE="github.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-0.20200324110947-a37a7636d23e
github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59
github.com/mailgun/minheap => github.com/containous/minheap v0.0.0-20190809180810-6e71eb837595"
  H_MAIN="" H_CGO=0 H_GOVER=1.25.0 H_TAGS=""
  H_PKGS="github.com/traefik/traefik/v3/cmd/traefik"
  H_LDFLAGS="-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION -X github.com/traefik/traefik/v3/pkg/version.Codename=testbed"
  go_build_component traefik "$TRAEFIK_VERSION"
  # Traefik's CRDs, as shipped in its module: `up` applies the collection's copy
  # (roles/ingress/templates/traefik-crds.yaml.j2) and warns when this one differs
  # (after a version bump, copy this file there).
  local out="$SKX_CACHE/bin/traefik-$TRAEFIK_VERSION" dir
  if [ ! -f "$out/crds.yaml" ]; then
    dir=$(cd "$SKX_CACHE/src/traefik-$TRAEFIK_VERSION" && go list -m -f '{{.Dir}}' github.com/traefik/traefik/v3)
    cp "$dir/docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml" "$out/crds.yaml.tmp"
    mv "$out/crds.yaml.tmp" "$out/crds.yaml"
  fi
}

build_stripe_mock() {
  H_REQUIRE="github.com/stripe/stripe-mock $STRIPE_MOCK_VERSION"
  H_REPLACE="" H_MAIN="" H_CGO=0 H_GOVER=1.25.0 H_TAGS="" H_LDFLAGS="-s -w -X main.version=$STRIPE_MOCK_VERSION"
  H_PKGS="github.com/stripe/stripe-mock"
  go_build_component stripe-mock "$STRIPE_MOCK_VERSION"
}

# The observability images' binaries (Prometheus with Kubernetes service
# discovery, Alertmanager, Pushgateway, node_exporter, redis_exporter,
# VictoriaLogs, vlagent): built by the script the monitoring tests use, so both
# build the versions of versions.env the same way; static here.
build_observability_tool() { # NAME VERSION TOOL...
  local name=$1 version=$2 out="$SKX_CACHE/bin/$1-$2"; shift 2
  [ -f "$out/.done" ] && return 0
  log "building $name $version (Go, cached in $out)"
  rm -rf "$out"; mkdir -p "$out"
  SKX_BIN="$out" SKX_SRC="$SKX_CACHE/src" CGO_ENABLED=0 \
    "$TESTBED_DIR/../tests/lib/monitoring/install-tools.sh" "$@" >&2 || { log "build of $name $version failed"; return 1; }
  touch "$out/.done"
}
build_prometheus() { build_observability_tool prometheus "$PROMETHEUS_VERSION" prometheus promtool; }
build_alertmanager() { build_observability_tool alertmanager "$ALERTMANAGER_VERSION" alertmanager amtool; }
build_pushgateway() { build_observability_tool pushgateway "$PUSHGATEWAY_VERSION" pushgateway; }
build_node_exporter() { build_observability_tool node-exporter "$NODE_EXPORTER_VERSION" node_exporter; }
build_redis_exporter() { build_observability_tool redis-exporter "$REDIS_EXPORTER_VERSION" redis_exporter; }
build_victorialogs() { build_observability_tool victorialogs "$VICTORIALOGS_VERSION" victoria-logs vlagent; }

# pause: the C program from the kubernetes module (build/pause/linux/pause.c), linked statically.
build_pause() {
  local out="$SKX_CACHE/bin/pause-$PAUSE_VERSION"
  [ -f "$out/.done" ] && return 0
  local src
  src=$(cd "$SKX_CACHE/src/kubernetes-$K8S_VERSION" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  mkdir -p "$out"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-skx" -o "$out/pause" "$src/build/pause/linux/pause.c"
  strip "$out/pause"
  touch "$out/.done"
}

build_components() {
  build_kubernetes
  build_etcd
  build_containerd
  build_runc
  build_cni_plugins
  build_kube_router
  build_pause
}
