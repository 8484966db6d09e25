REF=docker.io/rancher/local-path-provisioner:$LOCAL_PATH_VERSION
KIND=static
NEEDS=build_local_path
ADD=("$SKX_CACHE/bin/local-path-provisioner-$LOCAL_PATH_VERSION/local-path-provisioner:/usr/bin/local-path-provisioner:0755")
CMD='["local-path-provisioner"]'
