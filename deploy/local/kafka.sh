#!/usr/bin/env bash
# Local Apache Kafka broker (KRaft, one combined broker+controller node on 127.0.0.1), run from
# jars resolved from Maven Central. Usage: deploy/local/kafka.sh jars|start|stop|status|clean
#
#   KAFKA_PORT (19092)  KAFKA_CONTROLLER_PORT (19093)  KAFKA_VERSION (pom default)
#   KAFKA_HEAP (512m)   IDENTITY_WORKER_LOCAL_DIR (.local)
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT="${KAFKA_PORT:-19092}"
CPORT="${KAFKA_CONTROLLER_PORT:-19093}"
POM="$ROOT/deploy/local/kafka/pom.xml"
LIBS="$LOCAL_DIR/kafka/libs"
RUN="$LOCAL_DIR/kafka/run-$PORT"
PIDFILE="$RUN/kafka.pid"
# 22-character base64url cluster id; the data dir is formatted once with it
CLUSTER_ID="${KAFKA_CLUSTER_ID:-aWRlbnRpdHktd29ya2VyMQ}"
JVM_OPTS=(-Xms64m "-Xmx${KAFKA_HEAP:-512m}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData
          -Djava.awt.headless=true "-Dlog4j2.configurationFile=$ROOT/deploy/local/kafka/log4j2.properties")

require_java() {
  command -v java >/dev/null 2>&1 || die "java not found: Kafka needs a Java 17+ runtime (Debian: apt-get install -y openjdk-17-jre-headless)"
  local major
  major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
  [ -n "$major" ] && [ "$major" -ge 17 ] || die "java $major found, Kafka 4 needs Java 17+ (Debian: apt-get install -y openjdk-17-jre-headless)"
}

jars() {
  local version stamp
  version="${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")}"
  stamp="$LIBS/.complete-$version-$(cksum < "$POM" | cut -d' ' -f1)"
  [ -f "$stamp" ] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found: the Kafka broker's jars are resolved with Maven (Debian: apt-get install -y maven)"
  require_java
  log "kafka: resolving Apache Kafka $version from Maven Central into $LIBS (first run only)"
  rm -rf "$LIBS"   # one classpath directory per version: never two kafka-clients jars
  local t0=$SECONDS
  mvn -B -q -ntp -Dstyle.color=never -f "$POM" "-Dkafka.version=$version" dependency:copy-dependencies \
      -DincludeScope=runtime "-DoutputDirectory=$LIBS" \
    || die "mvn could not resolve org.apache.kafka:kafka_2.13:$version (see the output above)"
  touch "$stamp"
  log "kafka: $(du -sh "$LIBS" | cut -f1) of jars in $((SECONDS - t0))s"
}

start() {
  if pid_alive "$PIDFILE" && port_open "$PORT"; then log "kafka: already running on 127.0.0.1:$PORT"; return 0; fi
  port_open "$PORT" && die "port $PORT is already in use by another process; set KAFKA_PORT to a free port"
  port_open "$CPORT" && die "port $CPORT is already in use by another process; set KAFKA_CONTROLLER_PORT to a free port"
  jars
  require_java
  mkdir -p "$RUN/data"
  sed -e "s|@DATA_DIR@|$RUN/data|g" -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CPORT|g" \
      "$ROOT/deploy/local/kafka/server.properties.in" > "$RUN/server.properties"
  local t0; t0=$(date +%s%N)
  if [ ! -f "$RUN/data/meta.properties" ]; then
    java "${JVM_OPTS[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format \
        -t "$CLUSTER_ID" -c "$RUN/server.properties" > "$RUN/format.log" 2>&1 \
      || { cat "$RUN/format.log" >&2; die "kafka: formatting the data dir failed"; }
  fi
  : > "$RUN/server.log"
  nohup java "${JVM_OPTS[@]}" -cp "$LIBS/*" kafka.Kafka "$RUN/server.properties" \
      >> "$RUN/server.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 900); do   # up to 90 s on a slow machine
    if ! pid_alive "$PIDFILE"; then tail -n 40 "$RUN/server.log" >&2; die "kafka died during start-up (log: $RUN/server.log)"; fi
    if grep -q "Kafka Server started" "$RUN/server.log" && port_open "$PORT"; then
      log "kafka: ready on 127.0.0.1:$PORT in $(( ($(date +%s%N) - t0) / 1000000 )) ms (log: $RUN/server.log)"
      return 0
    fi
    sleep 0.1
  done
  tail -n 40 "$RUN/server.log" >&2
  stop_pid "$PIDFILE" kafka 10
  die "kafka: not ready after 90 s"
}

stop() { stop_pid "$PIDFILE" kafka 30; }

status() { service_status kafka "$PIDFILE" "$PORT"; }

clean() { stop; rm -rf "$RUN"; log "kafka: data removed"; }

case "${1:-}" in
  jars) jars ;; start) start ;; stop) stop ;; status) status ;; clean) clean ;;
  *) echo "usage: $0 jars|start|stop|status|clean" >&2; exit 2 ;;
esac
