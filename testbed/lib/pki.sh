# Certificates and kubeconfigs for the testbed (openssl; regenerated on every
# fresh start because `down` removes $SKX_STATE).

_cert() { # name CN O "SANs" [ca]
  local name=$1 cn=$2 o=$3 sans=$4 ca=${5:-ca} d="$SKX_STATE/pki"
  local subj="/CN=$cn"; [ -n "$o" ] && subj="/O=$o$subj"
  openssl genrsa -out "$d/$name.key" 2048 2>/dev/null
  openssl req -new -key "$d/$name.key" -subj "$subj" -out "$d/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } > "$d/$name.ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/$ca.crt" -CAkey "$d/$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
  rm -f "$d/$name.csr" "$d/$name.ext"
}

_ca() { # name CN
  local d="$SKX_STATE/pki"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/$1.key" -out "$d/$1.crt" \
    -days 3650 -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
}

_kubeconfig() { # file cert-name server
  local f=$1 c=$2 server=$3 d="$SKX_STATE/pki"
  cat > "$f" <<KC
apiVersion: v1
kind: Config
clusters:
- name: skx-testbed
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$d/ca.crt")
users:
- name: $c
  user:
    client-certificate-data: $(base64 -w0 "$d/$c.crt")
    client-key-data: $(base64 -w0 "$d/$c.key")
contexts:
- name: skx-testbed
  context: {cluster: skx-testbed, user: $c}
current-context: skx-testbed
KC
  chmod 600 "$f"
}

make_pki() {
  local d="$SKX_STATE/pki"
  [ -f "$d/.done" ] && return 0
  mkdir -p "$d"; chmod 700 "$d"
  _ca ca skx-testbed-ca
  _ca front-proxy-ca skx-testbed-front-proxy-ca
  local svc="kubernetes,kubernetes.default,kubernetes.default.svc,kubernetes.default.svc.$CLUSTER_DOMAIN"
  _cert apiserver kube-apiserver "" \
    "DNS:localhost,DNS:$NODE_NAME,$(echo "$svc" | sed 's/[^,]*/DNS:&/g'),IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SVC_IP"
  _cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ""
  _cert admin skx-admin system:masters ""
  _cert controller-manager system:kube-controller-manager "" ""
  _cert scheduler system:kube-scheduler "" ""
  _cert kube-proxy system:kube-proxy "" ""
  _cert kube-router system:kube-router system:masters ""
  _cert kubelet "system:node:$NODE_NAME" system:nodes ""
  _cert kubelet-serving "system:node:$NODE_NAME" system:nodes "DNS:$NODE_NAME,DNS:localhost,IP:$NODE_IP,IP:127.0.0.1"
  _cert front-proxy-client front-proxy-client "" "" front-proxy-ca
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  local local_url="https://127.0.0.1:$APISERVER_PORT"
  _kubeconfig "$KUBECONFIG_PATH" admin "$local_url"
  for c in controller-manager scheduler kube-proxy kube-router kubelet; do
    _kubeconfig "$SKX_STATE/$c.kubeconfig" "$c" "$local_url"
  done
  touch "$d/.done"
}
