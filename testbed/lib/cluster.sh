# Steps of testbed/up after the builds.

bin_k8s() { echo "$SKX_CACHE/bin/kubernetes-$K8S_VERSION/$1"; }

build_all() {
  . "$TESTBED_DIR/images/build.sh"
  # Debian image root filesystems are mostly download/dpkg work: build them next to the Go builds.
  local deb_defs=() static_defs=() late_defs=() d kind
  for d in $(image_defs); do
    kind=$( _image_load "$d"; echo "$KIND" )
    case "$kind" in
      debian) deb_defs+=("$d") ;;
      # built on a Debian base image: after the Debian builds, never beside them
      dockerfile) late_defs+=("$d") ;;
      *) static_defs+=("$d") ;;
    esac
  done
  local imglog="$SKX_CACHE/logs/images-$(date +%s)" pids=() q1=() q2=() i p
  mkdir -p "$SKX_CACHE/logs"
  for i in "${!deb_defs[@]}"; do
    if [ $((i % 2)) -eq 0 ]; then q1+=("${deb_defs[$i]}"); else q2+=("${deb_defs[$i]}"); fi
  done
  # two queues: mmdebstrap waits on downloads and dpkg, so two at a time use the machine better
  ( build_images "${q1[@]}" ) >"$imglog-1.log" 2>&1 & pids+=($!)
  if [ "${#q2[@]}" -gt 0 ]; then ( build_images "${q2[@]}" ) >"$imglog-2.log" 2>&1 & pids+=($!); fi
  build_components
  build_images "${static_defs[@]}"
  for p in "${pids[@]}"; do
    wait "$p" || { tail -40 "$imglog"-*.log >&2; die "Debian image builds failed (logs: $imglog-*.log)"; }
  done
  build_images "${late_defs[@]}" || { buildah_cleanup; return 1; }
  buildah_cleanup
}

host_setup() {
  mkdir -p "$SKX_STATE"/{etcd,containerd,kubelet,cni/net.d,cni/ipam,storage,manifests} "$SKX_RUN"
  # sysctls: remember the values we change so that `down` restores them
  if [ ! -f "$SKX_STATE/sysctl.saved" ]; then
    : > "$SKX_STATE/sysctl.saved.tmp"
    for k in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables; do
      echo "$k=$(sysctl -n "$k")" >> "$SKX_STATE/sysctl.saved.tmp"
    done
    mv "$SKX_STATE/sysctl.saved.tmp" "$SKX_STATE/sysctl.saved"
  fi
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  # The kubelet refuses a hostPath with mount propagation (node-exporter reads the host's
  # / with HostToContainer) unless the path is on a shared or slave mount. Hosts booted
  # by systemd (k3s nodes) have / shared; this one has it private: share / (only that
  # mount, not recursively) and let `down` make it private again.
  if [ "$(findmnt -no PROPAGATION /)" = private ]; then
    touch "$SKX_STATE/root-mount-was-private"
    mount --make-shared /
  fi
  # The node address lives on a port-less bridge of our own (the kernel has no dummy driver).
  if ! ip link show "$NODE_IF" >/dev/null 2>&1; then
    ip link add "$NODE_IF" type bridge
  fi
  ip addr replace "$NODE_IP/32" dev "$NODE_IF"
  ip link set "$NODE_IF" up
  # Traffic to a service or pod address that no rule claims must never leave the machine:
  # route those ranges into the port-less node bridge (where unclaimed packets die).
  # Not an "unreachable" route: the host's own connections to service IPs are routed
  # before kube-proxy's OUTPUT DNAT and would fail.
  ip route replace "$SERVICE_CIDR" dev "$NODE_IF" src "$NODE_IP" metric 4000
  ip route replace 10.42.0.0/16 dev "$NODE_IF" src "$NODE_IP" metric 4000
  # cgroup v1 hybrid host: keep every pod cgroup below /skx-testbed in each hierarchy.
  local h
  for h in /sys/fs/cgroup/*/; do
    case "$h" in */unified/) continue ;; esac
    mkdir -p "$h/skx-testbed" 2>/dev/null || true
  done
  if [ -d /sys/fs/cgroup/cpuset/skx-testbed ]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus > /sys/fs/cgroup/cpuset/skx-testbed/cpuset.cpus
    cat /sys/fs/cgroup/cpuset/cpuset.mems > /sys/fs/cgroup/cpuset/skx-testbed/cpuset.mems
  fi
}

