"""Worker subprocesses (``python -m worker run``) the fault suite starts, kills and restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from tests.e2e.harness import settings_env
from worker.config import Settings


@dataclass
class Member:
    name: str
    static: bool
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.time)


class WorkerPool:
    """Named members of one consumer group. A static member's name is its
    ``group.instance.id``, reused by every restart (as a StatefulSet pod's name is)."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self._settings = settings
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_WORKER_")}
        self._env = {
            **inherited,  # a developer's IDENTITY_WORKER_* settings would change the run
            **settings_env(settings),
            "IDENTITY_WORKER_OBSERVABILITY__LOG_FORMAT": "json",
        }
        self._log_dir = log_dir
        self.members: dict[str, Member] = {}
        self.starts = 0
        self.kills = 0
        self._admin = AdminClient({**settings.kafka.common(), "log_level": 2})

    def start(self, name: str, *, static: bool) -> Member:
        if name in self.members and self.members[name].proc.poll() is None:
            raise RuntimeError(f"worker {name} is already running")
        env = dict(self._env)
        if static:
            instance = f"{self._settings.kafka.group_id}-{name}"
            env["IDENTITY_WORKER_KAFKA__GROUP_INSTANCE_ID"] = instance
        log = (self._log_dir / f"worker-{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"], env=env, stdout=log, stderr=log
        )
        log.close()
        member = Member(name, static, proc)
        self.members[name] = member
        self.starts += 1
        return member

    def kill(self, name: str) -> float:
        """SIGKILL: nothing flushed, nothing committed. Returns the kill's wall time."""
        member = self.members[name]
        at = time.time()
        member.proc.send_signal(signal.SIGKILL)
        member.proc.wait(30)
        self.kills += 1
        return at

    def stop(self, name: str, timeout: float = 60) -> int:
        """SIGTERM: finish the batch, commit, leave; the exit code."""
        member = self.members[name]
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
        for name, member in self.members.items():
            if member.proc.poll() is None:
                self.stop(name, 30)
