"""One fault run: a stream flows while workers are killed, Redis and the broker restart, the
group rebalances and Redis stalls; then the verdict (``checks.verdict``) and a JSON summary."""

from __future__ import annotations

import os
import platform
import random
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Producer

from tests.e2e.harness import e2e_settings
from tests.faults.checks import verdict
from tests.faults.observe import Outputs, RssSampler
from tests.faults.services import PrivateServices
from tests.faults.stream import StreamEvent, events
from tests.faults.workers import WorkerPool
from worker.config import Settings

MIB = 1024 * 1024
QUIET = 2
"""librdkafka log level of the suite's own clients: the broker restarts on purpose."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How much of each fault; ``FULL`` is ``make faults``, ``SHORT`` runs inside ``make test``."""

    name: str
    min_events: int
    rate: float
    """Events per second the producer sends while faults happen."""
    users_per_tenant: int
    dynamic_kills: int
    """kill -9 of a worker without static membership (each costs a session timeout)."""
    static_kills: int
    static_members_gone: int
    """kill -9 of a static member replaced by a member of another id: the trade-off, its
    partitions wait for the static session timeout."""
    redis_restarts: int
    broker_restarts: int
    slow_redis: tuple[float, ...]
    """Seconds of each ``CLIENT PAUSE`` (one more than the 5 s socket timeout forces retries)."""
    rebalance_cycles: int
    """Each: two members join a group of one, leave, join again, leave (8 rebalances)."""
    seed: int = 13


FULL = Plan(
    name="full",
    min_events=50_000,
    rate=190.0,
    users_per_tenant=3_000,
    dynamic_kills=3,
    static_kills=20,
    static_members_gone=2,
    redis_restarts=2,
    broker_restarts=2,
    slow_redis=(2.0, 3.0, 7.0, 20.0),
    rebalance_cycles=2,
)
SHORT = Plan(
    name="short",
    min_events=5_000,
    rate=120.0,
    users_per_tenant=400,
    dynamic_kills=0,
    static_kills=3,
    static_members_gone=0,
    redis_restarts=1,
    broker_restarts=1,
    slow_redis=(3.0,),
    rebalance_cycles=1,
)


class _Feeder:
    """Produces the stream at ``rate`` until told to finish, then the rest at full speed."""

    def __init__(self, settings: Settings, stream: Iterator[StreamEvent], plan: Plan) -> None:
        self._producer = Producer(
            {
                **settings.kafka.common(),
                "enable.idempotence": True,
                "linger.ms": 5,
                "log_level": QUIET,
            }
        )
        self._topic = settings.topics.track
        self._stream = stream
        self._plan = plan
        self.sent: list[StreamEvent] = []
        self._finish = threading.Event()
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    def _send(self, event: StreamEvent) -> None:
        while True:
            try:
                self._producer.produce(self._topic, key=event.key, value=event.value)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)
        self.sent.append(event)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._finish.is_set():
            due = int((time.monotonic() - start) * self._plan.rate)
            while len(self.sent) < due:
                self._send(next(self._stream))
            time.sleep(0.02)
        while len(self.sent) < self._plan.min_events and not self._abort.is_set():
            self._send(next(self._stream))

    def abort(self) -> None:
        self._abort.set()
        self._finish.set()
        self._thread.join()
        self._producer.flush(10)

    def finish(self) -> list[StreamEvent]:
        self._finish.set()
        self._thread.join()
        remaining = self._producer.flush(120)
        if remaining:
            raise RuntimeError(f"{remaining} input events not acknowledged by the broker")
        return self.sent


def _summary_stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"seconds": [], "p50": None, "max": None}
    return {
        "seconds": [round(v, 2) for v in values],
        "p50": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }


