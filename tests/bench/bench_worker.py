"""Backlog-drain benchmark of the whole worker (a script, not a test).

    .venv/bin/python -m tests.bench.bench_worker [--events 50000] [--quick] [--out FILE]

Generates a backlog of events (80% track, a quarter of them with ``set``; 15% identify with an
anonymous id; 5% alias; Zipf-distributed users, each user's events under one key) and measures,
side by side in one run on the same machine and the same backlog:

1. **pass-through**: the ceiling of any consumer of this shape: consume, decode the JSON, add
   three fields, encode, produce; flush and commit per batch of 1,000 (with the standard
   library's ``json`` and with ``orjson``);
2. **worker, JSON** and **worker, Avro**: ``identity-worker run`` as a subprocess over a backlog
   already in Kafka (6 partitions), JSON input and output, then Avro input and output;
3. **naive**: a per-event loop (poll one message, one store call, produce and wait for the
   acknowledgement, commit), the shape the batching replaces;
4. **scaling**: 1, 2 and 3 worker processes in one group on a 6-partition topic, started and
   settled before the backlog is produced; their combined rate.

``--build LABEL=DIR`` (repeatable): the JSON and the Avro drains also run with the compiled build
of the ``worker`` package in ``DIR`` (``make compiled``: ``.local/compiled``), rows named
``worker, JSON, LABEL``, with ``PYTHONPATH=DIR`` as ``--baseline`` runs a git revision's tree;
each such run checks its worker process loaded the build's compiled modules. With a single
``--build`` the scaling runs use that build; the sampled run (``--py-spy``, ``--profile``) is
always the interpreted worker, whose frames a profiler can see.
The worker rows run with ``redis.rules``'s default (``worker``); ``--rules script`` adds the
same drains with the rules in the resolve script (rows ``..., rules in script``).
``--rounds N`` repeats the drains (the medians are reported), the interpreted worker and the
builds taking turns to go first, and the json pass-through with them (its median is the
ceiling); an untimed pass-through runs first of all, so no measured run meets a cold broker.

Every rate is the events after the first commit divided by the time from the first commit to
the commit of the last event (so start-up and group joins are not counted). For every worker
run it also reports the Redis server time of the worker's commands (SLOWLOG of its named
connections: µs per event and per script call) and, for the JSON run, the bytes of Redis per
distinct id of the population it built.

Correctness gate: each worker run's enriched events are read back and compared with the pure
reference model (``worker.identity.reference.ReferenceStore``) run over the same events in the
same per-key order: every event's person, ``is_identified``, ``person_created_at`` and person
properties, and the final partition of distinct ids into persons read from Redis. A run that
fails the gate reports no speed. Nothing is asserted in the test suite; the numbers go to
docs/BENCHMARKS.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import redis
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests.bench.bench_store import Zipf
from tests.bench.common import (
    Build,
    MemoryBreakdown,
    ServerTime,
    add_build_option,
    compiled_modules,
    delete_prefix,
    group_members,
    mapped_libraries,
    memory_breakdown,
    named_url,
    run_header,
    wait_for,
    worker_lines,
)
from tests.bench.profile import report as profile_report
from tests.e2e.harness import DEFAULT_RULES, e2e_settings, settings_env
from worker.app import build_store
from worker.codec.avro import AvroCodec, SchemaName
from worker.codec.decode import DecodeOptions, decode_message
from worker.codec.encode import OutputEncoder
from worker.codec.envelope import to_identity_event
from worker.config import Settings
from worker.identity.reference import ReferenceStore

TENANT = "drain"
PARTITIONS = 6
BATCH = {"max_messages": 1000, "max_wait_seconds": 0.05}


# -- the backlog ----------------------------------------------------------------------------------


def backlog(n: int, users: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    zipf = Zipf(users, 1.1, rng)
    events = []
    for i in range(n):
        user = zipf()
        roll = rng.random()
        base = {
            "tenant": TENANT,
            "uuid": str(uuid.UUID(int=rng.getrandbits(128))),
            "timestamp": 1_760_000_000_000 + i,
        }
        if roll < 0.80:
            body = {**base, "type": "track", "event": "page", "distinct_id": f"anon-{user}"}
            if rng.random() < 0.25:
                body["set"] = {"plan": rng.choice(["free", "pro"]), "n": i}
        elif roll < 0.95:
            body = {
                **base,
                "type": "identify",
                "distinct_id": f"user-{user}",
                "other_id": f"anon-{user}",
                "set": {"email_domain": "example.com"},
            }
        else:
            body = {
                **base,
                "type": "alias",
                "distinct_id": f"user-{user}",
                "other_id": f"crm-{user}",
            }
        events.append(body)
    return events


@dataclass(frozen=True)
class Messages:
    """The backlog as Kafka messages of one input format."""

    keys: list[bytes]
    values: list[bytes]


def as_messages(events: Sequence[dict[str, Any]], fmt: str) -> Messages:
    keys = [f"{TENANT}:{body['distinct_id'].split('-', 1)[1]}".encode() for body in events]
    values = [json.dumps(body).encode() for body in events]
    if fmt == "avro":
        encoder, options = OutputEncoder("avro"), DecodeOptions()
        values = [
            encoder.input_event(decode_message(v, k, None, "bench", options))
            for k, v in zip(keys, values, strict=True)
        ]
    return Messages(keys, values)


def preload(settings: Settings, messages: Messages, limit: int | None = None) -> float:
    # idempotent: a retried request never lands after a later one (the gate needs the backlog
    # in its per-key order)
    producer = Producer(
        {
            **settings.kafka.common(),
            "linger.ms": 20,
            "compression.type": "lz4",
            "enable.idempotence": True,
        }
    )
    start = time.perf_counter()
    count = len(messages.values) if limit is None else limit
    for key, value in zip(messages.keys[:count], messages.values[:count], strict=True):
        while True:
            try:
                producer.produce(settings.topics.track, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("the backlog was not fully produced")
    return time.perf_counter() - start


# -- the reference model --------------------------------------------------------------------------


@dataclass
class Expected:
    """What the reference model says of each event (by uuid) and of each distinct id."""

    by_uuid: dict[str, tuple[str, bool, int, dict[str, Any]]]
    final_person: dict[str, str]
    partition: set[frozenset[str]]


def expected(messages: Messages, count: int) -> Expected:
    options = DecodeOptions()
    store = ReferenceStore()
    events = []
    for key, value in zip(messages.keys[:count], messages.values[:count], strict=True):
        e = decode_message(value, key, None, "bench", options)
        events.append(to_identity_event(e, e.timestamp_ms))
    resolutions = store.resolve_batch(TENANT, events, int(time.time() * 1000))
    by_uuid = {
        r.event_uuid: (r.person_id or "", r.is_identified, r.created_at_ms or 0, dict(r.properties))
        for r in resolutions
    }
    final, partition = {}, set()
    for person in store.persons(TENANT):
        partition.add(person.distinct_ids)
        for distinct_id in person.distinct_ids:
            final[distinct_id] = person.person_id
    return Expected(by_uuid, final, partition)


@dataclass
class Gate:
    ok: bool
    detail: str
    duplicates: int = 0


def read_enriched(settings: Settings, count: int, fmt: str) -> list[dict[str, Any]]:
    consumer = Consumer(
        {
            **settings.kafka.common(),
            "group.id": f"{settings.kafka.group_id}-gate",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.topics.enriched])
    avro = AvroCodec()
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    idle_since = None
    while time.monotonic() < deadline:
        batch = consumer.consume(num_messages=5000, timeout=0.5)
        for message in batch:
            value = message.value()
            if message.error() is not None or value is None:
                continue
            if fmt == "avro":
                record = dict(avro.decode(SchemaName.ENRICHED_EVENT, value).record)
                record["person_properties"] = json.loads(record["person_properties"])
            else:
                record = json.loads(value)
            out.append(record)
        if len(out) >= count:
            # duplicates (redelivery after a rebalance) may follow: read until quiet
            idle_since = idle_since or time.monotonic()
            if not batch and time.monotonic() - idle_since > 1.0:
                break
    consumer.close()
    return out


def gate(settings: Settings, client: redis.Redis, want: Expected, count: int, fmt: str) -> Gate:
    """The run's outputs against the reference model (see the module's docstring)."""
    records = read_enriched(settings, count, fmt)
    seen: dict[str, int] = {}
    for record in records:
        event_uuid = record["uuid"]
        seen[event_uuid] = seen.get(event_uuid, 0) + 1
        expect = want.by_uuid.get(event_uuid)
        if expect is None:
            return Gate(False, f"an enriched event of an unknown uuid {event_uuid}")
        got = (
            record["person_id"],
            record["is_identified"],
            record["person_created_at"],
            record["person_properties"],
        )
        if got == expect:
            continue
        if seen[event_uuid] > 1 and got[0] == want.final_person.get(record["distinct_id"]):
            continue  # a redelivered event, resolved again after later merges
        return Gate(False, f"event {event_uuid}: worker {got} != reference {expect}")
    missing = len(want.by_uuid) - len(seen)
    if missing:
        return Gate(False, f"{missing} of {count} events have no enriched event")
    store = build_store(settings, client)
    partition = {person.distinct_ids for person in store.persons(TENANT)}
    if partition != want.partition:
        return Gate(
            False,
            f"final partition differs: {len(partition - want.partition)} persons in Redis "
            f"only, {len(want.partition - partition)} in the reference only",
        )
    duplicates = len(records) - len(seen)
    return Gate(True, f"{count} events and {len(partition)} persons as the reference", duplicates)


# -- timing by committed offsets ------------------------------------------------------------------


@dataclass
class Progress:
    """Watches a group's committed offsets on the input topic."""

    settings: Settings
    group: str
    partitions: int
    marks: list[tuple[float, int]] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    """worker processes whose CPU time is read at each mark"""
    cpu: list[float] = field(default_factory=list)
    services: dict[str, Callable[[], float | None]] = field(default_factory=dict)
    """the services' CPU seconds so far (Redis, the broker), read at each mark"""
    service_cpu: list[dict[str, float | None]] = field(default_factory=list)
    sched: list[tuple[int, int] | None] = field(default_factory=list)
    """the processes' main threads' run and wait nanoseconds so far (``scheduled``), summed"""

    def __post_init__(self) -> None:
        self._consumer = Consumer({**self.settings.kafka.common(), "group.id": self.group})
        self._tps = [TopicPartition(self.settings.topics.track, p) for p in range(self.partitions)]

    def committed(self) -> int:
        offsets = self._consumer.committed(self._tps, timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)

    def watch(self, total: int, timeout: float) -> float:
        """Events per second from the first commit to the commit of the last event."""
        deadline = time.monotonic() + timeout
        last = 0
        while last < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{last} of {total} committed after {timeout:.0f}s")
            now, done = time.perf_counter(), self.committed()
            if done != last:
                self.marks.append((now, done))
                self.cpu.append(sum(cpu_seconds(pid) for pid in self.pids))
                self.service_cpu.append({name: read() for name, read in self.services.items()})
                self.sched.append(summed(scheduled(pid) for pid in self.pids))
                last = done
            time.sleep(0.02)
        self._consumer.close()
        return rate_of(self.marks, total)

    def cpu_us_per_event(self) -> float:
        """CPU time of the worker processes per event, between the first and the last mark."""
        events = self.marks[-1][1] - self.marks[0][1]
        return 1e6 * (self.cpu[-1] - self.cpu[0]) / events if events else 0.0

    def thread_time(self) -> ThreadTime | None:
        """How the main threads spent the time between the first and the last mark."""
        return ThreadTime.between(
            self.sched[0], self.sched[-1], self.marks[-1][0] - self.marks[0][0], len(self.pids)
        )

    def service_us_per_event(self, name: str) -> float | None:
        """CPU time of service ``name`` per event over the same interval (None: not read)."""
        events = self.marks[-1][1] - self.marks[0][1]
        first, last = self.service_cpu[0].get(name), self.service_cpu[-1].get(name)
        if not events or first is None or last is None:
            return None
        return 1e6 * (last - first) / events


