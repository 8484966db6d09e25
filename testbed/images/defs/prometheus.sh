REF=quay.io/prometheus/prometheus:v2.42.0
KIND=debian
PACKAGES="prometheus"
CUSTOMIZE='mkdir -p "$1/prometheus" "$1/usr/share/prometheus"; chown 65534:65534 "$1/prometheus";
  ln -sfn /usr/share/prometheus/web/ui "$1/usr/share/prometheus/ui" 2>/dev/null || true;
  mkdir -p "$1/usr/share/prometheus/console_libraries" "$1/usr/share/prometheus/consoles"'
ADD=("prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:0644")
ENTRYPOINT='["/bin/prometheus"]'
CMD='["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.console.libraries=/usr/share/prometheus/console_libraries", "--web.console.templates=/usr/share/prometheus/consoles"]'
USER=nobody
WORKDIR=/prometheus
PORTS="9090/tcp"
VOLUMES="/prometheus"
