"""The operator endpoints: ``/metrics``, ``/healthz`` (the loop is alive), ``/readyz``.

``/readyz`` is ready when partitions are assigned and Kafka and Redis answered the last batch.
Each answer is a small JSON document saying why, so a failing probe explains itself: a fixed
``reason`` (``READY_REASONS``), never an exception text, which could quote a distinct id or a
host name; the details are in the logs.

The server is exposed to whatever can reach the port: each connection gets
``request_timeout_seconds`` to send its request and read the answer, and at most
``max_threads`` connections are served at once (more are closed unanswered).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from worker.observability.status import Health

HealthCheck = Callable[[], tuple[bool, dict[str, object]]]

READY_REASONS: Final = (
    "stopping",
    "no partitions assigned",
    "kafka unavailable",
    "redis unavailable",
)
"""Why ``/readyz`` answers 503, in the order they are checked."""
REQUEST_TIMEOUT_SECONDS: Final = 5.0
"""A probe answers in milliseconds; a connection idle this long is a stuck or hostile client."""
MAX_THREADS: Final = 8
"""Kubernetes probes and one scraper need a few connections at a time; more are refused so a
flood of connections cannot exhaust the process's threads."""


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
        if health.stopping:
            reason: str | None = "stopping"
        elif not health.assigned:
            reason = "no partitions assigned"
        elif not health.kafka_ok:
            reason = "kafka unavailable"
        elif not health.redis_ok:
            reason = "redis unavailable"
        else:
            reason = None
        return reason is None, {
            "ready": reason is None,
            "reason": reason,
            "assigned_partitions": len(health.assigned),
            "kafka_ok": health.kafka_ok,
            "redis_ok": health.redis_ok,
            "stopping": health.stopping,
            "last_error": None if health.last_error is None else "batch failed, see the logs",
        }

    return check


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_threads`` at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, max_threads: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_threads)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: close it unanswered
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class OpsServer:
    """A small threaded HTTP server; ``port=0`` picks a free port (see ``.port``)."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        healthz: HealthCheck,
        readyz: HealthCheck,
        *,
        request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
        max_threads: int = MAX_THREADS,
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda: _json(*healthz()),
            "/readyz": lambda: _json(*readyz()),
        }

        class Handler(BaseHTTPRequestHandler):
            timeout = request_timeout_seconds  # the socket's timeout: reads and writes

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

        self._server = _BoundedServer((host, port), Handler, max_threads)
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
