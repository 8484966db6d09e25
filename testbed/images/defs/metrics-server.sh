REF=registry.k8s.io/metrics-server/metrics-server:$METRICS_SERVER_VERSION
KIND=static
NEEDS=build_metrics_server
ADD=("$SKX_CACHE/bin/metrics-server-$METRICS_SERVER_VERSION/metrics-server:/metrics-server:0755")
ENTRYPOINT='["/metrics-server"]'
USER=65534
