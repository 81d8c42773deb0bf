"""The worker against real Kafka and Redis when the store refuses one event (the Lua script, or
with the rules in the worker the engine, which refuses the same ARGV): that event is
dead-lettered (``store_rejected``), the others of its batch are resolved and emitted in order,
and the worker keeps going."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

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
@pytest.mark.parametrize(
    ("rules", "refusal"), [("script", b"PermanentStoreError: "), ("worker", b"EngineError: ")]
)
def test_an_event_the_store_refuses_is_dead_lettered_and_the_batch_goes_on(
    kafka_bootstrap: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    rules: str,
    refusal: bytes,
) -> None:
    poison_ops(monkeypatch)
    name = f"refused-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap,
        redis_url,
        name,
        buffer={"enabled": False},
        # several chunks: the earlier ones are applied first
        redis={"max_ops_per_call": 3, "rules": rules},
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
    assert headers[HEADER_MESSAGE].startswith(refusal)
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


@pytest.mark.parametrize("rules", ["script", "worker"])
def test_a_redis_user_refused_the_script_holds_the_batch_until_its_acl_is_fixed(
    kafka_bootstrap: str, redis_url: str, rules: str, caplog: pytest.LogCaptureFixture
) -> None:
    """NOPERM is the deployment's, not an event's: no event becomes a dead letter, nothing is
    committed; once the ACL allows the commands, the same events are resolved."""
    admin = redis.Redis.from_url(redis_url)
    parts = urlsplit(redis_url)
    if parts.username or parts.password:
        pytest.skip("the Redis URL carries its own user: the test creates one of its own")
    user, password = f"iw-acl-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    try:
        # every command but those that run a script (the resolve script, or the commit)
        admin.acl_setuser(
            user, enabled=True, passwords=[f"+{password}"], keys=["*"],
            commands=["+@all", "-eval", "-evalsha", "-script", "-fcall", "-function"],
        )  # fmt: skip
    except redis.exceptions.ResponseError as exc:
        pytest.skip(f"this Redis does not let the test create an ACL user: {exc}")
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 6379}"
    name = f"acl-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap,
        urlunsplit(parts._replace(netloc=netloc)),
        name,
        buffer={"enabled": False},
        redis={"rules": rules, "retry_attempts": 1},
    )
    topics = settings.topics
    ids = [f"u{i}" for i in range(3)]
    values = [
        json.dumps(
            {"type": "track", "tenant": "t", "uuid": str(uuid.uuid4()), "distinct_id": d,
             "event": "pageview", "timestamp": T0 + i}
        ).encode()
        for i, d in enumerate(ids)
    ]  # fmt: skip
    collector = Collector(settings, [topics.enriched, topics.dead_letters])
    try:
        with running_worker(settings):
            produce(settings, [(topics.track, b"t:k", v) for v in values])
            collector.settle(4.0)  # a few refused attempts, backing off
            assert collector.messages[topics.enriched] == []
            assert collector.messages[topics.dead_letters] == []
            retries = [r for r in caplog.records if "will retry: StoreAccessError" in r.message]
            assert retries, "the refusal is reported"
            assert "no permissions" in retries[0].message
            admin.acl_setuser(user, enabled=True, commands=["+@all"])
            enriched = collector.wait_for(topics.enriched, 3, timeout=60)
            collector.settle(1.0)
    finally:
        collector.close()
        admin.acl_deluser(user)
        admin.close()
    assert sorted(json.loads(m.value())["distinct_id"] for m in enriched) == ids
    assert collector.messages[topics.dead_letters] == []
