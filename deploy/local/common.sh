# Shared helpers for the local service scripts (sourced, not run).
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
LOCAL_DIR="${IDENTITY_WORKER_LOCAL_DIR:-$ROOT/.local}"

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive FILE: true when FILE holds the pid of a running process
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid FILE NAME GRACE_SECONDS: SIGTERM, wait, then SIGKILL
stop_pid() {
  local file="$1" name="$2" grace="${3:-30}" pid
  if ! pid_alive "$file"; then rm -f "$file"; log "$name: not running"; return 0; fi
  pid="$(cat "$file")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "$name: still running after ${grace}s, killing"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$file"
  log "$name: stopped"
}

# service_status NAME PIDFILE PORT: say whether the service runs; non-zero when it does not
service_status() {
  if pid_alive "$2" && port_open "$3"; then echo "$1: running on 127.0.0.1:$3 (pid $(cat "$2"))"
  else echo "$1: not running"; return 1; fi
}
