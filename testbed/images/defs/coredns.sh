REF=registry.k8s.io/coredns/coredns:$COREDNS_VERSION
KIND=static
NEEDS=build_coredns
ADD=("$SKX_CACHE/bin/coredns-$COREDNS_VERSION/coredns:/coredns:0755")
ENTRYPOINT='["/coredns"]'
PORTS="53/tcp 53/udp"
