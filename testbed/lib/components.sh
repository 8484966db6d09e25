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
