# Alertmanager and amtool from the Go module at the version
# platform_images.alertmanager ships (tests/lib/monitoring/install-tools.sh,
# whose amtool the tests check the configuration with). Upstream's layout.
REF=quay.io/prometheus/alertmanager:$ALERTMANAGER_VERSION
KIND=static
NEEDS=build_alertmanager
ADD=("$SKX_CACHE/bin/alertmanager-$ALERTMANAGER_VERSION/alertmanager:/bin/alertmanager:0755"
  "$SKX_CACHE/bin/alertmanager-$ALERTMANAGER_VERSION/amtool:/bin/amtool:0755"
  "alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:0644")
DIRS=("/alertmanager:0755:65534")
ENTRYPOINT='["/bin/alertmanager"]'
CMD='["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]'
USER=nobody
WORKDIR=/alertmanager
PORTS="9093/tcp"
VOLUMES="/alertmanager"
