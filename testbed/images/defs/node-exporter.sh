REF=quay.io/prometheus/node-exporter:v1.5.0
KIND=debian
PACKAGES="prometheus-node-exporter"
SYMLINKS=("/usr/bin/prometheus-node-exporter:/bin/node_exporter" "/usr/bin/prometheus-node-exporter:/usr/local/bin/node_exporter")
ENTRYPOINT='["/bin/node_exporter"]'
USER=nobody
PORTS="9100/tcp"
