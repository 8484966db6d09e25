REF=quay.io/prometheus/alertmanager:v0.25.0
KIND=debian
PACKAGES="prometheus-alertmanager"
CUSTOMIZE='mkdir -p "$1/alertmanager"; chown 65534:65534 "$1/alertmanager"'
ADD=("alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:0644")
SYMLINKS=("/usr/bin/prometheus-alertmanager:/bin/alertmanager" "/usr/bin/prometheus-alertmanager:/usr/local/bin/alertmanager")
ENTRYPOINT='["/bin/alertmanager"]'
CMD='["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]'
USER=nobody
WORKDIR=/alertmanager
PORTS="9093/tcp"
VOLUMES="/alertmanager"
