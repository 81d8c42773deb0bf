"""Worker subprocesses (``python -m worker run``) the fault suite starts, kills and restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from tests.e2e.harness import settings_env
from tests.faults.services import free_ports
from worker.config import Settings
from worker.kafka.deadline import EXIT_STUCK


def member_env(
    base: dict[str, str], settings: Settings, name: str, *, static: bool
) -> dict[str, str]:
    """The environment of member ``name``. A static member's ``group.instance.id`` is
    ``<group id>-<name>``. With exactly-once, a dynamic member gets ``<group id>-<name>`` as its
    ``transactional.id`` (without it every member of one host would share
    ``<group id>-<host name>`` and fence the others); a static member's comes from its instance
    id (``worker.app.transactional_id``). Both are stable across restarts under the same name,
    so a restarted member aborts what its killed run left open."""
    env = dict(base)
    group = settings.kafka.group_id
    if static:
        env["IDENTITY_WORKER_KAFKA__GROUP_INSTANCE_ID"] = f"{group}-{name}"
    elif settings.delivery.exactly_once:
        env["IDENTITY_WORKER_DELIVERY__TRANSACTIONAL_ID"] = f"{group}-{name}"
    return env


LIVENESS_PERIOD = 2.0
LIVENESS_FAILURES = 3
"""As the pod's ``livenessProbe`` (deploy/k8s), probed more often: three failed ``/healthz`` in a
row restart the worker."""


@dataclass
class Member:
    name: str
    static: bool
    proc: subprocess.Popen[bytes]
    metrics_port: int
    started: float = field(default_factory=time.time)
    failed_probes: int = 0
    stopped: bool = False
    """the suite stopped it (SIGTERM): its exit is not the worker's own"""


def alive(port: int) -> bool | None:
    """What ``/healthz`` says: ``False`` when the started loop is stuck, ``None`` when it cannot
    tell (not started yet, not listening)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return bool(json.loads(response.read())["alive"])
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        return False if body.get("started") else None
    except (OSError, ValueError):
        return None


class WorkerPool:
    """Named members of one consumer group. A static member's name is its
    ``group.instance.id``, reused by every restart (as a StatefulSet pod's name is).

    Like the kubelet, a thread probes each live member's ``/healthz`` and restarts (SIGKILL,
    then start under the same name) a member whose loop is stuck: ``liveness_restarts``.
    """

    def __init__(self, settings: Settings, log_dir: Path, code: Path | None = None) -> None:
        """``code``: a directory whose ``worker`` package the members run (a compiled build,
        ``PYTHONPATH=code``) instead of this repository's."""
        self._settings = settings
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_WORKER_")}
        self._env = {
            **inherited,  # a developer's IDENTITY_WORKER_* settings would change the run
            **settings_env(settings),
            "IDENTITY_WORKER_OBSERVABILITY__LOG_FORMAT": "json",
        }
        if code is not None:
            self._env["PYTHONPATH"] = str(code)
        self._code = code
        self._log_dir = log_dir
        self.members: dict[str, Member] = {}
        self.starts = 0
        self.kills = 0
        self._admin = AdminClient({**settings.kafka.common(), "log_level": 2})
        self._lock = threading.RLock()
        self.liveness_restarts: list[str] = []
        self.exit_restarts: list[str] = []
        """members that exited by themselves with ``EXIT_STUCK`` (a Kafka client call blocked
        past its deadline, ``worker/kafka/deadline.py``), started again as a pod would be"""
        self._closing = threading.Event()
        self._prober = threading.Thread(target=self._probe, name="liveness", daemon=True)
        self._prober.start()

    def _probe(self) -> None:
        while not self._closing.wait(LIVENESS_PERIOD):
            self._restart_stuck_exits()
            with self._lock:
                members = [m for m in self.members.values() if m.proc.poll() is None]
            for member in members:
                if alive(member.metrics_port) is False:
                    member.failed_probes += 1
                else:
                    member.failed_probes = 0
                if member.failed_probes < LIVENESS_FAILURES:
                    continue
                with self._lock:
                    if (
                        self.members.get(member.name) is not member
                        or member.proc.poll() is not None
                    ):
                        continue
                    member.proc.send_signal(signal.SIGKILL)
                    member.proc.wait(30)
                    self.liveness_restarts.append(f"{member.name} at {time.time():.1f}")
                    self.start(member.name, static=member.static)

    def _restart_stuck_exits(self) -> None:
        """Like the kubelet (``restartPolicy: Always``), start again a member that exited with
        ``EXIT_STUCK``: the worker's own answer to a client call that never returns. Any
        other exit stays a crash (``crashed``)."""
        with self._lock:
            for member in list(self.members.values()):
                if not member.stopped and member.proc.poll() == EXIT_STUCK:
                    self.exit_restarts.append(f"{member.name} at {time.time():.1f}")
                    self.start(member.name, static=member.static)

    def start(self, name: str, *, static: bool) -> Member:
        with self._lock:
            if name in self.members and self.members[name].proc.poll() is None:
                raise RuntimeError(f"worker {name} is already running")
            env = member_env(self._env, self._settings, name, static=static)
            (port,) = free_ports(1)
            env["IDENTITY_WORKER_OBSERVABILITY__METRICS_PORT"] = str(port)
            log = (self._log_dir / f"worker-{name}.log").open("ab")
            proc = subprocess.Popen(
                [sys.executable, "-m", "worker", "run"],
                env=env,
                stdout=log,
                stderr=log,
                cwd=self._code,  # ``-m`` looks in the working directory first
            )
            log.close()
            member = Member(name, static, proc, port)
            self.members[name] = member
            self.starts += 1
            return member

    def kill(self, name: str) -> float:
        """SIGKILL: nothing flushed, nothing committed. Returns the kill's wall time."""
        with self._lock:
            member = self.members[name]
            at = time.time()
            member.proc.send_signal(signal.SIGKILL)
            member.proc.wait(30)
            self.kills += 1
            return at

    def stop(self, name: str, timeout: float = 60) -> int:
        """SIGTERM: finish the batch, commit, leave; the exit code."""
        with self._lock:
            member = self.members[name]
            member.stopped = True
            member.proc.send_signal(signal.SIGTERM)
            try:
                return member.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                member.proc.kill()
                member.proc.wait(10)
                return -9

    def pids(self) -> list[int]:
        return [m.proc.pid for m in list(self.members.values()) if m.proc.poll() is None]

    def crashed(self) -> list[str]:
        """Members that exited by themselves (not killed or stopped by the suite)."""
        return [
            name
            for name, m in self.members.items()
            if m.proc.returncode not in (None, 0, -signal.SIGKILL)
        ]

    def wait_stable(self, members: int, timeout: float = 120) -> float:
        """Wait until the group is Stable with ``members`` members; the seconds it took."""
        start = time.monotonic()
        group = self._settings.kafka.group_id
        while time.monotonic() - start < timeout:
            try:
                future = self._admin.describe_consumer_groups([group], request_timeout=5)[group]
                description = future.result()
                if (
                    description.state == ConsumerGroupState.STABLE
                    and len(description.members) == members
                    and all(m.assignment.topic_partitions for m in description.members)
                ):
                    return time.monotonic() - start
            except KafkaException:
                pass  # the coordinator is moving or the broker restarting: ask again
            time.sleep(0.2)
        raise TimeoutError(f"group {group} not stable with {members} members after {timeout} s")

    def close(self) -> None:
        self._closing.set()
        if self._prober.is_alive() and self._prober is not threading.current_thread():
            self._prober.join(60)
        for name, member in self.members.items():
            if member.proc.poll() is None:
                self.stop(name, 30)
