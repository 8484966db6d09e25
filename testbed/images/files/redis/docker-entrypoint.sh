#!/bin/sh
# Entrypoint of the testbed's Debian-based redis:7.0 image (same behaviour as upstream's):
# flag-only args are passed to redis-server; as root, it chowns /data and drops to user redis;
# without a config file, protected mode is turned off so other pods can connect.
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' + 2>/dev/null || true
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$1" = redis-server ]; then
  case " $* " in
    *" --protected-mode "*) ;;
    *) case "${2:-}" in *.conf) ;; *) set -- "$@" --protected-mode no ;; esac ;;
  esac
fi
exec "$@"