# put_file PATH: write stdin to PATH only if the content differs (running daemons watch some files)
put_file() {
  local tmp; tmp=$(mktemp "$1.XXXXXX")
  cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

write_configs() {
  local cni_bin="$SKX_CACHE/bin/cni-plugins-$CNI_PLUGINS_VERSION" pki="$SKX_STATE/pki"
  put_file "$SKX_STATE/cni/net.d/10-skx.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "skx",
  "plugins": [
    {
      "type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$SKX_STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
JSON
  # This machine withholds CAP_SYS_RESOURCE even from root, so an oom_score_adj below 0
  # cannot be set: kubelet asks for -998 (sandboxes) and -997 (Guaranteed/critical pods)
  # and runc would fail. The wrapper raises negative values to 0 before runc reads them.
  mkdir -p "$SKX_STATE/bin"
  if grep -q '^CapEff:' /proc/self/status && \
     [ $(( 0x$(awk '/^CapEff:/ {print $2}' /proc/self/status) >> 24 & 1 )) -eq 0 ]; then
    put_file "$SKX_STATE/bin/runc.new" <<'WRAP'
#!/bin/sh
# generated by testbed/up: clamp negative oomScoreAdj (no CAP_SYS_RESOURCE here), then run runc
b=""; p=""; prev=""
for a in "$@"; do
  case "$prev" in --bundle|-b) b=$a ;; --process|-p) p=$a ;; esac
  prev=$a
done
for f in "${b:+$b/config.json}" "$p"; do
  if [ -n "$f" ] && [ -f "$f" ]; then sed -i -E 's/"oomScoreAdj":-[0-9]+/"oomScoreAdj":0/' "$f"; fi
done
exec @RUNC@ "$@"
WRAP
    sed "s|@RUNC@|$SKX_CACHE/bin/runc-$RUNC_VERSION/runc|" "$SKX_STATE/bin/runc.new" | put_file "$SKX_STATE/bin/runc"
    rm -f "$SKX_STATE/bin/runc.new"
    chmod 755 "$SKX_STATE/bin/runc"
    RUNC_BIN="$SKX_STATE/bin/runc"
  else
    RUNC_BIN="$SKX_CACHE/bin/runc-$RUNC_VERSION/runc"
  fi
  put_file "$SKX_STATE/containerd.toml" <<TOML
version = 3
root = "$SKX_STATE/containerd"
state = "$SKX_RUN/containerd"

[grpc]
  address = "$SKX_RUN/containerd/containerd.sock"

[ttrpc]
  address = "$SKX_RUN/containerd/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "registry.k8s.io/pause:$PAUSE_VERSION"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$cni_bin"]
    conf_dir = "$SKX_STATE/cni/net.d"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$RUNC_BIN"
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
  put_file "$SKX_STATE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
cgroupDriver: cgroupfs
cgroupRoot: /skx-testbed
failCgroupV1: false
clusterDNS: [$CLUSTER_DNS]
clusterDomain: $CLUSTER_DOMAIN
containerRuntimeEndpoint: unix://$SKX_RUN/containerd/containerd.sock
resolvConf: /etc/resolv.conf
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"}
maxPods: 110
serializeImagePulls: false
protectKernelDefaults: false
rotateCertificates: false
serverTLSBootstrap: false
YAML
  put_file "$SKX_STATE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: 10.42.0.0/16
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection: {kubeconfig: $SKX_STATE/kube-proxy.kubeconfig}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
nodePortAddresses: ["$NODE_IP/32"]
YAML
}

apiserver_ready() { curl -fsS --cacert "$SKX_STATE/pki/ca.crt" --cert "$SKX_STATE/pki/admin.crt" \
  --key "$SKX_STATE/pki/admin.key" "https://127.0.0.1:$APISERVER_PORT/readyz" ; }

