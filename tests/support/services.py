"""Where the suite finds Kafka and Redis.

Order, per service: an env var a user set (``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``), a
testcontainers container when a Docker engine answers a ping, else the project's local services
(``deploy/local/*.sh``), started when not already running and stopped again at the end only if
this run started them. Never an in-memory stand-in.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "deploy" / "local"


def docker_engine_answers() -> bool:
    """True when a Docker daemon answers ``GET /_ping`` (``docker --version`` proves nothing).

    Talks to the daemon's socket directly (``DOCKER_HOST`` ``unix://`` or ``tcp://``, else
    ``/var/run/docker.sock``) so a missing engine costs one failed connect and leaks nothing.
    """
    if os.environ.get("TESTS_NO_DOCKER") == "1":
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(3)
            with sock:
                sock.connect(host.removeprefix("unix://"))
                return _ping(sock)
        if host.startswith("tcp://"):
            address, _, port = host.removeprefix("tcp://").rpartition(":")
            with socket.create_connection((address, int(port)), timeout=3) as sock:
                return _ping(sock)
    except OSError:
        return False
    return False


def _ping(sock: socket.socket) -> bool:
    sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    status_line = sock.recv(64).split(b"\r\n", 1)[0]
    return status_line.startswith(b"HTTP/1.") and status_line.split(b" ")[1:2] == [b"200"]


def port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def wait_for_kafka(bootstrap: str, timeout: float = 60.0) -> None:
    """Wait until the broker answers a Metadata request and lists itself."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while not port_open(host, int(port)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{bootstrap}: nothing listening")
        time.sleep(0.1)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    while True:
        try:
            if admin.list_topics(timeout=2).brokers:
                return
        except KafkaException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{bootstrap}: no metadata")
        time.sleep(0.2)


def run_local_script(name: str, action: str, env: dict[str, str]) -> None:
    """``bash deploy/local/<name> <action>`` with ``env`` added; raises when it fails."""
    result = subprocess.run(
        ["bash", str(LOCAL / name), action],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"deploy/local/{name} {action} failed:\n{result.stderr}{result.stdout}")


@contextmanager
def kafka_bootstrap_servers() -> Iterator[str]:
    if external := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        wait_for_kafka(external)
        yield external
        return
    if docker_engine_answers():
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:
            from testcontainers.kafka import KafkaContainer
        with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as container:
            bootstrap = container.get_bootstrap_server()
            wait_for_kafka(bootstrap)
            yield bootstrap
        return
    port = int(os.environ.get("KAFKA_PORT", "19092"))
    started = not port_open("127.0.0.1", port)
    if started:
        run_local_script("kafka.sh", "start", {"KAFKA_PORT": str(port)})
    bootstrap = f"127.0.0.1:{port}"
    try:
        wait_for_kafka(bootstrap)
        yield bootstrap
    finally:
        if started:
            run_local_script("kafka.sh", "stop", {"KAFKA_PORT": str(port)})


@contextmanager
def redis_url() -> Iterator[str]:
    if external := os.environ.get("REDIS_URL"):
        yield external
        return
    if docker_engine_answers():
        try:
            from testcontainers.community.redis import RedisContainer
        except ImportError:
            from testcontainers.redis import RedisContainer
        with RedisContainer("redis:7") as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        return
    port = int(os.environ.get("REDIS_PORT", "16379"))
    started = not port_open("127.0.0.1", port)
    if started:
        run_local_script("redis.sh", "start", {"REDIS_PORT": str(port)})
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if started:
            run_local_script("redis.sh", "stop", {"REDIS_PORT": str(port)})
