# What may stay in $SKX_CACHE between runs: versioned build artefacts only.
# Anything else (a link, a generated config, a certificate, state) would let
# a step work on a warm machine and fail on a new one, so `down` removes what
# up makes there and the cold-start check (tests/testbed/test_down.py, run
# by .ci/run before `up`) fails on whatever is left.
#
#   bin/<component>-<version>/     a Go or C build (used once .done is inside; an
#                                  unfinished one is rebuilt from scratch)
#   src/<component>-<version>/     its generated harness module
#   images/<name>-<hash16>.tar     an image archive, keyed by its definition
#   images/rootfs/<name>-<hash16>.tar   a Debian root filesystem, keyed by its packages
#   debs/<package>_<version>_<arch>.deb downloaded Debian packages
#   images/work/, logs/            scratch and build logs, rewritten by each build, never read as input
#                                  (images/work/buildah: buildah's storage during one build step, then removed)
#   .up.lock                       up's lock file

# Prints one line per cache entry that is not a versioned build artefact.
cache_leftovers() {
  local c=$SKX_CACHE e
  [ -d "$c" ] || return 0
  for e in "$c"/* "$c"/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    case "${e#"$c"/}" in
      bin|src|images|debs|logs|.up.lock) ;;
      *) echo "$e" ;;
    esac
  done
  for e in "$c"/bin/* "$c"/src/*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    if [ -L "$e" ] || [ ! -d "$e" ] || ! [[ "$(basename "$e")" =~ ^[a-z0-9-]+-v?[0-9][0-9A-Za-z.+-]*$ ]]; then
      echo "$e"
    fi
  done
  for e in "$c"/images/* "$c"/images/rootfs/*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    case "${e#"$c"/images/}" in
      work|rootfs) ;;
      *) [[ ! -L "$e" && -f "$e" && "$(basename "$e")" =~ ^[a-z0-9-]+-[0-9a-f]{16}\.tar$ ]] || echo "$e" ;;
    esac
  done
  for e in "$c"/debs/*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    case "$(basename "$e")" in lock|partial) continue ;; esac   # apt's own, synced out with the .debs
    [[ ! -L "$e" && -f "$e" && "$(basename "$e")" == *.deb ]] || echo "$e"
  done
}