start_control_plane() {
  local pki="$SKX_STATE/pki"
  start_daemon etcd "$SKX_CACHE/bin/etcd-$ETCD_VERSION/etcd" --name skx --data-dir "$SKX_STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "skx=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
    --quota-backend-bytes 4294967296 --log-level warn
  wait_for etcd 60 curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
  start_daemon kube-apiserver "$(bin_k8s kube-apiserver)" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address 0.0.0.0 --secure-port "$APISERVER_PORT" --advertise-address "$NODE_IP" \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-32767 \
    --allow-privileged=true --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --requestheader-client-ca-file "$pki/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-group-headers X-Remote-Group \
    --requestheader-username-headers X-Remote-User \
    --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
    --enable-aggregator-routing=true --profiling=false --v=1
  wait_for kube-apiserver 180 apiserver_ready
  start_daemon kube-controller-manager "$(bin_k8s kube-controller-manager)" \
    --kubeconfig "$SKX_STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$SKX_STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$SKX_STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --allocate-node-cidrs --cluster-cidr 10.42.0.0/16 --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" --controllers '*,tokencleaner' --profiling=false --v=1
  start_daemon kube-scheduler "$(bin_k8s kube-scheduler)" \
    --kubeconfig "$SKX_STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$SKX_STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$SKX_STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1
}

ctr_() { "$SKX_CACHE/bin/containerd-$CONTAINERD_VERSION/ctr" --address "$SKX_RUN/containerd/containerd.sock" "$@"; }

start_containerd() {
  local cbin="$SKX_CACHE/bin/containerd-$CONTAINERD_VERSION"
  start_daemon containerd env PATH="$cbin:$SKX_CACHE/bin/runc-$RUNC_VERSION:$PATH" \
    "$cbin/containerd" --config "$SKX_STATE/containerd.toml"
  wait_for containerd 60 ctr_ version
}

start_node() {
  local cbin="$SKX_CACHE/bin/containerd-$CONTAINERD_VERSION"
  start_containerd
  start_daemon kubelet env PATH="$cbin:$PATH" "$(bin_k8s kubelet)" \
    --config "$SKX_STATE/kubelet.yaml" --kubeconfig "$SKX_STATE/kubelet.kubeconfig" \
    --root-dir "$SKX_STATE/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
  start_daemon kube-proxy "$(bin_k8s kube-proxy)" --config "$SKX_STATE/kube-proxy.yaml" --v=1
}

# after the node is registered (kube-router looks its node up at start)
start_netpol() {
  # NetworkPolicy enforcement: kube-router's policy controller only, as k3s embeds it.
  start_daemon kube-router "$SKX_CACHE/bin/kube-router-$KUBE_ROUTER_VERSION/kube-router" \
    --kubeconfig "$SKX_STATE/kube-router.kubeconfig" --hostname-override "$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --enable-ipv4=true --enable-ipv6=false --metrics-port 0 --health-port 0 --v=1
}

import_images() { # [def...]; default: all definitions. FORCE_IMPORT=1 re-imports existing refs.
  . "$TESTBED_DIR/images/build.sh"
  local have d ref tar defs=("$@") n=0
  [ "${#defs[@]}" -eq 0 ] && mapfile -t defs < <(image_defs)
  # "ref digest" of every image present: an image whose definition changed
  # (same reference, another archive) is imported again.
  have=$(ctr_ -n k8s.io images ls 2>/dev/null | awk 'NR > 1 {print $1 " " $3}' || true)
  for d in "${defs[@]}"; do
    ref=$( _image_load "$d"; echo "$REF" )
    tar=$(image_tar "$d")
    [ -f "$tar" ] || { log "image archive for $ref missing, skipping"; continue; }
    if [ "${FORCE_IMPORT:-0}" != 1 ] && grep -qxF "$ref $(_archive_digest "$tar")" <<<"$have"; then continue; fi
    ctr_ -n k8s.io images import "$tar" >/dev/null \
      || die "import of $ref failed"
    ctr_ -n k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true
    n=$((n + 1))
  done
  log "images imported: $n"
}

_archive_digest() { # OCI archive -> digest of its manifest (what `ctr images ls` shows)
  tar --occurrence=1 -xOf "$1" index.json | python3 -c 'import json, sys; print(json.load(sys.stdin)["manifests"][0]["digest"])'
}

