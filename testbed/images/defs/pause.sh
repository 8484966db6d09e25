REF=registry.k8s.io/pause:$PAUSE_VERSION
KIND=static
NEEDS=build_pause
ADD=("$SKX_CACHE/bin/pause-$PAUSE_VERSION/pause:/pause:0755")
ENTRYPOINT='["/pause"]'
USER=65535:65535
