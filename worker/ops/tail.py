"""``identity-worker tail TOPIC``: print what the worker wrote (or reads), decoded.

Enriched events, distinct-id overrides, person changes and warnings, in JSON or Avro (the
Confluent wire format: local schema ids, or the registry's when ``formats.schema_registry_url``
is set), as one readable line each, or as one JSON object each (``--json``). Dead letters show
their reason and source. Offsets like kcat's ``-o``: ``beginning``, ``end``, an absolute offset,
or ``-N`` (the last N of each partition). Reading never joins a consumer group and commits
nothing.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from worker.codec.avro import SCHEMA_IDS, AvroCodec, SchemaName
from worker.codec.errors import CodecError
from worker.config import TopicSettings
from worker.errors import KafkaUnavailableError
from worker.ops.offsets import watermarks
from worker.ops.replay import TopicNotFoundError
from worker.pipeline.deadletter import HEADER_REASON, HEADER_TOPIC


@dataclass(frozen=True, slots=True)
class TailOptions:
    offset: str = "end"
    """``beginning``, ``end``, an offset, or ``-N``: the last N messages of each partition."""
    partitions: frozenset[int] = frozenset()
    limit: int | None = None
    """Stop after this many messages."""
    exit_at_end: bool = False
    """Stop once every partition's end (as of the start) is reached, like kcat's ``-e``."""
    idle_seconds: float | None = None
    """Stop after this long with nothing new."""
    metadata_timeout_seconds: float = 10.0
    """How long to wait for the broker's metadata of the topic before giving up."""


def schema_for_topic(topic: str, topics: TopicSettings) -> SchemaName | None:
    """The schema of the records on one of the worker's topics (None: dead letters, unknown)."""
    if topic == topics.enriched:
        return SchemaName.ENRICHED_EVENT
    if topic == topics.overrides:
        return SchemaName.DISTINCT_ID_OVERRIDE
    if topic == topics.person_changes:
        return SchemaName.PERSON_CHANGE
    if topic == topics.warnings:
        return SchemaName.INGESTION_WARNING
    if topic in topics.inputs:
        return SchemaName.EVENT
    return None


_BY_LOCAL_ID = {schema_id: name for name, schema_id in SCHEMA_IDS.items()}


def decode_value(
    value: bytes | None, schema: SchemaName | None, avro: AvroCodec
) -> tuple[str, Any]:
    """``(format, decoded)``: ``("json", obj)``, ``("avro", record)``, ``("tombstone", None)``
    or ``("bytes", base64 text)`` for what neither reads."""
    if value is None:
        return "tombstone", None
    if value[:1] == b"\x00" and len(value) >= 5:
        schema_id = int.from_bytes(value[1:5], "big")
        name = schema or _BY_LOCAL_ID.get(schema_id)
        if name is not None:
            try:
                return "avro", avro.decode(name, value).record
            except CodecError:
                pass
    try:
        return "json", json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "bytes", base64.b64encode(value).decode()


def headers_of(message: Any) -> dict[str, str]:
    return {
        str(k): (v or b"").decode("utf-8", errors="replace") if not isinstance(v, str) else v
        for k, v in message.headers() or []
    }


def _time(ms: Any) -> str:
    if isinstance(ms, datetime):
        return ms.astimezone(UTC).isoformat(timespec="milliseconds")
    if isinstance(ms, int | float) and not isinstance(ms, bool):
        return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return str(ms)


def _short(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def readable(topic: str, fmt: str, value: Any, headers: Mapping[str, str]) -> str:
    """One line for a human: the fields that matter for the record's kind."""
    if fmt == "tombstone":
        return "(tombstone)"
    if HEADER_REASON in headers:
        return (
            f"dead letter reason={headers[HEADER_REASON]} "
            f"from={headers.get(HEADER_TOPIC, '?')} value={_short(value)[:200]}"
        )
    if not isinstance(value, dict):
        return f"{fmt} {_short(value)[:300]}"
    v = value
    if "person_mode" in v or ("person_id" in v and "event" in v):
        return (
            f"event {v.get('event') or v.get('type')} distinct_id={v.get('distinct_id')} "
            f"person={v.get('person_id')} mode={v.get('person_mode')} "
            f"identified={v.get('is_identified')} properties={_short(v.get('person_properties'))}"
        )
    if "old_person_id" in v:
        return (
            f"override distinct_id={v.get('distinct_id')} {v.get('old_person_id')} -> "
            f"{v.get('new_person_id')} at {_time(v.get('timestamp'))}"
        )
    if "details" in v and "type" in v:
        return (
            f"warning {v.get('type')} distinct_id={v.get('distinct_id')} "
            f"details={_short(v.get('details'))}"
        )
    if "version" in v and "person_id" in v:
        return (
            f"person {v.get('person_id')} version={v.get('version')} "
            f"identified={v.get('is_identified')} properties={_short(v.get('properties'))}"
        )
    return f"{fmt} {_short(v)[:300]}"


def as_json(message: Any, fmt: str, value: Any) -> dict[str, Any]:
    key = message.key()
    _kind, ts = message.timestamp()
    return {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": ts,
        "key": key.decode("utf-8", errors="replace") if key is not None else None,
        "format": fmt,
        "headers": headers_of(message),
        "value": value,
    }


def _start(offset: str, low: int, high: int) -> int:
    if offset == "beginning":
        return low
    if offset == "end":
        return high
    number = int(offset)
    if number < 0:
        return max(low, high + number)
    return min(max(low, number), high)


def tail(
    consumer_conf: Mapping[str, Any],
    topic: str,
    options: TailOptions,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Any]:
    """Messages of ``topic`` from the chosen offsets. Raises ``TopicNotFoundError`` and
    ``KafkaUnavailableError``."""
    consumer = Consumer(
        {
            **consumer_conf,
            "group.id": f"identity-worker-tail-{int(time.time() * 1000)}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=options.metadata_timeout_seconds)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"Kafka: no metadata: {exc.args[0]}") from None
        meta = metadata.topics.get(topic)
        if meta is None or meta.error is not None:
            raise TopicNotFoundError(f"topic {topic!r} does not exist")
        partitions = [
            p for p in sorted(meta.partitions) if not options.partitions or p in options.partitions
        ]
        if not partitions:
            raise TopicNotFoundError(f"topic {topic!r} has none of the partitions asked for")
        assignment, ends = [], {}
        for partition in partitions:
            low, high = watermarks(consumer, topic, partition)
            start = _start(options.offset, low, high)
            assignment.append(TopicPartition(topic, partition, start))
            if high > start:
                ends[partition] = high
        consumer.assign(assignment)
        count = 0
        last = clock()
        while True:
            if options.exit_at_end and not ends:
                return
            if options.limit is not None and count >= options.limit:
                return
            if options.idle_seconds is not None and clock() - last > options.idle_seconds:
                return
            for message in consumer.consume(num_messages=100, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaUnavailableError(f"Kafka: reading {topic}: {error.str()}")
                last = clock()
                partition, offset = message.partition(), message.offset()
                if partition in ends and offset is not None and offset + 1 >= ends[partition]:
                    del ends[partition]
                yield message
                count += 1
                if options.limit is not None and count >= options.limit:
                    return
    finally:
        consumer.close()
