# The Pushgateway from the Go module at the version platform_images.pushgateway
# ships (tests/lib/monitoring/install-tools.sh). Upstream's layout.
REF=quay.io/prometheus/pushgateway:$PUSHGATEWAY_VERSION
KIND=static
NEEDS=build_pushgateway
ADD=("$SKX_CACHE/bin/pushgateway-$PUSHGATEWAY_VERSION/pushgateway:/bin/pushgateway:0755")
DIRS=("/pushgateway:0755:65534")
ENTRYPOINT='["/bin/pushgateway"]'
USER=65534
WORKDIR=/pushgateway
PORTS="9091/tcp"