def run(
    plan: Plan,
    services: PrivateServices,
    work_dir: Path,
    *,
    exactly_once: bool = False,
    code: Path | None = None,
) -> dict[str, Any]:
    """Run ``plan`` against ``services``; the summary (also written to
    ``work_dir/summary-<plan>.json`` by the caller). With ``exactly_once`` the workers run with
    ``delivery.exactly_once`` and the outputs are read with ``isolation.level=read_committed``.
    ``code``: a directory whose ``worker`` package the workers run (a compiled build)."""
    started = time.monotonic()
    rng = random.Random(plan.seed)
    mode = "exactly-once" if exactly_once else "at-least-once"
    name = f"faults-{plan.name}-{'eos-' if exactly_once else ''}{uuid.uuid4().hex[:6]}"
    settings = e2e_settings(
        services.bootstrap,
        services.redis_url,
        name,
        topics={"partitions": 6},
        batch={"max_messages": 500},
        buffer={"delay_seconds": 3, "release_interval_seconds": 0.5, "lease_seconds": 5},
        delivery={"exactly_once": exactly_once},
    )
    work_dir.mkdir(parents=True, exist_ok=True)
    pool = WorkerPool(settings, work_dir, code)
    outputs = Outputs(settings, read_committed=exactly_once)
    rss = RssSampler(pool.pids)
    side = redis.Redis.from_url(services.redis_url, socket_timeout=30)
    stream = events(
        seed=plan.seed,
        users_per_tenant=plan.users_per_tenant,
        start_ms=int(time.time() * 1000) - 6 * 3600 * 1000,
    )
    feeder = _Feeder(settings, stream, plan)
    resume_dynamic: list[float] = []
    resume_static: list[float] = []
    resume_gone: list[float] = []
    rebalances = 0
    restarts = 0
    log: list[str] = []

    def note(text: str) -> None:
        log.append(f"{time.monotonic() - started:7.1f}s {text}")
        print(log[-1], flush=True)

    def resumed_after(t: float, timeout: float = 180) -> float:
        """Seconds from ``t`` to the first enriched record produced after it."""
        first = outputs.wait_first_direct_after(int(t * 1000), timeout)
        if first is None:
            raise TimeoutError(f"no enriched event within {timeout} s after t={t}")
        return first / 1000 - t

    try:
        # -- kill -9 without static membership: the dead member's session must expire --------
        rss.phase = "kills"
        pool.start("w0", static=False)
        resumed_after(time.time())
        for _ in range(plan.dynamic_kills):
            time.sleep(rng.uniform(0.5, 3.0))  # a random moment of the stream
            at = pool.kill("w0")
            pool.start("w0", static=False)
            restarts += 1
            resume_dynamic.append(resumed_after(at))
            note(f"kill -9 (dynamic member): resumed after {resume_dynamic[-1]:.1f} s")
        if pool.members["w0"].proc.poll() is None:
            pool.stop("w0")

        # -- kill -9 with static membership ----------------------------------------------------
        pool.start("w0", static=True)
        resumed_after(time.time())
        for _ in range(plan.static_kills):
            time.sleep(rng.uniform(0.2, 3.0))  # a random moment of the stream
            at = pool.kill("w0")
            pool.start("w0", static=True)
            restarts += 1
            resume_static.append(resumed_after(at))
            note(f"kill -9 (static member): resumed after {resume_static[-1]:.1f} s")

        # -- a static member that does not come back: its partitions wait for its session ------
        for _ in range(plan.static_members_gone):
            time.sleep(rng.uniform(0.2, 3.0))
            at = pool.kill("w0")
            pool.start("w0", static=False)
            restarts += 1
            resume_gone.append(resumed_after(at))
            note(f"static member gone, replaced: resumed after {resume_gone[-1]:.1f} s")
            pool.stop("w0")
            pool.start("w0", static=True)
            resumed_after(time.time())

        # -- Redis restarted (SHUTDOWN: AOF fsynced, replayed at start) -----------------------
        rss.phase = "redis_restart"
        for _ in range(plan.redis_restarts):
            time.sleep(rng.uniform(0.5, 2.0))
            services.restart_redis()
            at = time.time()
            note(f"redis restarted: output {resumed_after(at):.1f} s after it was back")

        # -- the broker restarted (controlled shutdown) ---------------------------------------
        rss.phase = "broker_restart"
        for _ in range(plan.broker_restarts):
            time.sleep(rng.uniform(0.5, 2.0))
            services.restart_kafka()
            at = time.time()
            note(f"broker restarted: output {resumed_after(at):.1f} s after it was back")

        # -- a slow Redis: every client paused ------------------------------------------------
        rss.phase = "slow_redis"
        for seconds in plan.slow_redis:
            time.sleep(rng.uniform(0.5, 2.0))
            side.client_pause(int(seconds * 1000), all=True)
            at = time.time() + seconds
            note(f"redis paused {seconds} s: output again {resumed_after(at):.1f} s after")

        # -- rebalances: members join and leave a group of three under load -------------------
        rss.phase = "rebalances"
        for _ in range(plan.rebalance_cycles):
            for joined, leaving in ((("w1", "w2"), ()), ((), ("w1",)), (("w1",), ("w2",))):
                for member in joined:
                    pool.start(member, static=False)
                    rebalances += 1
                for member in leaving:
                    pool.stop(member)
                    rebalances += 1
                took = pool.wait_stable(1 + len([m for m in ("w1", "w2") if _alive(pool, m)]))
                note(f"group: +{list(joined)} -{list(leaving)}, stable after {took:.1f} s")
                time.sleep(rng.uniform(0.5, 2.0))
            pool.stop("w1")
            rebalances += 1
            pool.wait_stable(1)

        # -- drain ----------------------------------------------------------------------------
        rss.phase = "drain"
        sent = feeder.finish()
        note(f"{len(sent)} events sent; waiting for every one on the enriched topic")
        still = outputs.wait_all({e.uuid for e in sent}, timeout=300)
        outputs.settle(quiet_seconds=5, timeout=120)
        crashed = pool.crashed()
        pool.close()
        outputs.settle(quiet_seconds=2, timeout=60)
        note(f"drained ({len(still)} missing); checking")
        client = redis.Redis.from_url(services.redis_url, socket_timeout=30)
        result = verdict(
            sent, outputs, client, settings.identity.to_config(), settings.redis.key_prefix
        )
        client.close()
    finally:
        feeder.abort()
        rss.close()
        pool.close()
        outputs.close()
        side.close()

    command = "python -m tests.faults" if plan.name == "full" else "pytest -m faults tests/faults"
    return {
        "plan": plan.name,
        "mode": mode,
        "isolation_level": "read_committed" if exactly_once else "read_uncommitted",
        "command": command + (" --exactly-once" if exactly_once else ""),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "seconds": round(time.monotonic() - started, 1),
        "kills": pool.kills,
        "restarts": restarts,
        "worker_starts": pool.starts,
        "redis_restarts": plan.redis_restarts,
        "broker_restarts": plan.broker_restarts,
        "slow_redis_pauses_seconds": list(plan.slow_redis),
        "rebalances": rebalances,
        "workers_crashed_by_themselves": crashed,
        "liveness_restarts": pool.liveness_restarts,
        "exit_restarts": pool.exit_restarts,
        "resume_after_kill_static": _summary_stats(resume_static),
        "resume_after_kill_dynamic": _summary_stats(resume_dynamic),
        "resume_after_static_member_gone": _summary_stats(resume_gone),
        "rss_max_mib_by_phase": {k: round(v / MIB, 1) for k, v in rss.max_by_phase.items()},
        "rss_samples": rss.samples,
        **result.as_json(),
        "log": log,
    }


def _alive(pool: WorkerPool, name: str) -> bool:
    member = pool.members.get(name)
    return member is not None and member.proc.poll() is None
