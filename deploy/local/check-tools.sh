#!/usr/bin/env bash
# Checks the tools the project needs on this machine and says how to get what is missing.
# Usage: deploy/local/check-tools.sh [python|java|compiler|all]
set -uo pipefail
missing=0
need() { printf 'missing: %s\n  -> %s\n' "$1" "$2" >&2; missing=1; }

check_python() {
  local py="${PYTHON:-python3}"
  if ! command -v "$py" >/dev/null 2>&1; then need "$py (Python 3.11+)" "apt-get install -y python3 python3-venv, or set PYTHON=/path/to/python3.11"; return; fi
  "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || need "Python 3.11+ (found $("$py" --version 2>&1))" "install Python 3.11+ and run make with PYTHON=/path/to/python3.11"
  "$py" -c 'import venv, ensurepip' 2>/dev/null || need "the venv module of $py" "apt-get install -y python3-venv"
}

check_java() {
  if ! command -v java >/dev/null 2>&1; then need "java (Java 17+ runtime, for the local Kafka broker)" "apt-get install -y openjdk-17-jre-headless"
  else
    local major; major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
    [ -n "$major" ] && [ "$major" -ge 17 ] || need "Java 17+ (found $major)" "apt-get install -y openjdk-17-jre-headless"
  fi
  command -v mvn >/dev/null 2>&1 || need "mvn (Maven, resolves the Kafka broker's jars from Maven Central)" "apt-get install -y maven"
}

check_compiler() {
  # the compiled build (make compiled, make test): mypyc's C output needs a compiler and Python.h
  if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
    need "a C compiler (the compiled build: make compiled, make test)" "apt-get install -y gcc"
    return
  fi
  local py="${PYTHON:-python3}"
  "$py" -c 'import os, sysconfig, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' 2>/dev/null \
    || need "Python.h of $py (the compiled build)" "apt-get install -y python3-dev (or the -dev package of your Python)"
}

check_redis() {
  command -v redis-server >/dev/null 2>&1 && return
  command -v apt-get >/dev/null 2>&1 || need "redis-server, and no apt-get to install it" "install Redis 7 (redis-server) with your package manager"
}

check_luacheck() {
  command -v luacheck >/dev/null 2>&1 && return
  command -v apt-get >/dev/null 2>&1 || need "luacheck (make lint), and no apt-get to install it" "luarocks install luacheck"
}

case "${1:-all}" in
  python) check_python ;;
  java) check_java ;;
  compiler) check_compiler ;;
  all) check_python; check_java; check_compiler; check_redis; check_luacheck ;;
  *) echo "usage: $0 [python|java|compiler|all]" >&2; exit 2 ;;
esac
[ "$missing" -eq 0 ] && { [ "${1:-all}" = all ] && echo "tools: ok"; exit 0; }
exit 1