def redis_cpu_seconds(client: redis.Redis) -> float | None:
    """The Redis server's user + system CPU seconds so far (``INFO cpu``): all its clients',
    which during a drain are the worker's."""
    try:
        info = client.info("cpu")
    except redis.RedisError:
        return None
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def local_broker_pid(bootstrap: str) -> int | None:
    """The pid of the local broker listening on ``bootstrap``'s port, when it runs on this
    machine from ``deploy/local/kafka.sh`` (its data directory is named after the port)."""
    port = bootstrap.split(",")[0].rpartition(":")[2]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"kafka.Kafka" in cmdline and f"run-{port}/".encode() in cmdline:
            found.append(int(entry.name))
    return found[0] if len(found) == 1 else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scheduled(pid: int | None = None) -> tuple[int, int] | None:
    """Nanoseconds the main thread of process ``pid`` (None: the calling thread) has run, and
    has waited for a CPU while runnable, so far (Linux ``schedstat``); None where unreadable."""
    path = f"/proc/{pid}/task/{pid}/schedstat" if pid else "/proc/thread-self/schedstat"
    try:
        with open(path, encoding="ascii") as stat:
            running, waiting, _slices = stat.read().split()
    except (OSError, ValueError):
        return None
    return int(running), int(waiting)


def summed(values: Iterable[tuple[int, int] | None]) -> tuple[int, int] | None:
    """The sum of threads' ``scheduled`` values; None if one is unknown."""
    running = waiting = 0
    for value in values:
        if value is None:
            return None
        running, waiting = running + value[0], waiting + value[1]
    return running, waiting


