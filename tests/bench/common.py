"""Shared parts of the benchmark scripts: the run header, Redis server-time and memory probes.

- ``run_header``: the command, the date (UTC) and the machine, printed above every table, and
  which code each worker row runs (``worker_lines``);
- ``Build``: a directory holding a compiled build of the ``worker`` package (``make compiled``:
  mypyc extension modules beside the ``.py`` files), run with ``PYTHONPATH=<directory>``
  (``--build``), and ``mapped_libraries``: its shared objects a worker process loaded;
- ``ServerTime``: Redis server time of the commands sent by clients of one name (SLOWLOG with
  ``slowlog-log-slower-than 0``, read while the run goes so no entry is lost), beside the
  ``INFO commandstats`` delta of the script commands (``evalsha`` and ``fcall``: the store calls
  its script either way, ``worker/store/script_call.py``; every client of the server);
- ``memory_breakdown``: bytes of Redis per distinct id of one tenant, split into the union-find
  (the ids hash without the person records), the person records and the members sets.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

import worker
from worker import build as worker_build
from worker.config import Settings
from worker.store.keys import TenantKeys


def run_header(client: redis.Redis | None = None, workers: Sequence[str] = ()) -> list[str]:
    """The command, the date and the machine of this run, as Markdown lines; ``workers``: lines
    saying which code the worker rows run (``worker_lines``)."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    redis_version = ""
    if client is not None:
        redis_version = f", Redis {client.info('server')['redis_version']}"
    command = " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), *sys.argv])
    return [
        f"- command: `{command}`",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} CPUs ({cpu}){memory}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}{redis_version}{load}",
        *workers,
        "",
    ]


@dataclass(frozen=True)
class Build:
    """A compiled build of the ``worker`` package: ``path`` holds a complete ``worker`` package
    with extension modules (``worker/**/*.cpython-*.so``) beside the ``.py`` files, run with
    ``PYTHONPATH=<path>``; its rows are named after ``label``."""

    label: str
    path: Path
    modules: int
    """its compiled modules"""

    def __str__(self) -> str:
        return (
            f"the compiled build in {self.path} ({self.modules} compiled modules, run with "
            f"PYTHONPATH={self.path})"
        )


def compiled_modules(path: Path) -> tuple[str, ...]:
    """The compiled modules of the ``worker`` package under ``path`` (``worker.build``)."""
    return worker_build.compiled_modules(path / "worker")


