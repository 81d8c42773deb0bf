"""The operator endpoints: ``/metrics``, ``/healthz`` (the loop is alive), ``/readyz``.

``/readyz`` is ready when partitions are assigned and Kafka and Redis answered the last batch.
Each answer is a small JSON document saying why, so a failing probe explains itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from worker.observability.status import Health

HealthCheck = Callable[[], tuple[bool, dict[str, object]]]


def liveness(health: Health, now: Callable[[], float], stall_seconds: float) -> HealthCheck:
    def check() -> tuple[bool, dict[str, object]]:
        if health.last_loop_monotonic <= 0:
            return False, {"alive": False, "started": False, "loop_age_seconds": None}
        age = now() - health.last_loop_monotonic
        alive = age < stall_seconds
        return alive, {"alive": alive, "started": True, "loop_age_seconds": round(age, 3)}

    return check


def readiness(health: Health) -> HealthCheck:
    def check() -> tuple[bool, dict[str, object]]:
        ready = bool(health.assigned) and health.kafka_ok and health.redis_ok
        ready = ready and not health.stopping
        return ready, {
            "ready": ready,
            "assigned_partitions": len(health.assigned),
            "kafka_ok": health.kafka_ok,
            "redis_ok": health.redis_ok,
            "stopping": health.stopping,
            "last_error": health.last_error,
        }

    return check


class OpsServer:
    """A small threaded HTTP server; ``port=0`` picks a free port (see ``.port``)."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        healthz: HealthCheck,
        readyz: HealthCheck,
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda: _json(*healthz()),
            "/readyz": lambda: _json(*readyz()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                status, ctype, body = route() if route else (404, "text/plain", b"not found\n")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds would flood the logs

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ops-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _json(ok: bool, body: dict[str, object]) -> tuple[int, str, bytes]:
    return (200 if ok else 503), "application/json", (json.dumps(body) + "\n").encode()