@dataclass(frozen=True)
class ThreadTime:
    """How a process's main thread spent a drain's wall time: running on a CPU, runnable but
    waiting for one (the machine's cores busy with other work), and the rest blocked (waiting
    for Redis, the broker, a poll). The worker's thread is its bound: what it cannot run,
    nothing else runs for it."""

    running: float
    waiting: float

    @property
    def blocked(self) -> float:
        return max(0.0, 1.0 - self.running - self.waiting)

    @classmethod
    def between(
        cls,
        first: tuple[int, int] | None,
        last: tuple[int, int] | None,
        seconds: float,
        threads: int = 1,
    ) -> ThreadTime | None:
        """Shares of ``threads`` threads' time over ``seconds`` of wall time."""
        if first is None or last is None or seconds <= 0 or threads < 1:
            return None
        wall = seconds * 1e9 * threads
        return cls((last[0] - first[0]) / wall, (last[1] - first[1]) / wall)

    def row(self) -> str:
        return f"{self.running:.0%} | {self.waiting:.0%} | {self.blocked:.0%}"


def rate_of(marks: Sequence[tuple[float, int]], total: int) -> float:
    (t1, c1), (t2, c2) = marks[0], marks[-1]
    if c2 != total or t2 <= t1:
        raise RuntimeError(f"too few commits to time the run: {marks}")
    return (c2 - c1) / (t2 - t1)


# -- the variants ---------------------------------------------------------------------------------


def bench_settings(args: argparse.Namespace, name: str, **sections: Any) -> Settings:
    return e2e_settings(
        args.bootstrap,
        named_url(args.redis_url, name),
        name,
        buffer={"enabled": False},
        batch=BATCH,
        topics={"partitions": PARTITIONS},
        **sections,
    )


def baseline_tree(ref: str, root: Path) -> Path:
    """The ``worker`` package of git revision ``ref``, exported under ``root`` (to run the
    code before a change beside the code after it)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], check=True, capture_output=True, text=True
    ).stdout.strip()
    target = root / f"baseline-{commit}"
    if not (target / "worker").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit, "worker"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target.resolve()


def start_workers(
    settings: Settings,
    count: int,
    logs: Path,
    profile: Path | None = None,
    code: Path | None = None,
) -> list[subprocess.Popen[bytes]]:
    """``count`` worker processes; ``code``: a directory whose ``worker`` package they run
    instead of this tree's."""
    env = {
        **os.environ,
        **settings_env(settings),
        "IDENTITY_WORKER_OBSERVABILITY__LOG_FORMAT": "json",
        "IDENTITY_WORKER_OBSERVABILITY__LOG_LEVEL": "WARNING",
    }
    if code is not None:
        env = defined_in(code, env)
        env["PYTHONPATH"] = str(code)
    procs = []
    for i in range(count):
        command = [sys.executable, "-m", "worker", "run"]
        if profile is not None:
            # absolute: the process runs in ``code``
            command = [sys.executable, "-m", "cProfile", "-o", str(profile.resolve())]
            command += ["-m", "worker", "run"]
        log = open(logs.resolve() / f"{settings.kafka.group_id}-{i}.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=code or Path.cwd()
            )
        )
    return procs


