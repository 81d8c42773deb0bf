"""The worker against real Kafka and Redis when the Lua script refuses one event: that event is
dead-lettered (``store_rejected``), the others of its batch are resolved and emitted in order,
and the worker keeps going."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.e2e.harness import Collector, e2e_settings, produce, running_worker
from worker.identity.ids import person_id_for
from worker.identity.model import OrderingMode, PropertyUpdates
from worker.pipeline.deadletter import HEADER_MESSAGE, HEADER_REASON
from worker.store import codec

pytestmark = pytest.mark.integration

T0 = 1_760_000_000_000


def poison_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    """An event setting the property ``poison`` is encoded with an operation code the script
    does not know: the script raises (``bad ARGV``) before writing anything."""
    real = codec.key_operations

    def key_operations(
        updates: PropertyUpdates, ordering: OrderingMode
    ) -> list[tuple[str, str, Any]]:
        ops = real(updates, ordering)
        if any(key == "poison" for _, key, _ in ops):
            return [("?", "poison", "1")]
        return ops

    monkeypatch.setattr(codec, "key_operations", key_operations)


@pytest.mark.interpreted_only(reason="plants a bad operation by replacing a compiled function")
def test_an_event_the_script_refuses_is_dead_lettered_and_the_batch_goes_on(
    kafka_bootstrap: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison_ops(monkeypatch)
    name = f"refused-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap,
        redis_url,
        name,
        buffer={"enabled": False},
        redis={"max_ops_per_call": 3},  # several chunks: the earlier ones are applied first
    )
    topics = settings.topics
    ids = [f"u{i}" for i in range(10)]

    def body(i: int, distinct_id: str) -> bytes:
        fields: dict[str, Any] = {"poison": 1} if distinct_id == "u6" else {"n": i}
        return json.dumps(
            {
                "type": "track",
                "tenant": "t",
                "uuid": str(uuid.uuid4()),
                "distinct_id": distinct_id,
                "event": "pageview",
                "timestamp": T0 + i,
                "set": fields,
            }
        ).encode()

    values = [body(i, d) for i, d in enumerate(ids)]
    after = body(99, "after")
    collector = Collector(settings, [topics.enriched, topics.dead_letters])
    try:
        with running_worker(settings) as worker:
            # one key: one partition, in order
            produce(settings, [(topics.track, b"t:k", v) for v in values])
            (dead,) = collector.wait_for(topics.dead_letters, 1)
            enriched = collector.wait_for(topics.enriched, 9)
            produce(settings, [(topics.track, b"t:k", after)])
            enriched = collector.wait_for(topics.enriched, 10)
            collector.settle(1.0)
            persons = {d: worker.store.person_for("t", d) for d in [*ids, "after"]}
    finally:
        collector.close()

    headers = dict(dead.headers())
    assert headers[HEADER_REASON] == b"store_rejected"
    assert headers[HEADER_MESSAGE].startswith(b"PermanentStoreError: ")
    assert b"bad ARGV" in headers[HEADER_MESSAGE]
    assert dead.value() == values[6]
    assert len(collector.messages[topics.dead_letters]) == 1
    emitted = [json.loads(m.value())["distinct_id"] for m in enriched]  # keyed by person
    assert sorted(emitted) == sorted([d for d in ids if d != "u6"] + ["after"])
    assert persons["u6"] is None  # the refused event wrote nothing
    for d in [*ids, "after"]:
        if d != "u6":
            person = persons[d]
            assert person is not None
            assert person.person_id == person_id_for("t", d)
