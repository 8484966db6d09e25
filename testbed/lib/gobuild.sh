# Build Go programs from the Go module proxy in a small generated harness module.
#
# go_build_component NAME VERSION
#   reads:  H_REQUIRE  lines "module version"
#           H_REPLACE  lines "old => new version" (optional)
#           H_PKGS     package paths to build (main packages)
#           H_LDFLAGS, H_TAGS, H_CGO (0|1), H_GOVER (go directive, optional)
#           H_MAIN     optional: Go source of a main package in the harness (built as ./cmd/NAME)
#   result: $SKX_CACHE/bin/NAME-VERSION/<binaries>   (skipped when already built)
go_build_component() {
  local name=$1 version=$2
  local out="$SKX_CACHE/bin/$name-$version" src="$SKX_CACHE/src/$name-$version"
  if [ -f "$out/.done" ]; then return 0; fi
  log "building $name $version (Go, cached in $out)"
  rm -rf "$src" "$out"; mkdir -p "$src" "$out"
  {
    echo "module skx-testbed/$name"
    echo
    echo "go ${H_GOVER:-1.25.0}"
    echo
    echo "require ("
    printf '%s\n' "$H_REQUIRE" | sed '/^$/d; s/^/\t/'
    echo ")"
    if [ -n "${H_REPLACE:-}" ]; then
      echo "replace ("
      printf '%s\n' "$H_REPLACE" | sed '/^$/d; s/^/\t/'
      echo ")"
    fi
  } > "$src/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    local p
    for p in $H_PKGS; do echo "	_ \"$p\""; done
    echo ")"
  } > "$src/tools.go"
  local pkgs="$H_PKGS"
  if [ -n "${H_MAIN:-}" ]; then
    mkdir -p "$src/cmd/$name"
    printf '%s\n' "$H_MAIN" > "$src/cmd/$name/main.go"
    pkgs="$pkgs ./cmd/$name"
  fi
  ( cd "$src"
    retry 3 go mod tidy -e >"$src/tidy.log" 2>&1 || { cat "$src/tidy.log" >&2; exit 1; }
    CGO_ENABLED="${H_CGO:-0}" nice -n 10 go build -trimpath -tags "${H_TAGS:-}" \
      -ldflags "${H_LDFLAGS:--s -w}" -o "$out/" $pkgs
  ) || { log "build of $name $version failed"; return 1; }
  touch "$out/.done"
}