def defined_in(code: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` less the ``IDENTITY_WORKER_*`` settings the worker under ``code`` does not define
    (settings added since: an older worker refuses them, and runs with its own behaviour)."""
    config = (code / "worker" / "config.py").read_text()
    return {
        name: value
        for name, value in env.items()
        if not name.startswith("IDENTITY_WORKER_")
        or f"    {name.split('__', 1)[-1].lower()}:" in config
    }


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` of process ``pid`` (waits included) into ``out``, until SIGINT."""
    py_spy = Path(sys.executable).with_name("py-spy")
    command = [str(py_spy), "record", "--pid", str(pid), "--idle", "--nonblocking"]
    command += ["--rate", "200", "--format", "raw", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_workers(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Run:
    name: str
    events: int
    rate: float | None
    gate: Gate | None = None
    server: dict[str, Any] | None = None
    memory: MemoryBreakdown | None = None
    processes: int = 1
    cpu_us: float | None = None
    """CPU time of the worker processes per event"""
    redis_cpu_us: float | None = None
    """CPU time of the Redis server per event"""
    broker_cpu_us: float | None = None
    """CPU time of the local broker per event (None: not on this machine)"""
    code: Path | None = None
    """the directory whose ``worker`` package the run ran (None: this repository's)"""
    loaded: int | None = None
    """shared objects of the build in ``code`` the (first) worker process had mapped"""
    rounds: list[float | None] = field(default_factory=list)
    """each round's rate, when the run is the median of several (``--rounds``)"""
    thread: ThreadTime | None = None
    """how the worker processes' main threads spent the drain"""


def variant_name(title: str, build: Build | None, rules: str | None) -> str:
    """A drain's row: its format, its build, where its rules ran (``--rules``)."""
    name = f"worker, {title}" + (f", {build.label}" if build else "")
    return name + (f", rules in {rules}" if rules else "")


def run_worker(
    args: argparse.Namespace,
    client: redis.Redis,
    name: str,
    messages: Messages,
    want: Expected,
    fmt: str,
    processes: int = 1,
    measure_memory: bool = False,
    code: Path | None = None,
    sampled: bool = False,
    sections: dict[str, Any] | None = None,
) -> Run:
    """One drain; ``sampled``: under ``py-spy`` (``args.py_spy``), or ``cProfile``
    (``args.profile``), a run of its own so the reported rates are not slowed. ``sections``:
    more settings of the worker (e.g. ``delivery``)."""
    n = len(messages.values)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = bench_settings(args, prefix, formats={"output": fmt}, **(sections or {}))
    progress = Progress(settings, settings.kafka.group_id, PARTITIONS)
    progress.services["redis"] = lambda: redis_cpu_seconds(client)
    broker = local_broker_pid(settings.kafka.bootstrap_servers)
    if broker is not None:
        progress.services["broker"] = lambda: cpu_seconds(broker)
    profile = args.profile if sampled else None
    py_spy = args.py_spy if sampled else None
    with ServerTime(client, prefix) as server:
        if processes == 1:
            preload(settings, messages)
            procs = start_workers(settings, 1, args.logs, profile, code)
            if py_spy is not None:
                sampler = start_py_spy(procs[0].pid, py_spy)
        else:
            procs = start_workers(settings, processes, args.logs, code=code)
            wait_for(
                lambda: group_members(settings, settings.kafka.group_id) == processes,
                90,
                f"{processes} workers to join the group",
                period=0.5,
            )
            preload(settings, messages)
        try:
            progress.pids = [proc.pid for proc in procs]
            rate = progress.watch(n, timeout=max(120.0, n / 500))
            loaded = loaded_build(procs[0].pid, code)
        finally:
            if py_spy is not None:
                sampler.send_signal(signal.SIGINT)
                sampler.wait(30)
            stop_workers(procs)
    result = gate(settings, client, want, n, fmt)
    memory = memory_breakdown(client, prefix, TENANT) if measure_memory else None
    delete_prefix(client, prefix)
    return Run(
        name,
        n,
        rate if result.ok else None,
        result,
        server.summary(n),
        memory,
        processes,
        progress.cpu_us_per_event(),
        progress.service_us_per_event("redis"),
        progress.service_us_per_event("broker"),
        code,
        loaded,
        thread=progress.thread_time(),
    )


def loaded_build(pid: int, code: Path | None) -> int | None:
    """How many shared objects of the build in ``code`` the worker process ``pid`` mapped
    (None: no build); a ``RuntimeError`` when none (it ran the ``.py`` files)."""
    if code is None or not compiled_modules(code):
        return None
    loaded = mapped_libraries(pid, code)
    if not loaded:
        raise RuntimeError(f"the worker run from {code} loaded none of its compiled modules")
    return loaded


def median_run(runs: Sequence[Run]) -> Run:
    """Rounds of one variant as one row: the median rate (none when a gate failed) and the
    median CPU per event; the first round's SLOWLOG and memory."""
    if len(runs) == 1:
        return runs[0]
    failed = next((r for r in runs if r.gate is None or not r.gate.ok), None)

    def median(values: Sequence[float | None]) -> float | None:
        known = [v for v in values if v]
        return statistics.median(known) if known else None

    return replace(
        runs[0],
        rate=None if failed else median([r.rate for r in runs]),
        gate=failed.gate if failed else runs[0].gate,
        cpu_us=median([r.cpu_us for r in runs]),
        redis_cpu_us=median([r.redis_cpu_us for r in runs]),
        broker_cpu_us=median([r.broker_cpu_us for r in runs]),
        rounds=[r.rate for r in runs],
        thread=median_thread([r.thread for r in runs]),
    )


def median_thread(times: Sequence[ThreadTime | None]) -> ThreadTime | None:
    """The median of each share over the runs that have one."""
    known = [t for t in times if t is not None]
    if not known:
        return None
    return ThreadTime(
        statistics.median(t.running for t in known), statistics.median(t.waiting for t in known)
    )


def run_passthrough(
    args: argparse.Namespace,
    messages: Messages,
    loads: Callable[[bytes], Any],
    dumps: Callable[[Any], bytes],
    overlap: bool = False,
    cpu: dict[str, float] | None = None,
) -> float:
    """The pass-through consumer's rate. ``overlap``: instead of a blocking flush and a
    synchronous commit per batch, produce and go on; commit a batch's offsets (asynchronously)
    once Kafka acknowledged all of its outputs, while the next batch is being processed: offsets
    still never pass unwritten output (the produce-then-commit shape). ``cpu``: filled with
    the CPU µs per event of this process (``process``) and of the local broker (``broker``)
    over the drain."""
    settings = bench_settings(args, f"bench-{uuid.uuid4().hex[:8]}")
    preload(settings, messages)
    n = len(messages.values)
    broker = local_broker_pid(settings.kafka.bootstrap_servers)
    broker_before = cpu_seconds(broker) if broker is not None else None
    process_before = time.process_time()
    consumer = Consumer(
        {
            **settings.kafka.common(),
            "group.id": settings.kafka.group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer(
        {
            **settings.kafka.common(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
        }
    )
    consumer.subscribe([settings.topics.track])
    topic = settings.topics.enriched
    done = 0
    marks: list[tuple[float, int]] = []
    sched: list[tuple[int, int] | None] = []  # this thread's ``scheduled`` at each mark
    acked = [0]

    def on_delivery(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            raise RuntimeError(f"delivery failed: {error}")
        acked[0] += 1

    pending: list[tuple[int, list[TopicPartition], int]] = []  # (outputs needed, offsets, done)

    def commit_acknowledged(block: bool) -> None:
        while pending:
            needed, offsets, count = pending[0]
            if acked[0] < needed:
                if not block:
                    return
                producer.poll(0.001)
                continue
            if block:
                consumer.commit(offsets=offsets, asynchronous=False)
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
            marks.append((time.perf_counter(), count))
            sched.append(scheduled())
            pending.pop(0)

    produced = 0
    while done < n:
        batch = consumer.consume(num_messages=1000, timeout=1.0)
        ends: dict[int, int] = {}
        for message in batch:
            value = message.value()
            if message.error() is not None or value is None:
                continue
            obj = loads(value)
            obj["person_id"] = "00000000-0000-0000-0000-000000000000"
            obj["is_identified"] = False
            obj["person_properties"] = {}
            if overlap:
                producer.produce(topic, message.key(), dumps(obj), on_delivery=on_delivery)
                ends[message.partition() or 0] = (message.offset() or 0) + 1
            else:
                producer.produce(topic, key=message.key(), value=dumps(obj))
            produced += 1
            done += 1
        if not batch:
            continue
        if overlap:
            offsets = [
                TopicPartition(topic=settings.topics.track, partition=p, offset=o)
                for p, o in ends.items()
            ]
            pending.append((produced, offsets, done))
            producer.poll(0)
            commit_acknowledged(block=False)
        else:
            producer.flush(30)
            consumer.commit(asynchronous=False)
            marks.append((time.perf_counter(), done))
            sched.append(scheduled())
    commit_acknowledged(block=True)
    if cpu is not None:
        cpu["process"] = (time.process_time() - process_before) / n * 1e6
        broker_after = cpu_seconds(broker) if broker is not None else None
        if broker_before is not None and broker_after is not None:
            cpu["broker"] = (broker_after - broker_before) / n * 1e6
        if marks:
            thread = ThreadTime.between(sched[0], sched[-1], marks[-1][0] - marks[0][0])
            if thread is not None:
                cpu["running"], cpu["waiting"] = thread.running, thread.waiting
    consumer.close()
    return rate_of(marks, n)


def run_naive(args: argparse.Namespace, client: redis.Redis, messages: Messages, n: int) -> Run:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = bench_settings(args, prefix)
    preload(settings, messages, limit=n)
    store = build_store(settings, client)
    encoder = OutputEncoder("json")
    options = DecodeOptions()
    consumer = Consumer(
        {
            **settings.kafka.common(),
            "group.id": settings.kafka.group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({**settings.kafka.common(), "enable.idempotence": True})
    consumer.subscribe([settings.topics.track])
    done = 0
    marks: list[tuple[float, int]] = []
    while done < n:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        event = decode_message(message.value(), message.key(), None, "x", options)
        (resolution,) = store.resolve_batch(
            TENANT, [to_identity_event(event, event.timestamp_ms)], 0
        )
        record = encoder.enriched(event, resolution)
        producer.produce(settings.topics.enriched, key=record.key, value=record.value)
        producer.flush(10)
        consumer.commit(message=message, asynchronous=False)
        done += 1
        marks.append((time.perf_counter(), done))
    consumer.close()
    want = expected(messages, n)
    result = gate(settings, client, want, n, "json")
    delete_prefix(client, prefix)
    return Run("naive (per event)", n, rate_of(marks, n) if result.ok else None, result)


# -- report ---------------------------------------------------------------------------------------


def thread_lines(runs: Sequence[Run], passthrough_cpu: dict[str, dict[str, float]]) -> list[str]:
    """Each drain's main thread: running, runnable waiting for a CPU, blocked (``ThreadTime``)."""
    rows = [
        f"| pass-through ({name}) | {ThreadTime(m['running'], m['waiting']).row()} |"
        for name, m in passthrough_cpu.items()
        if "running" in m and "waiting" in m
    ]
    rows += [f"| {run.name} | {run.thread.row()} |" for run in runs if run.thread is not None]
    if not rows:
        return []
    return [
        "- the main thread of each drain's process (Linux schedstat; a worker's thread is its "
        "bound), shares of the drain's wall time:",
        "",
        "| variant | running | runnable, waiting for a CPU | blocked (Redis, the broker, a poll) |",
        "|---|---:|---:|---:|",
        *rows,
        "",
    ]


def _rate(run: Run) -> str:
    return "**no speed: gate failed**" if run.rate is None else f"{run.rate:,.0f}"


def report(
    runs: list[Run],
    passthrough: dict[str, float],
    scaling: list[Run],
    args: argparse.Namespace,
    builds: Sequence[Build] = (),
    passthrough_cpu: dict[str, dict[str, float]] | None = None,
    ceilings: Sequence[float] = (),
) -> list[str]:
    """``passthrough_cpu``: per pass-through, the CPU µs per event of its process and of the
    broker, and its thread's shares (``running``, ``waiting``: ``ThreadTime``), medians of its
    runs; ``ceilings``: the json pass-through's rate of each round."""
    out = ["### Drain, side by side", ""]
    out += [
        "| variant | events | events/s | worker CPU µs per event | Redis CPU µs per event "
        "| broker CPU µs per event | gate |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, rate in passthrough.items():
        measured = (passthrough_cpu or {}).get(name, {})
        process, broker = (
            f"{measured[part]:,.0f}" if part in measured else "-" for part in ("process", "broker")
        )
        out.append(
            f"| pass-through ({name}) | {args.events:,} | {rate:,.0f} | {process} | - "
            f"| {broker} | - |"
        )
    for run in runs:
        gate_text = "ok" if run.gate and run.gate.ok else f"FAILED: {run.gate and run.gate.detail}"
        cpus = " | ".join(
            f"{value:,.0f}" if value else "-"
            for value in (run.cpu_us, run.redis_cpu_us, run.broker_cpu_us)
        )
        out.append(f"| {run.name} | {run.events:,} | {_rate(run)} | {cpus} | {gate_text} |")
    out.append("")
    by_name = {run.name: run for run in runs}
    worker_json = by_name.get("worker, JSON")
    naive = by_name.get("naive (per event)")
    if worker_json and worker_json.rate:
        for name, rate in passthrough.items():
            out.append(f"- worker JSON / pass-through ({name}): **{worker_json.rate / rate:.2f}**")
        avro = by_name.get("worker, Avro")
        if avro and avro.rate:
            for name, rate in passthrough.items():
                out.append(f"- worker Avro / pass-through ({name}): {avro.rate / rate:.2f}")
        if naive and naive.rate:
            out.append(f"- worker JSON / naive: **{worker_json.rate / naive.rate:.0f}x**")
        out += build_ratios(by_name, passthrough, builds)
        out += rules_ratios(runs, passthrough)
        parts = (worker_json.cpu_us, worker_json.redis_cpu_us, worker_json.broker_cpu_us)
        if all(parts):
            total = sum(p or 0.0 for p in parts)
            cores = os.cpu_count() or 1
            out.append(
                f"- CPU per event of the worker, Redis and the broker together: {total:,.0f} µs; "
                f"on this machine's {cores} cores that bounds the drain at "
                f"{cores * 1e6 / total:,.0f} events/s"
            )
    out += thread_lines(runs, passthrough_cpu or {})
    out += loaded_lines([*runs, *scaling])
    rounds = [run for run in runs if len(run.rounds) > 1]
    if rounds:
        out.append("- each round's events/s, in run order (the table has their median):")
        for run in rounds:
            each = " / ".join("gate failed" if r is None else f"{r:,.0f}" for r in run.rounds)
            out.append(f"  - {run.name}: {each}")
        if len(ceilings) > 1:  # the machine drifts between rounds: each round beside its own
            out.append(
                "- each round's rate over that round's pass-through (json: "
                + " / ".join(f"{c:,.0f}" for c in ceilings)
                + "), and their median:"
            )
            for run in rounds:
                ratios = [
                    r / c for r, c in zip(run.rounds, ceilings, strict=False) if r is not None
                ]
                each = " / ".join(f"{r:.2f}" for r in ratios)
                middle = f"**{statistics.median(ratios):.2f}**" if ratios else "-"
                out.append(f"  - {run.name}: {each}; median {middle}")
    out.append("")
    server_runs = [r for r in [*runs, *scaling] if r.server]
    if server_runs:
        out += [
            "### Redis server time of the worker's commands (SLOWLOG, its named connections)",
            "",
            "| run | script calls | µs per event (scripts) | µs per event (all) | "
            "script p50 µs | script p99 µs | script max µs | commandstats script µs/call |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for run in server_runs:
            s = run.server or {}
            out.append(
                f"| {run.name} | {s['calls']:,} {s.get('script_command', '')} | "
                f"{s['script_us_per_event']:.1f} | "
                f"{s['all_us_per_event']:.1f} | {s['script_p50_us']:,.0f} | "
                f"{s['script_p99_us']:,.0f} | {s['script_max_us']:,} | "
                f"{s['commandstats_usec_per_call']:,.0f} |"
            )
        out += [
            "",
            "(commandstats counts every client of the server: it matches only on a quiet server"
            + ("; with several rounds, the first round's" if rounds else "")
            + ")",
            "",
        ]
    for run in runs:
        if run.memory:
            out += [
                f"### Redis memory of the {run.name} run's population "
                f"({run.memory.ids:,} distinct ids, {run.memory.persons:,} persons)",
                "",
                *run.memory.rows(),
                "",
            ]
    if scaling:
        out += [
            f"### Scaling: worker processes in one group, {PARTITIONS} partitions, JSON, "
            + code_text(scaling[0].code, builds),
            "",
            "| processes | events | combined events/s | vs 1 process | worker CPU µs per event "
            "| gate |",
            "|---:|---:|---:|---:|---:|---|",
        ]
        base = scaling[0].rate
        for run in scaling:
            ratio = f"{run.rate / base:.2f}" if run.rate and base else "-"
            gate_text = "ok" if run.gate and run.gate.ok else "FAILED"
            if run.gate and run.gate.duplicates:
                gate_text += f" ({run.gate.duplicates} redelivered)"
            cpu = f"{run.cpu_us:,.0f}" if run.cpu_us else "-"
            out.append(
                f"| {run.processes} | {run.events:,} | {_rate(run)} | {ratio} | {cpu} "
                f"| {gate_text} |"
            )
        out.append("")
    for run in [*runs, *scaling]:
        if run.gate and not run.gate.ok:
            out.append(f"GATE FAILED ({run.name}): {run.gate.detail}")
    return out


def code_text(code: Path | None, builds: Sequence[Build]) -> str:
    """Which worker ``code`` is, in words."""
    if code is None:
        return "interpreted worker (this repository)"
    label = next((b.label for b in builds if b.path == code), None)
    return f"build `{label}` ({code})" if label else f"worker of {code}"


def build_ratios(
    by_name: dict[str, Run], passthrough: dict[str, float], builds: Sequence[Build]
) -> list[str]:
    """Each build's drains against the interpreted worker's and the pass-through (json)."""
    out = []
    for build in builds:
        for title in ("JSON", "Avro"):
            base, run = (
                by_name.get(f"worker, {title}"),
                by_name.get(f"worker, {title}, {build.label}"),
            )
            if run is None or not run.rate:
                continue
            line = f"- worker {title}, {build.label} /"
            if base and base.rate:
                line += f" worker {title}: **{run.rate / base.rate:.2f}**"
                if base.cpu_us and run.cpu_us:
                    line += (
                        f" (worker CPU per event {run.cpu_us:,.0f} µs against {base.cpu_us:,.0f}:"
                        f" {run.cpu_us / base.cpu_us:.2f})"
                    )
                line += ";"
            if "json" in passthrough:
                line += f" pass-through (json): {run.rate / passthrough['json']:.2f}"
            out.append(line)
    return out


def rules_ratios(runs: Sequence[Run], passthrough: dict[str, float]) -> list[str]:
    """Each drain with ``--rules`` against the same build's drain with the setting's default:
    rate, worker CPU and Redis CPU per event."""
    by_name = {run.name: run for run in runs}
    out = []
    for run in runs:
        base_name, sep, mode = run.name.partition(", rules in ")
        base = by_name.get(base_name)
        if not sep or base is None or not run.rate or not base.rate:
            continue
        line = f"- {run.name} / {base_name}: **{run.rate / base.rate:.2f}**"
        for what, mine, theirs in (
            ("worker CPU", run.cpu_us, base.cpu_us),
            ("Redis CPU", run.redis_cpu_us, base.redis_cpu_us),
        ):
            if mine and theirs:
                line += f"; {what} per event {mine:,.1f} µs against {theirs:,.1f}"
        if "json" in passthrough:
            line += f"; pass-through (json): {run.rate / passthrough['json']:.2f}"
        out.append(line + f" (rules in {mode})")
    return out


def loaded_lines(runs: Sequence[Run]) -> list[str]:
    """Proof that the runs of a build ran its compiled code."""
    loaded = [run for run in runs if run.loaded is not None]
    if not loaded:
        return []
    each = "; ".join(f"{run.name}: {run.loaded} of {run.code}" for run in loaded)
    return [f"- compiled code mapped in the worker process (.so files, /proc/PID/maps): {each}"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379/0")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--naive-events", type=int, default=2_000)
    parser.add_argument("--scale", default="1,2,3", help="worker process counts ('' to skip)")
    parser.add_argument("--skip", action="append", default=[], choices=["avro", "naive"])
    parser.add_argument("--quick", action="store_true", help="10,000 events, 500 naive")
    parser.add_argument("--out", type=Path, default=Path(".local/bench/drain.json"))
    parser.add_argument("--logs", type=Path, default=Path(".local/bench/logs"))
    parser.add_argument(
        "--profile", type=Path, help="cProfile the JSON run's worker into this file"
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="sample the JSON run's worker with py-spy into this file (needs py-spy)",
    )
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="REF",
        help="also drain the JSON backlog with the worker of git revision REF (before/after)",
    )
    add_build_option(
        parser, "also drain the JSON and Avro backlogs (given once, the scaling runs too)"
    )
    parser.add_argument(
        "--rules",
        action="append",
        default=[],
        choices=[mode for mode in ("script", "worker") if mode != DEFAULT_RULES],
        help="also drain the JSON and Avro backlogs with redis.rules set so (with each build, "
        "or interpreted when no --build), beside the setting's default (the other rows): "
        "rows '..., rules in MODE'",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="drains of each worker variant (JSON, Avro, builds), alternating which goes "
        "first; the table has their median",
    )
    args = parser.parse_args(argv)
    builds: list[Build] = args.build
    if len({b.label for b in builds}) != len(builds):
        parser.error("--build: each build needs a label of its own")
    if args.quick:
        args.events, args.naive_events = 10_000, 500
    args.logs.mkdir(parents=True, exist_ok=True)
    if args.py_spy is not None and not Path(sys.executable).with_name("py-spy").exists():
        print("py-spy is not installed (pip install py-spy): no profile\n")
        args.py_spy = None
    if args.py_spy is not None:
        args.py_spy.unlink(missing_ok=True)
    for path in (args.py_spy, args.profile):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    baselines = [baseline_tree(ref, Path(".local/bench")) for ref in args.baseline]
    at = {code: f"at {code.name.removeprefix('baseline-')}" for code in baselines}
    sole = builds[0] if len(builds) == 1 else None  # the scaling and sampled runs' build
    client = redis.Redis.from_url(args.redis_url)
    print(f"## Worker drain benchmark ({args.events:,} events)\n")
    header = run_header(client, worker_lines(builds, [(at[c], c) for c in baselines]))
    print("\n".join(header[:-1]))
    if sole is not None and args.scale:
        print(f"- the scaling runs: build `{sole.label}` ({sole.path})")
    if sole is not None and (args.py_spy or args.profile):
        print(
            "- the sampled run: the interpreted worker (a profiler sees no frames of compiled code)"
        )
    print()

    events = backlog(args.events, users=max(args.events // 5, 10), seed=1)
    json_messages = as_messages(events, "json")
    t0 = time.perf_counter()
    want = expected(json_messages, args.events)
    print(f"reference model: {args.events:,} events in {time.perf_counter() - t0:.1f}s", flush=True)

    passthrough_cpu: dict[str, list[dict[str, float]]] = {}  # each run's CPU per event

    def measured_passthrough(
        name: str, loads: Callable[[bytes], Any], dumps: Callable[[Any], bytes], overlap: bool
    ) -> float:
        cpu: dict[str, float] = {}
        rate = run_passthrough(args, json_messages, loads, dumps, overlap, cpu)
        passthrough_cpu.setdefault(name, []).append(cpu)
        return rate

    def json_passthrough() -> float:
        return measured_passthrough("json", json.loads, lambda o: json.dumps(o).encode(), False)

    # a broker freshly started runs its first backlogs slower (its JIT warming up): one
    # untimed pass-through first, then the json pass-through again in every round below
    warm = json_passthrough()
    passthrough_cpu.clear()
    print(f"pass-through warm-up (not counted): {warm:,.0f} events/s", flush=True)
    ceilings = [json_passthrough()]
    passthrough = {
        "json": ceilings[0],
        "orjson": measured_passthrough("orjson", orjson.loads, orjson.dumps, False),
        "orjson, commit after acks": measured_passthrough(
            "orjson, commit after acks", orjson.loads, orjson.dumps, True
        ),
    }
    print(f"pass-through: {passthrough}", flush=True)
    formats = [("JSON", "json", json_messages)]
    if "avro" not in args.skip:
        formats.append(("Avro", "avro", as_messages(events, "avro")))
    variants: list[tuple[Build | None, str | None]] = [(None, None), *((b, None) for b in builds)]
    hosts: list[Build | None] = [*builds] or [None]
    variants += [(b, mode) for mode in args.rules for b in hosts]
    drains: dict[str, list[Run]] = {}
    for round_ in range(args.rounds):
        if round_ > 0:
            ceilings.append(json_passthrough())
            print(f"round {round_ + 1}, pass-through (json): {ceilings[-1]}", flush=True)
        for turn, (title, fmt, messages) in enumerate(formats):
            # the interpreted worker and the builds take turns to go first (drift of the machine)
            order = variants if (round_ + turn) % 2 == 0 else variants[::-1]
            for build, rules in order:
                name = variant_name(title, build, rules)
                run = run_worker(
                    args,
                    client,
                    name,
                    messages,
                    want,
                    fmt,
                    measure_memory=fmt == "json" and build is None and name not in drains,
                    code=build.path if build else None,
                    sections={"redis": {"rules": rules or DEFAULT_RULES}},
                )
                drains.setdefault(name, []).append(run)
                lead = f"round {round_ + 1}, " if args.rounds > 1 else ""
                print(f"{lead}{name}: {run.rate}", flush=True)
    passthrough["json"] = statistics.median(ceilings)
    runs = [median_run(drains[f"worker, {title}"]) for title, _, _ in formats[:1]]
    runs += [median_run(drains[f"worker, JSON, {b.label}"]) for b in builds]
    runs += [median_run(drains[variant_name("JSON", b, r)]) for b, r in variants if r]
    for code in baselines:
        name = f"worker, JSON, {at[code]}"
        runs.append(run_worker(args, client, name, json_messages, want, "json", code=code))
        print(f"{name}: {runs[-1].rate}", flush=True)
    for title, _, _ in formats[1:]:
        runs.append(median_run(drains[f"worker, {title}"]))
        runs += [median_run(drains[f"worker, {title}, {b.label}"]) for b in builds]
        runs += [median_run(drains[variant_name(title, b, r)]) for b, r in variants if r]
    if "naive" not in args.skip:
        runs.append(run_naive(args, client, json_messages, args.naive_events))
        print(f"naive: {runs[-1].rate}", flush=True)
    sole_code = sole.path if sole else None
    if args.py_spy or args.profile:
        name = "worker, JSON, sampled by " + ("py-spy" if args.py_spy else "cProfile")
        runs.append(run_worker(args, client, name, json_messages, want, "json", sampled=True))
        print(f"{name}: {runs[-1].rate}", flush=True)
    scaling = []
    for count in (int(c) for c in args.scale.split(",") if c):
        scaling.append(
            run_worker(
                args,
                client,
                f"{count} processes" + (f", {sole.label}" if sole else ""),
                json_messages,
                want,
                "json",
                processes=count,
                code=sole_code,
            )
        )
        print(f"{scaling[-1].name}: {scaling[-1].rate}", flush=True)

    print()
    ceiling_cpu = {
        name: {
            part: statistics.median(m[part] for m in measured if part in m)
            for part in ("process", "broker", "running", "waiting")
            if any(part in m for m in measured)
        }
        for name, measured in passthrough_cpu.items()
    }
    print("\n".join(report(runs, passthrough, scaling, args, builds, ceiling_cpu, ceilings)))
    if args.py_spy is not None and args.py_spy.exists():
        print("### Where the sampled JSON run's worker spent its time\n")
        print("\n".join(profile_report(args.py_spy)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    worker_json = runs[0]
    args.out.write_text(
        json.dumps(
            {
                "events": args.events,
                "drain_rate": worker_json.rate,
                "passthrough": passthrough,
                "runs": {r.name: r.rate for r in [*runs, *scaling]},
                "builds": {b.label: str(b.path) for b in builds},
            },
            indent=2,
        )
    )
    client.close()
    failed = [r for r in [*runs, *scaling] if r.gate is None or not r.gate.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
