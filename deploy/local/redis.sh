#!/usr/bin/env bash
# Local Redis (Debian's redis-server) on 127.0.0.1 with AOF enabled.
# Usage: deploy/local/redis.sh install|start|stop|status|clean
#
#   REDIS_PORT (16379)  IDENTITY_WORKER_LOCAL_DIR (.local)
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT="${REDIS_PORT:-16379}"
RUN="$LOCAL_DIR/redis/run-$PORT"
PIDFILE="$RUN/redis.pid"

install() {
  command -v redis-server >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || die "redis-server not found and no apt-get: install Redis 7 (package redis-server) by hand"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 || die "redis-server not found: run 'apt-get install -y redis-server' as root"; sudo=(sudo); }
  log "redis: installing Debian's redis-server (apt-get update && apt-get install -y redis-server)"
  "${sudo[@]}" apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq redis-server >/dev/null \
    || die "apt-get install -y redis-server failed"
}

start() {
  if pid_alive "$PIDFILE" && port_open "$PORT"; then log "redis: already running on 127.0.0.1:$PORT"; return 0; fi
  port_open "$PORT" && die "port $PORT is already in use by another process; set REDIS_PORT to a free port"
  install
  mkdir -p "$RUN"
  redis-server --port "$PORT" --bind 127.0.0.1 --dir "$RUN" --daemonize yes \
    --pidfile "$PIDFILE" --logfile "$RUN/redis.log" \
    --appendonly yes --appendfsync everysec --save '' >/dev/null \
    || die "redis-server failed to start (log: $RUN/redis.log)"
  for _ in $(seq 1 100); do
    if redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; then log "redis: ready on 127.0.0.1:$PORT (AOF on, data: $RUN)"; return 0; fi
    sleep 0.1
  done
  die "redis: no PONG after 10 s (log: $RUN/redis.log)"
}

stop() {
  if ! pid_alive "$PIDFILE"; then stop_pid "$PIDFILE" redis 10; return 0; fi
  local pid; pid="$(cat "$PIDFILE")"
  redis-cli -p "$PORT" shutdown >/dev/null 2>&1 || true   # fsyncs the AOF, then exits
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then stop_pid "$PIDFILE" redis 10; return 0; fi
  rm -f "$PIDFILE"
  log "redis: stopped"
}

status() { service_status redis "$PIDFILE" "$PORT"; }

clean() { stop; rm -rf "$RUN"; log "redis: data removed"; }

case "${1:-}" in
  install) install ;; start) start ;; stop) stop ;; status) status ;; clean) clean ;;
  *) echo "usage: $0 install|start|stop|status|clean" >&2; exit 2 ;;
esac
