"""The ops HTTP server: fixed readiness reasons, request timeouts, a bounded number of threads."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from worker.errors import Component
from worker.observability.http import READY_REASONS, OpsServer, readiness
from worker.observability.metrics import WorkerMetrics
from worker.observability.status import Health

SECRET_ERROR = "TransientStoreError: user@example.com at redis-0.internal:6379 refused"


def _ready_health() -> Health:
    return Health(assigned=frozenset({("events", 0)}), down=frozenset())


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"stopping": True}, "stopping"),
        ({"assigned": frozenset()}, "no partitions assigned"),
        ({"down": frozenset({Component.KAFKA})}, "kafka unavailable"),
        ({"down": frozenset({Component.REDIS})}, "redis unavailable"),
    ],
)
def test_readyz_answers_a_fixed_reason_never_the_error_text(
    changes: dict[str, object], reason: str
) -> None:
    health = _ready_health()
    health.last_error = SECRET_ERROR
    for name, value in changes.items():
        setattr(health, name, value)
    ready, body = readiness(health)()
    assert not ready
    assert body["reason"] == reason
    assert reason in READY_REASONS
    text = json.dumps(body)
    for secret in ("user@example.com", "redis-0.internal", "TransientStoreError"):
        assert secret not in text


def test_readyz_is_ready_without_a_reason() -> None:
    ready, body = readiness(_ready_health())()
    assert ready
    assert body["reason"] is None
    assert body["last_error"] is None


def _server(**options: float) -> OpsServer:
    health = _ready_health()
    health.mark_down(Component.REDIS)
    health.last_error = SECRET_ERROR
    return OpsServer(
        "127.0.0.1",
        0,
        WorkerMetrics.create().registry,
        healthz=lambda: (True, {"alive": True}),
        readyz=readiness(health),
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def slow_server() -> Iterator[OpsServer]:
    server = _server(request_timeout_seconds=0.5, max_threads=2)
    server.start()
    yield server
    server.close()


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _closed_by_server(conn: socket.socket, within: float) -> bool:
    """Whether the server closes ``conn`` (EOF or reset) within ``within`` seconds."""
    conn.settimeout(within)
    try:
        return conn.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_readyz_over_http_does_not_echo_the_error(slow_server: OpsServer) -> None:
    status, body = _get(slow_server.port, "/readyz")
    assert status == 503
    assert json.loads(body)["reason"] == "redis unavailable"
    assert b"user@example.com" not in body


def test_an_idle_connection_is_closed_after_the_request_timeout(slow_server: OpsServer) -> None:
    with socket.create_connection(("127.0.0.1", slow_server.port)) as idle:
        idle.sendall(b"GET /rea")  # a request that never completes
        started = time.monotonic()
        assert _closed_by_server(idle, within=10)
        assert time.monotonic() - started < 10
    assert _get(slow_server.port, "/healthz")[0] == 200


def test_connections_beyond_the_thread_bound_are_refused() -> None:
    server = _server(request_timeout_seconds=30, max_threads=2)
    server.start()
    try:
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        try:
            with socket.create_connection(("127.0.0.1", server.port)) as third:
                third.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                assert _closed_by_server(third, within=10)  # unanswered
            # a held connection is still served: its thread was waiting for it
            held[0].sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            held[0].settimeout(10)
            assert held[0].recv(1024).startswith(b"HTTP/1.0 200")
        finally:
            for conn in held:
                conn.close()
        deadline = time.monotonic() + 10
        status = 0
        while status != 200 and time.monotonic() < deadline:  # the slots free up
            try:
                status = _get(server.port, "/healthz")[0]
            except (urllib.error.URLError, ConnectionError):
                status = 0
        assert status == 200
    finally:
        server.close()
