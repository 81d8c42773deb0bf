#!/usr/bin/env bash
# luacheck, the linter of the store's Lua scripts (Debian package lua-check).
# Usage: deploy/local/lua.sh install
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

install() {
  command -v luacheck >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || die "luacheck not found and no apt-get: install luacheck by hand (luarocks install luacheck)"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 || die "luacheck not found: run 'apt-get install -y lua-check' as root"; sudo=(sudo); }
  log "lua: installing Debian's lua-check (apt-get update && apt-get install -y lua-check)"
  "${sudo[@]}" apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq lua-check >/dev/null \
    || die "apt-get install -y lua-check failed"
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
