"""A Kafka broker and a Redis server of the fault suite's own, which it may restart.

They are started with the project's scripts (``deploy/local/kafka.sh``, ``redis.sh``) on ports
nobody else uses: ``FAULTS_KAFKA_PORT``, ``FAULTS_KAFKA_CONTROLLER_PORT`` and
``FAULTS_REDIS_PORT`` when set, else free ports the kernel hands out. Their data lives in a
temporary directory (``IDENTITY_WORKER_LOCAL_DIR``) removed at the end; the broker's jars are
the project's (``.local/kafka/libs``, resolved once), linked in. Shared services (the developer's
on 19092/16379, the test run's) are never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.services import ROOT, run_local_script, wait_for_kafka


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports nothing listens on (held open together while picked)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port(name: str, fallback: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else fallback


@dataclass(frozen=True, slots=True)
class PrivateServices:
    kafka_port: int
    kafka_controller_port: int
    redis_port: int
    local_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def _env(self) -> dict[str, str]:
        return {
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "REDIS_PORT": str(self.redis_port),
            "IDENTITY_WORKER_LOCAL_DIR": str(self.local_dir),
        }

    def start_kafka(self) -> None:
        run_local_script("kafka.sh", "start", self._env())
        wait_for_kafka(self.bootstrap)

    def stop_kafka(self) -> None:
        run_local_script("kafka.sh", "stop", self._env())

    def start_redis(self) -> None:
        run_local_script("redis.sh", "start", self._env())

    def stop_redis(self) -> None:
        """``SHUTDOWN``: Redis fsyncs its AOF, then exits; a start replays the AOF."""
        run_local_script("redis.sh", "stop", self._env())

    def restart_kafka(self) -> None:
        self.stop_kafka()
        self.start_kafka()

    def restart_redis(self) -> None:
        self.stop_redis()
        self.start_redis()


@contextmanager
def private_services() -> Iterator[PrivateServices]:
    """Kafka and Redis for this run only; stopped and deleted on exit."""
    jars_dir = Path(os.environ.get("IDENTITY_WORKER_LOCAL_DIR", ROOT / ".local")) / "kafka"
    run_local_script("kafka.sh", "jars", {})
    local_dir = Path(tempfile.mkdtemp(prefix="iw-faults-"))
    (local_dir / "kafka").mkdir()
    (local_dir / "kafka" / "libs").symlink_to(jars_dir / "libs", target_is_directory=True)
    kafka, controller, redis = free_ports(3)
    services = PrivateServices(
        kafka_port=_port("FAULTS_KAFKA_PORT", kafka),
        kafka_controller_port=_port("FAULTS_KAFKA_CONTROLLER_PORT", controller),
        redis_port=_port("FAULTS_REDIS_PORT", redis),
        local_dir=local_dir,
    )
    try:
        services.start_redis()
        services.start_kafka()
        yield services
    finally:
        try:
            services.stop_kafka()
        finally:
            try:
                services.stop_redis()
            finally:
                shutil.rmtree(local_dir, ignore_errors=True)
