# Image builder: one definition file per image in testbed/images/defs/NAME.sh.
#
# A definition is a bash fragment (it may source a shared *.inc file) that sets:
#   REF          image reference, e.g. docker.io/library/redis:7.0
#   KIND         debian  (root filesystem from Debian packages via mmdebstrap)
#                static  (static Go binaries on a minimal base: passwd, CA bundle, /tmp)
#                dockerfile (an image the collection ships: buildah builds CONTEXT/Dockerfile,
#                        as playbooks/images.yml does, FROM the image of definition BASE)
#   PACKAGES     (debian) Debian packages to install, space separated
#   USERS        (debian) "name:uid:gid:home" entries created before packages are installed
#   CUSTOMIZE    (debian) shell run after install with the root fs as $1 (mmdebstrap customize hook)
#   NEEDS        (static) build function(s) from lib/components.sh to run first
#   BASE         (dockerfile) the definition of the image its FROM names, e.g. debian
#   CONTEXT      (dockerfile) folder of the Dockerfile, relative to the repository root
#   ADD=( "SRC:DEST[:MODE]" ... )  files; SRC relative to testbed/images/files or absolute ($SKX_CACHE/bin/...)
#   SYMLINKS=( "TARGET:DEST" ... ), DIRS=( "DEST[:MODE[:UID]]" ... )
#   ENTRYPOINT / CMD (JSON lists), ENV=( "K=V" ... ), PORTS="5432/tcp ...", USER, WORKDIR, VOLUMES, STOP_SIGNAL
# The archive is cached as $SKX_CACHE/images/<name>-<hash of definition+files+binaries>.tar.

IMAGES_DIR="$TESTBED_DIR/images"
DEBIAN_SUITE=bookworm

_debian_sources() {
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then echo /etc/apt/sources.list.d/debian.sources
  else echo "http://deb.debian.org/debian"; fi
}

# norm_ref REF: the fully qualified name the CRI looks up (docker.io/traefik -> docker.io/library/traefik)
norm_ref() {
  local r=$1 first rest
  case "$r" in */*) ;; *) r="docker.io/library/$r" ;; esac
  first=${r%%/*}
  case "$first" in *.*|*:*|localhost) ;; *) r="docker.io/$r" ;; esac
  rest=${r#docker.io/}
  if [ "${r%%/*}" = docker.io ] && [ "${rest#*/}" = "$rest" ]; then r="docker.io/library/$rest"; fi
  echo "$r"
}

# _image_load DEF: reset and source a definition in the current (sub)shell
_image_load() {
  REF="" KIND="" PACKAGES="" USERS="" CUSTOMIZE="" NEEDS="" ENTRYPOINT="" CMD="" PORTS="" USER="" WORKDIR=""
  VOLUMES="" STOP_SIGNAL="" BASE="" CONTEXT="" ADD=() SYMLINKS=() DIRS=() ENV=()
  # shellcheck disable=SC1090
  . "$1"
  REF=$(norm_ref "$REF")
}

_image_key() { # def (loaded) -> hash of what it sets, referenced files and binaries
  local def=$1 a src
  {
    # The values, not the file's text: a definition may source shared settings (app.inc).
    declare -p REF KIND PACKAGES USERS CUSTOMIZE NEEDS ENTRYPOINT CMD PORTS USER WORKDIR VOLUMES STOP_SIGNAL \
      BASE CONTEXT ADD SYMLINKS DIRS ENV
    if [ -n "$CONTEXT" ]; then
      (cd "$TESTBED_DIR/../$CONTEXT" 2>/dev/null && find . -type f ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 -r sha256sum) \
        || echo "missing $CONTEXT"
    fi
    cat "$IMAGES_DIR/mkimage.py"
    echo "$DEBIAN_SUITE"
    if [ "$KIND" = debian ]; then _rootfs_key; fi
    for a in "${ADD[@]}"; do
      src=${a%%:*}; [ "${src#/}" = "$src" ] && src="$IMAGES_DIR/files/$src"
      sha256sum "$src" 2>/dev/null || echo "missing $src"
    done
    if [ -n "$BASE" ]; then image_tar "$IMAGES_DIR/defs/$BASE.sh"; fi
  } | sha256sum | cut -c1-16
}

_rootfs_key() { # hash of what goes into a Debian root filesystem (definition vars already loaded)
  printf '%s\n' "$DEBIAN_SUITE" "$PACKAGES" "$USERS" "$CUSTOMIZE" | sha256sum | cut -c1-16
}