def add_build_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--build LABEL=DIR`` (repeatable): ``what`` the compiled build in ``DIR`` does."""
    parser.add_argument(
        "--build",
        action="append",
        default=[],
        type=parse_build,
        metavar="LABEL=DIR",
        help=f"{what} with the compiled worker build in DIR (make compiled: .local/compiled), "
        "labelled LABEL (repeatable)",
    )


def parse_build(value: str, default_label: str = "compiled") -> Build:
    """``LABEL=DIR`` (or ``DIR``, labelled ``default_label``) as a ``Build``; an
    ``argparse.ArgumentTypeError`` when ``DIR`` holds no compiled build (as ``type=`` of an
    option, argparse prints it and exits)."""
    label, sep, where = value.partition("=")
    if not sep:
        label, where = default_label, value
    if not label or not where:
        raise argparse.ArgumentTypeError(f"{value!r}: expected LABEL=DIR")
    path = Path(where).resolve()
    if not (path / "worker" / "__init__.py").exists():
        raise argparse.ArgumentTypeError(f"{where}: no worker package there ({path}/worker)")
    modules = compiled_modules(path)
    if not modules:
        raise argparse.ArgumentTypeError(
            f"{where} holds no compiled build: no extension module under {path}/worker "
            "(make compiled builds one in .local/compiled)"
        )
    return Build(label, path, len(modules))


def mapped_libraries(pid: int, path: Path) -> int:
    """How many shared objects under ``path`` process ``pid`` has mapped (its
    ``/proc/<pid>/maps``): proof that a worker run from a build runs its compiled code. Not a
    count of compiled modules: mypyc's modules import one another through its shared library
    (at the build's top), without mapping their own ``.so`` files."""
    root = f"{path}/"
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            files = {line.split(maxsplit=5)[-1].strip() for line in maps if root in line}
    except OSError:
        return 0
    return sum(1 for name in files if name.startswith(root) and name.endswith(".so"))


def worker_lines(
    builds: Sequence[Build] = (), others: Sequence[tuple[str, Path]] = ()
) -> list[str]:
    """Header lines saying which code each worker row runs: the rows without a label this
    repository's interpreted ``worker`` package, each build's rows its directory; ``others``:
    more labelled trees (a ``--baseline`` revision, interpreted)."""
    lines = [f"- worker rows without a build label: {interpreted()}"]
    for build in builds:
        lines.append(f"- worker rows labelled `{build.label}`: {build}")
    for label, path in others:
        lines.append(f"- worker rows labelled `{label}`: interpreted, {path / 'worker'}")
    return lines


def interpreted() -> str:
    """This repository's ``worker`` package (the one this process imports), in words."""
    package = Path(worker.__file__).resolve().parent
    commit = subprocess.run(
        ["git", "-C", str(package), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"interpreted, this repository's {package}" + (f" (commit {commit})" if commit else "")


def named_url(url: str, client_name: str) -> str:
    """``url`` with ``client_name`` set: the worker's Redis connections then carry that name,
    which SLOWLOG records with every entry."""
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=f"{query}client_name={client_name}"))


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


SCRIPT_COMMANDS = ("EVALSHA", "FCALL")
"""The commands that call the store's resolve script."""


@dataclass
class ServerTime:
    """Collects, while active, the SLOWLOG entries of clients named ``client_name``.

    The server's SLOWLOG settings are set to log every command and restored on exit; a
    background thread reads the log every ``period`` seconds and keeps the new entries, so a
    long run does not lose entries to the log's length.
    """

    client: redis.Redis
    client_name: str
    period: float = 0.2
    durations: dict[str, list[int]] = field(default_factory=dict)

    def __enter__(self) -> ServerTime:
        config = self.client.config_get("slowlog-*")
        self._saved = {k: config[k] for k in ("slowlog-log-slower-than", "slowlog-max-len")}
        self.client.config_set("slowlog-max-len", 200_000)
        self.client.config_set("slowlog-log-slower-than", 0)
        self._last_id = -1
        head = self.client.slowlog_get(1)
        if head:
            self._last_id = int(head[0]["id"])
        self._stats_before = self._script_stats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="slowlog", daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.period):
            self._read()
        self._read()

    def _read(self) -> None:
        entries = self.client.slowlog_get(-1)
        newest = self._last_id
        for entry in entries:
            entry_id = int(entry["id"])
            if entry_id <= self._last_id:
                continue
            newest = max(newest, entry_id)
            if _text(entry.get("client_name", "")) != self.client_name:
                continue
            command = _text(entry.get("command", "")).split(" ", 1)[0].upper()
            self.durations.setdefault(command, []).append(int(entry["duration"]))
        self._last_id = newest

    def _script_stats(self) -> tuple[int, int]:
        info = self.client.info("commandstats")
        calls = usec = 0
        for command in SCRIPT_COMMANDS:
            stats = info.get(f"cmdstat_{command.lower()}", {})
            calls += int(stats.get("calls", 0))
            usec += int(stats.get("usec", 0))
        return calls, usec

    def scripts(self) -> list[int]:
        """The durations of the script calls (``EVALSHA`` and ``FCALL``), in µs, sorted."""
        return sorted(d for command in SCRIPT_COMMANDS for d in self.durations.get(command, []))

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        calls, usec = self._script_stats()
        self.commandstats_calls = calls - self._stats_before[0]
        self.commandstats_usec = usec - self._stats_before[1]
        for key, value in self._saved.items():
            self.client.config_set(key, str(value))

    def summary(self, events: int) -> dict[str, Any]:
        """Server µs per event and per script call for ``events`` resolved events."""
        scripts = self.scripts()
        total = sum(sum(v) for v in self.durations.values())
        return {
            "calls": len(scripts),
            "script_command": "/".join(c for c in SCRIPT_COMMANDS if self.durations.get(c)) or "-",
            "script_us_per_event": sum(scripts) / events if events else 0.0,
            "all_us_per_event": total / events if events else 0.0,
            "script_p50_us": statistics.median(scripts) if scripts else 0,
            "script_p99_us": percentile(scripts, 0.99) if scripts else 0,
            "script_max_us": scripts[-1] if scripts else 0,
            "commandstats_usec_per_call": (
                self.commandstats_usec / self.commandstats_calls if self.commandstats_calls else 0
            ),
        }


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class MemoryBreakdown:
    ids: int
    persons: int
    members_sets: int
    ids_hash_bytes: int
    record_bytes: int
    """bytes of the person records' values, inside the ids hash"""
    members_bytes: int
    """MEMORY USAGE of every members key (the ids of a tree too big to keep them in its
    record)"""

    def rows(self) -> list[str]:
        uf = self.ids_hash_bytes - self.record_bytes
        total = self.ids_hash_bytes + self.members_bytes
        return [
            "| part | bytes | per distinct id |",
            "|---|---:|---:|",
            f"| union-find: the ids hash without the record values | {uf:,} | "
            f"{uf / self.ids:,.0f} |",
            f"| person records: values of the {self.persons:,} roots | "
            f"{self.record_bytes:,} | {self.record_bytes / self.ids:,.0f} |",
            f"| members keys ({self.members_sets:,}, MEMORY USAGE) | {self.members_bytes:,} | "
            f"{self.members_bytes / self.ids:,.0f} |",
            f"| **total of the tenant's keys** | **{total:,}** | **{total / self.ids:,.0f}** |",
        ]