image_defs_by_kind() { # kind... -> definition files of those kinds
  . "$TESTBED_DIR/images/build.sh"
  local d k
  for d in $(image_defs); do
    # The loaded value: a definition may set KIND in a file it sources (app.inc).
    local kind; kind=$( _image_load "$d"; echo "$KIND" )
    for k in "$@"; do [ "$kind" = "$k" ] && echo "$d"; done
  done
  return 0
}

IMPORT_BG_PID=""
import_images_bg() {
  [ "$#" -eq 0 ] && return 0
  ( import_images "$@" ) > "$SKX_LOG/image-import.log" 2>&1 &
  IMPORT_BG_PID=$!
}

wait_images_bg() {
  [ -n "$IMPORT_BG_PID" ] || return 0
  wait "$IMPORT_BG_PID" || { cat "$SKX_LOG/image-import.log" >&2; die "image import failed"; }
  grep -h "images imported" "$SKX_LOG/image-import.log" >&2 || true
}

node_ready() { [ "$(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]; }

wait_node_ready() {
  wait_for "node $NODE_NAME Ready" 240 node_ready
  # role labels as a k3s server node has them (kubelet may not set node-role.* itself)
  kc label node "$NODE_NAME" --overwrite node-role.kubernetes.io/control-plane=true \
    node-role.kubernetes.io/master=true >/dev/null
}

deploy_addons() {
  local f
  for f in "$TESTBED_DIR"/manifests/*.yaml; do
    sed -e "s|@CLUSTER_DNS@|$CLUSTER_DNS|g" -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" \
        -e "s|@STORAGE_DIR@|$SKX_STATE/storage|g" -e "s|@COREDNS_VERSION@|$COREDNS_VERSION|g" \
        -e "s|@METRICS_SERVER_VERSION@|$METRICS_SERVER_VERSION|g" -e "s|@LOCAL_PATH_VERSION@|$LOCAL_PATH_VERSION|g" \
        -e "s|@NODE_IP@|$NODE_IP|g" "$f" > "$SKX_STATE/manifests/$(basename "$f")"
  done
  # Traefik and its CRDs: the collection's own files (roles/ingress/templates),
  # the ones the ingress role installs on a cluster without an ingress
  # controller. SKX_TESTBED_INGRESS=none (testbed/up --no-ingress) leaves
  # them out: the platform's run then installs its Traefik.
  local deps=(kube-system/coredns kube-system/local-path-provisioner kube-system/metrics-server)
  rm -f "$SKX_STATE/manifests/34-gateway-api-crds.yaml" "$SKX_STATE/manifests/35-traefik-crds.yaml" \
    "$SKX_STATE/manifests/40-traefik.yaml"
  if [ "${SKX_TESTBED_INGRESS:-traefik}" = none ]; then
    log "no ingress controller (SKX_TESTBED_INGRESS=none): the platform's run installs Traefik"
  else
    local crds="$SKX_CACHE/bin/traefik-$TRAEFIK_VERSION/crds.yaml"
    if [ -f "$crds" ] && ! grep -v '^#' "$TESTBED_DIR/../roles/ingress/templates/traefik-crds.yaml.j2" | cmp -s - "$crds"; then
      log "WARNING: roles/ingress/templates/traefik-crds.yaml.j2 differs from Traefik $TRAEFIK_VERSION's CRDs ($crds)"
    fi
    /usr/bin/python3 "$TESTBED_DIR/lib/render_traefik.py" "$TRAEFIK_VERSION" "$SKX_STATE/manifests" \
      || die "rendering the collection's Traefik manifests failed"
    deps+=(kube-system/traefik)
  fi
  retry 5 kc apply --server-side --force-conflicts -f "$SKX_STATE/manifests/" >/dev/null
  local dep
  for dep in "${deps[@]}"; do
    kc -n "${dep%%/*}" rollout status "deployment/${dep#*/}" --timeout=180s >/dev/null \
      || die "add-on ${dep#*/} did not become ready"
  done
  wait_for "metrics API available" 120 kc wait --for=condition=Available --timeout=5s apiservice/v1beta1.metrics.k8s.io
}