image_tar() { # def -> path of the cached archive (may not exist yet)
  local def=$1 name; name=$(basename "$def" .sh)
  ( _image_load "$def"; echo "$SKX_CACHE/images/$name-$(_image_key "$def").tar" )
}

build_image() { # def
  local def=$1 name out; name=$(basename "$def" .sh)
  _image_load "$def"
  local n; for n in $NEEDS; do "$n"; done
  out="$SKX_CACHE/images/$name-$(_image_key "$def").tar"
  [ -f "$out" ] && return 0
  mkdir -p "$SKX_CACHE/images/work"
  log "building image $REF ($KIND)"
  local args=(--ref "$REF" --out "$out") layer="" a src
  if [ "$KIND" = debian ]; then
    # the root filesystem is cached on its own, so repacking (new files, entrypoint) is cheap
    layer="$SKX_CACHE/images/rootfs/$name-$(_rootfs_key).tar"
    mkdir -p "$SKX_CACHE/images/rootfs"
    local hook_users="" u uname uid gid home
    for u in $USERS; do
      IFS=: read -r uname uid gid home <<<"$u"
      hook_users+="echo '$uname:x:$uid:$gid::$home:/usr/sbin/nologin' >> \"\$1/etc/passwd\"; "
      hook_users+="echo '$uname:x:$gid:' >> \"\$1/etc/group\"; "
      hook_users+="if [ -f \"\$1/etc/shadow\" ]; then echo '$uname:*:19000:0:99999:7:::' >> \"\$1/etc/shadow\"; fi; "
    done
    local mm=(mmdebstrap --quiet --variant=essential --include="${PACKAGES// /,}"
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
      --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
      --dpkgopt='path-exclude=/usr/share/info/*'
      --skip=essential/unlink
      --setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
      --setup-hook="sync-in '$SKX_CACHE/debs' /var/cache/apt/archives/")
    mkdir -p "$SKX_CACHE/debs"
    [ -n "$hook_users" ] && mm+=(--essential-hook="$hook_users")
    [ -n "$CUSTOMIZE" ] && mm+=(--customize-hook="$CUSTOMIZE")
    # keep downloaded .debs for the next image (keyed by file name = package+version), then clean up
    mm+=(--customize-hook="sync-out /var/cache/apt/archives '$SKX_CACHE/debs'"
      --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/cache/apt/archives/partial "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/var/cache/debconf/*-old "$1"/var/cache/apt/*.bin')
    mm+=("$DEBIAN_SUITE" "$layer" "$(_debian_sources)")
    if [ ! -f "$layer" ]; then
      mm[-2]="$layer.tmp.tar"
      retry 3 nice -n 10 "${mm[@]}" >"$SKX_CACHE/images/work/$name.log" 2>&1 \
        || { tail -30 "$SKX_CACHE/images/work/$name.log" >&2; die "mmdebstrap for $REF failed"; }
      mv "$layer.tmp.tar" "$layer"
      find "$SKX_CACHE/images/rootfs" -maxdepth 1 -name "$name-????????????????.tar" ! -path "$layer" -delete
    fi
    args+=(--layer "$layer")
  elif [ "$KIND" = static ]; then
    local base="$SKX_CACHE/images/work/static-base"
    mkdir -p "$base"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' > "$base/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$base/group"
    printf 'hosts: files dns\n' > "$base/nsswitch.conf"
    args+=(--add "$base/passwd:/etc/passwd:0644" --add "$base/group:/etc/group:0644"
      --add "$base/nsswitch.conf:/etc/nsswitch.conf:0644"
      --add "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644"
      --dir "/tmp:1777" --dir "/etc/ssl/certs")
  elif [ "$KIND" = dockerfile ]; then
    _build_dockerfile "$def" "$out"
    find "$SKX_CACHE/images" -maxdepth 1 -name "$name-????????????????.tar" ! -path "$out" -delete
    return 0
  else
    die "unknown KIND '$KIND' in $def"
  fi
  for a in "${ADD[@]}"; do
    src=${a%%:*}; [ "${src#/}" = "$src" ] && a="$IMAGES_DIR/files/$a"
    args+=(--add "$a")
  done
  for a in "${SYMLINKS[@]}"; do args+=(--symlink "$a"); done
  for a in "${DIRS[@]}"; do args+=(--dir "$a"); done
  for a in "${ENV[@]}"; do args+=(--env "$a"); done
  for a in $PORTS; do args+=(--port "$a"); done
  for a in $VOLUMES; do args+=(--volume "$a"); done
  [ -n "$ENTRYPOINT" ] && args+=(--entrypoint "$ENTRYPOINT")
  [ -n "$CMD" ] && args+=(--cmd "$CMD")
  [ -n "$USER" ] && args+=(--user "$USER")
  [ -n "$WORKDIR" ] && args+=(--workdir "$WORKDIR")
  [ -n "$STOP_SIGNAL" ] && args+=(--stop-signal "$STOP_SIGNAL")
  python3 "$IMAGES_DIR/mkimage.py" "${args[@]}" --label "org.opencontainers.image.source=superkubernetex testbed" \
    || die "packing $REF failed"
  # drop archives of older definitions of this image
  find "$SKX_CACHE/images" -maxdepth 1 -name "$name-????????????????.tar" ! -path "$out" -delete
}

# platform_setting NAME: a setting's default in roles/platform/defaults/main.yml
# (the images' registry and version: one source for the collection and the testbed).
platform_setting() {
  sed -n "s/^$1: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *\$/\1/p" "$TESTBED_DIR/../roles/platform/defaults/main.yml"
}

# buildah with a storage of the testbed's own: scratch space of one build
# step (its layer cache serves the four app images built from one
# Dockerfile), removed by buildah_cleanup when the step ends, so the cache
# keeps only the image archives.
BUILDAH_DIR="$SKX_CACHE/images/work/buildah"
HOST_CA_BUNDLE=${SKX_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
buildah_() { buildah --root "$BUILDAH_DIR/storage" --runroot "$BUILDAH_DIR/run" "$@"; }
buildah_cleanup() { rm -rf "$BUILDAH_DIR"; }

# _build_dockerfile DEF OUT: the collection's own build of CONTEXT/Dockerfile
# (roles/images runs the same buildah build), written as an OCI archive. The
# base image is loaded from its archive before every build, so the build
# never depends on what buildah's storage holds from an earlier one.
_build_dockerfile() {
  local def=$1 out=$2 base_def base_ref version
  [ -n "$BASE" ] && [ -n "$CONTEXT" ] || die "$def: KIND=dockerfile needs BASE and CONTEXT"
  base_def="$IMAGES_DIR/defs/$BASE.sh"
  ( build_image "$base_def" ) || die "base image $BASE failed"
  base_ref=$( _image_load "$base_def"; echo "$REF" )
  version=${REF##*:}
  mkdir -p "$BUILDAH_DIR"
  local id
  id=$(buildah_ pull --quiet "oci-archive:$(image_tar "$base_def")") || die "loading $base_ref into buildah failed"
  buildah_ tag "$id" "$base_ref" || die "tagging $base_ref failed"
  log "building image $REF (buildah, $CONTEXT/Dockerfile)"
  # This machine's CA bundle, for the steps that download over TLS (the PostgreSQL image's pip):
  # mounted as the build secret ca-bundle, as roles/images' images_build_ca_bundle does.
  local ca=()
  [ -s "$HOST_CA_BUNDLE" ] && ca=(--secret "id=ca-bundle,src=$HOST_CA_BUNDLE")
  nice -n 10 buildah --root "$BUILDAH_DIR/storage" --runroot "$BUILDAH_DIR/run" build --quiet --layers --pull=never --isolation chroot --build-arg "VERSION=$version" "${ca[@]}" \
    --tag "$REF" --file "$TESTBED_DIR/../$CONTEXT/Dockerfile" "$TESTBED_DIR/../$CONTEXT" \
    >"$SKX_CACHE/images/work/$(basename "$def" .sh).log" 2>&1 \
    || { tail -30 "$SKX_CACHE/images/work/$(basename "$def" .sh).log" >&2; die "buildah build of $REF failed"; }
  rm -f "$out.tmp"
  buildah_ push --quiet "$REF" "oci-archive:$out.tmp:$REF" || die "exporting $REF failed"
  mv "$out.tmp" "$out"
}

image_defs() { ls "$IMAGES_DIR"/defs/*.sh; }

build_images() { # [def...]; default: all definitions
  local d defs=("$@")
  [ "${#defs[@]}" -eq 0 ] && mapfile -t defs < <(image_defs)
  for d in "${defs[@]}"; do ( build_image "$d" ) || return 1; done
}
