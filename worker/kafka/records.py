"""Messages in and out of Kafka, as plain values the pipeline can use without confluent types."""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.fast_init import fast_init

Partition = tuple[str, int]
"""A topic partition: ``(topic, partition)``."""


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed message, exactly as the broker returned it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: tuple[tuple[str, bytes], ...] = (),
        timestamp_ms: int | None = None,
    ) -> None:  # compiled: native code (``worker.fast_init``)
        self.topic = topic  # type: ignore[misc]
        self.partition = partition  # type: ignore[misc]
        self.offset = offset  # type: ignore[misc]
        self.key = key  # type: ignore[misc]
        self.value = value  # type: ignore[misc]
        self.headers = headers  # type: ignore[misc]
        self.timestamp_ms = timestamp_ms  # type: ignore[misc]

    @property
    def source_ref(self) -> str:
        """``topic/partition/offset``: names the message (and seeds derived uuids)."""
        return f"{self.topic}/{self.partition}/{self.offset}"


fast_init(RawMessage)


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One message to produce."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default=())

    def __init__(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> None:  # compiled: native code (``worker.fast_init``)
        self.topic = topic  # type: ignore[misc]
        self.value = value  # type: ignore[misc]
        self.key = key  # type: ignore[misc]
        self.headers = headers  # type: ignore[misc]


fast_init(OutputRecord)


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """A record the producer could not deliver, with librdkafka's reason."""

    record: OutputRecord
    reason: str
    too_large: bool
    """The record exceeds a message size limit: retrying cannot help."""
    tag: int = 0
    """The tag the record was produced with (lets the producer's caller find its output)."""
