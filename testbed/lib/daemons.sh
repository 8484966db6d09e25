# Process helpers: every daemon runs detached, pid in $SKX_RUN/NAME.pid, log in $SKX_LOG/NAME.log.

is_running() { local p; p=$(cat "$SKX_RUN/$1.pid" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start_daemon() { # name cmd...
  local name=$1; shift
  if is_running "$name"; then return 0; fi
  mkdir -p "$SKX_RUN" "$SKX_LOG"
  log "starting $name"
  # fd 9 is up's lock: daemons (and the shims containerd forks) must not inherit it
  setsid nohup "$@" >>"$SKX_LOG/$name.log" 2>&1 < /dev/null 9>&- &
  echo $! > "$SKX_RUN/$name.pid"
}

wait_for() { # description timeout-seconds cmd...
  local what=$1 t=$2 start; shift 2; start=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    if [ $(( $(date +%s) - start )) -ge "$t" ]; then
      log "timed out after ${t}s waiting for $what"; return 1
    fi
    sleep 1
  done
  log "$what: ok ($(( $(date +%s) - start ))s)"
}

kc() { "$KUBECTL_BIN" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
