REF=quay.io/prometheuscommunity/postgres-exporter:v0.11.1
KIND=debian
PACKAGES="prometheus-postgres-exporter"
SYMLINKS=("/usr/bin/prometheus-postgres-exporter:/bin/postgres_exporter" "/usr/bin/prometheus-postgres-exporter:/usr/local/bin/postgres_exporter")
ENTRYPOINT='["/bin/postgres_exporter"]'
USER=nobody
PORTS="9187/tcp"