def memory_breakdown(client: redis.Redis, prefix: str, tenant: str) -> MemoryBreakdown:
    """Bytes of one tenant's identity keys. The ids hash holds both the union-find (parent
    pointers) and, at each root, the person record: the records' share is the length of their
    values, the rest of the hash (fields, parent values, the hash table) is the union-find's."""
    keys = TenantKeys(prefix, tenant)
    ids = persons = record_bytes = 0
    for _, value in client.hscan_iter(keys.ids, count=5000):
        ids += 1
        if value[:1] != b"P":  # a person record (a non-root holds "P" .. parent)
            persons += 1
            record_bytes += len(value)
    ids_hash = int(client.memory_usage(keys.ids, samples=0) or 0)
    sets = list(client.scan_iter(match=keys.members_pattern(), count=5000))
    members = 0
    for start in range(0, len(sets), 1000):
        pipe = client.pipeline(transaction=False)
        for key in sets[start : start + 1000]:
            pipe.memory_usage(key)
        members += sum(int(v or 0) for v in pipe.execute())
    return MemoryBreakdown(ids, persons, len(sets), ids_hash, record_bytes, members)


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)


def wait_for(condition: Any, timeout: float, what: str, period: float = 0.05) -> None:
    """Poll ``condition()`` until true; ``TimeoutError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(period)


_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}
"""Group-coordinator errors that pass once the coordinator settled."""


def group_members(settings: Settings, group: str) -> int:
    """Members of ``group`` holding partitions, once the group is stable (else 0, also while
    the broker answers with a retriable error, e.g. its group coordinator is moving)."""
    admin = AdminClient(settings.kafka.common())
    (future,) = admin.describe_consumer_groups([group]).values()
    try:
        description = future.result(10)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and (error.retriable() or error.code() in _MOVING):
            return 0
        raise
    if str(description.state).split(".")[-1].upper() != "STABLE":
        return 0
    return sum(1 for m in description.members if m.assignment.topic_partitions)
