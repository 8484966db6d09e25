# node_exporter from the Go module at the version platform_images.node_exporter
# ships (tests/lib/monitoring/install-tools.sh). Upstream's layout.
REF=quay.io/prometheus/node-exporter:$NODE_EXPORTER_VERSION
KIND=static
NEEDS=build_node_exporter
ADD=("$SKX_CACHE/bin/node-exporter-$NODE_EXPORTER_VERSION/node_exporter:/bin/node_exporter:0755")
ENTRYPOINT='["/bin/node_exporter"]'
USER=nobody
PORTS="9100/tcp"
