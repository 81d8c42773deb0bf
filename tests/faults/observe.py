"""What the fault suite watches while it runs: the output topics, and the workers' memory."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer

from worker.config import Settings


@dataclass
class _Seen:
    enriched_records: int = 0
    uuids: Counter[str] = field(default_factory=Counter)
    direct_create_ms: list[int] = field(default_factory=list)
    """Kafka CreateTime of every enriched record of an event read from a partition (not
    released from the buffer): set by the worker's producer when it produced the record."""
    overrides: dict[tuple[str, str], str] = field(default_factory=dict)
    override_records: int = 0
    person_changes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """Per person key, the record of the highest version (the later one on a tie): what a
    consumer keeps, as docs/FORMATS.md says."""
    person_changes_last: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """Per person key, the last record in offset order: what compaction alone keeps."""
    person_change_records: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    warnings: int = 0


class Outputs:
    """Reads every output topic from the beginning, in a thread, for the whole run.

    Compacted topics are kept as compaction would keep them: the last record per key (a key's
    records share a partition, read in offset order); person changes also as their consumers
    keep them, the record of the highest version per key. ``read_committed``: read as a consumer of
    exactly-once outputs does (records of aborted transactions skipped).
    """

    def __init__(self, settings: Settings, *, read_committed: bool = False) -> None:
        self._topics = settings.topics
        self._consumer = Consumer(
            {
                **settings.kafka.common(),
                "group.id": f"{settings.kafka.group_id}-observer-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                # read_committed: only records of committed transactions (exactly-once mode)
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
                "log_level": 2,  # quiet: the broker restarts on purpose
            }
        )
        self._consumer.subscribe(
            [
                self._topics.enriched,
                self._topics.overrides,
                self._topics.person_changes,
                self._topics.dead_letters,
                self._topics.warnings,
            ]
        )
        self._lock = threading.Lock()
        self._seen = _Seen()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outputs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            messages = self._consumer.consume(num_messages=2000, timeout=0.2)
            with self._lock:
                for message in messages:
                    if message.error() is None:
                        self._take(message)

    def _take(self, message: Any) -> None:
        topic, seen = message.topic(), self._seen
        if topic == self._topics.enriched:
            body = json.loads(message.value())
            seen.enriched_records += 1
            seen.uuids[body["uuid"]] += 1
            kind, created = message.timestamp()
            if kind == TIMESTAMP_CREATE_TIME and not body.get("buffered_ms"):
                seen.direct_create_ms.append(created)
        elif topic == self._topics.overrides:
            body = json.loads(message.value())
            seen.override_records += 1
            seen.overrides[(body["tenant"], body["distinct_id"])] = body["new_person_id"]
        elif topic == self._topics.person_changes:
            body = json.loads(message.value())
            seen.person_change_records += 1
            key = (body["tenant"], body["person_id"])
            seen.person_changes_last[key] = body
            kept = seen.person_changes.get(key)
            if kept is None or body["version"] >= kept["version"]:
                seen.person_changes[key] = body
        elif topic == self._topics.dead_letters:
            reason = dict(message.headers() or []).get("iw.error.reason", b"?")
            seen.dead_letters[bytes(reason).decode(errors="replace")] += 1
        else:
            seen.warnings += 1

    def read(self) -> _Seen:
        """What was read so far (the live object: read it under ``locked``, or at the end)."""
        return self._seen

    def first_direct_after(self, t_ms: int) -> int | None:
        """CreateTime of the first enriched record produced after ``t_ms``, if one arrived."""
        with self._lock:
            later = [ms for ms in self._seen.direct_create_ms if ms > t_ms]
        return min(later) if later else None

    def wait_first_direct_after(self, t_ms: int, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.first_direct_after(t_ms)
            if found is not None:
                return found
            time.sleep(0.05)
        return None

    def missing(self, uuids: Iterable[str]) -> set[str]:
        with self._lock:
            return {u for u in uuids if u not in self._seen.uuids}

    def wait_all(self, uuids: set[str], timeout: float) -> set[str]:
        """Wait until every uuid was seen on the enriched topic; the ones still missing."""
        deadline = time.monotonic() + timeout
        missing = self.missing(uuids)
        while missing and time.monotonic() < deadline:
            time.sleep(0.5)
            missing = self.missing(missing)
        return missing

    def settle(self, quiet_seconds: float, timeout: float) -> None:
        """Wait until no record arrived for ``quiet_seconds`` (late replays, buffer releases)."""
        deadline = time.monotonic() + timeout
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                now = (
                    self._seen.enriched_records
                    + self._seen.override_records
                    + self._seen.person_change_records
                )
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_seconds:
                return
            time.sleep(0.2)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a live process (Linux ``/proc``), else ``None``."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


class RssSampler:
    """Samples the RSS of the live workers every ``interval`` seconds; the maximum per phase."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.25) -> None:
        self._pids = pids
        self._interval = interval
        self.phase = "start"
        self.max_by_phase: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for pid in self._pids():
                rss = rss_bytes(pid)
                if rss is None:
                    continue
                self.samples += 1
                phase = self.phase
                self.max_by_phase[phase] = max(self.max_by_phase.get(phase, 0), rss)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
