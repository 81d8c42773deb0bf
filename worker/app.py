"""Composition root: the only module that builds the worker's parts from ``Settings``."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import redis
from prometheus_client import CollectorRegistry

from worker.clock import Clock, SystemClock
from worker.codec.avro import AvroCodec, SchemaName
from worker.codec.decode import DecodeOptions
from worker.codec.encode import OutputEncoder
from worker.codec.json_formats import JsonOptions
from worker.codec.schema_registry import ConfluentSchemaResolver, register_schemas
from worker.config import Settings
from worker.kafka.sink import KafkaSink
from worker.kafka.source import KafkaSource
from worker.kafka.transactions import ReleaseTransaction, TransactionalSource
from worker.observability.http import OpsServer, liveness, readiness
from worker.observability.metrics import WorkerMetrics
from worker.observability.recorder import MetricsRecorder
from worker.pipeline.decoding import Decoder
from worker.pipeline.delivery import Delivery
from worker.pipeline.emit import Emitter
from worker.pipeline.orchestrator import BatchPipeline
from worker.pipeline.outputs import OutputContext
from worker.pipeline.ports import OutputTransaction, Sink, Source
from worker.pipeline.releaser import BufferReleaser
from worker.pipeline.runner import Runner
from worker.store.base import BufferingStore
from worker.store.codec import BufferPolicy
from worker.store.commit_plan import RulesMode
from worker.store.redis_store import RedisClient, RedisIdentityStore
from worker.store.script_call import ScriptCommand

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Worker:
    runner: Runner
    source: KafkaSource
    sink: KafkaSink
    store: RedisIdentityStore
    redis: RedisClient
    metrics: WorkerMetrics

    def close(self) -> None:
        """Leave the group, flush the producer, send the store's pending receipt drops, close
        Redis (in that order)."""
        try:
            self.source.close()
        finally:
            try:
                self.sink.close()
            finally:
                try:
                    self.store.flush_forgotten()
                except Exception as exc:  # the receipts expire on their own
                    log.warning("could not drop replay receipts at close: %r", exc)
                finally:
                    self.redis.close()


def redis_client(settings: Settings) -> RedisClient:
    """A client for ``redis.url``: a Redis Cluster client when ``redis.cluster`` is set (the
    URL names any node; the others are discovered)."""
    url = settings.redis.url.get_secret_value()
    timeout = settings.redis.socket_timeout_seconds
    if settings.redis.cluster:
        return redis.RedisCluster.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30
    )


def build_store(settings: Settings, client: RedisClient) -> RedisIdentityStore:
    buffer = settings.buffer
    return RedisIdentityStore(
        client,
        settings.identity.to_config(),
        prefix=settings.redis.key_prefix,
        max_ops_per_call=settings.redis.max_ops_per_call,
        max_call_cost=settings.redis.max_call_cost,
        script_command=ScriptCommand(settings.redis.script_command),
        rules=RulesMode(settings.redis.rules),
        retry_attempts=settings.redis.retry_attempts,
        retry_base_delay_s=settings.redis.retry_backoff_seconds,
        retry_max_delay_s=settings.redis.retry_backoff_max_seconds,
        receipt_ttl_ms=round(settings.redis.receipt_ttl_seconds * 1000),
        buffer=BufferPolicy(
            delay_ms=round(buffer.delay_seconds * 1000) if buffer.enabled else 0,
            max_per_id=buffer.max_events_per_id,
            max_total=buffer.max_events_total,
            lease_ms=round(buffer.lease_seconds * 1000),
        ),
    )


def build_avro(settings: Settings) -> AvroCodec:
    """Our schemas under fixed ids, or, with ``formats.schema_registry_url``, registered in the
    registry (``<topic>-value`` subjects; the input schema under ``io.identityworker.Event``)
    with unknown writer ids resolved through it."""
    url = settings.formats.schema_registry_url
    if url is None:
        return AvroCodec()
    resolver = ConfluentSchemaResolver.from_config({"url": url.get_secret_value()})
    topics = settings.topics
    ids = register_schemas(
        resolver,
        {
            SchemaName.EVENT: "io.identityworker.Event",
            SchemaName.ENRICHED_EVENT: f"{topics.enriched}-value",
            SchemaName.DISTINCT_ID_OVERRIDE: f"{topics.overrides}-value",
            SchemaName.INGESTION_WARNING: f"{topics.warnings}-value",
            SchemaName.PERSON_CHANGE: f"{topics.person_changes}-value",
            SchemaName.GROUP_CHANGE: f"{topics.group_changes}-value",
        },
    )
    return AvroCodec(schema_ids=ids, resolver=resolver)


def _json_options(settings: Settings) -> JsonOptions:
    formats = settings.formats
    person_properties = formats.posthog_person_properties
    if person_properties is None:
        return JsonOptions(
            tenant_fields=formats.tenant_fields,
            default_tenant=formats.default_tenant,
            segment_group_type=formats.segment_group_type,
        )
    return JsonOptions(
        tenant_fields=formats.tenant_fields,
        default_tenant=formats.default_tenant,
        posthog_person_properties=person_properties,
        segment_group_type=formats.segment_group_type,
    )


def transactional_id(settings: Settings) -> str:
    """``delivery.transactional_id``, else ``<group id>-<group instance id>``, else
    ``<group id>-<host name>`` (a pod's name on Kubernetes)."""
    if settings.delivery.transactional_id is not None:
        return settings.delivery.transactional_id
    member = settings.kafka.group_instance_id or socket.gethostname()
    return f"{settings.kafka.group_id}-{member}"


def build_pipeline(
    settings: Settings,
    store: BufferingStore,
    sink: Sink,
    avro: AvroCodec,
    clock: Clock,
    transaction: OutputTransaction | None = None,
) -> BatchPipeline:
    """One batch's parts: decoder, outputs, delivery, emitter, buffer releaser, orchestrator.
    ``transaction``: exactly-once outputs (buffer sweeps commit their own transaction, released
    entries are acknowledged only once their outputs are committed)."""
    topics, buffer = settings.topics, settings.buffer
    options = DecodeOptions(
        avro=avro,
        json=_json_options(settings),
        topic_dialects=settings.formats.topic_dialects,
    )
    decoder = Decoder(
        options=options,
        # buffered events are kept as JSON input messages, whatever the output format
        payloads=OutputEncoder("json", avro),
        dead_letters=topics.dead_letters,
        future_timestamp_margin_ms=settings.identity.to_config().future_timestamp_margin_ms,
        buffer=buffer,
    )
    outputs = OutputContext(
        encoder=OutputEncoder(settings.formats.output, avro),
        topics=topics,
    )
    delivery = Delivery(sink, topics.dead_letters, settings.batch.shutdown_timeout_seconds)
    emitter = Emitter(
        store=store,
        decoder=decoder,
        outputs=outputs,
        delivery=delivery,
        clock=clock,
        acks_after_commit=transaction is not None,
    )
    releaser = (
        BufferReleaser(
            store=store,
            emitter=emitter,
            clock=clock,
            batch_size=buffer.release_batch_size,
            interval_seconds=buffer.release_interval_seconds,
            transaction=transaction,
        )
        if buffer.enabled
        else None
    )
    return BatchPipeline(
        store=store,
        decoder=decoder,
        outputs=outputs,
        emitter=emitter,
        clock=clock,
        releaser=releaser,
        log_personal_data=settings.observability.log_personal_data,
        sink=sink,
    )


def build_worker(
    settings: Settings, clock: Clock | None = None, registry: CollectorRegistry | None = None
) -> Worker:
    clock = clock or SystemClock()
    client = redis_client(settings)
    store = build_store(settings, client)
    kafka_common = settings.kafka.common()
    exactly_once = settings.delivery.exactly_once
    producer = {**kafka_common, **settings.kafka.producer}
    if exactly_once:
        producer.setdefault("transactional.id", transactional_id(settings))
    sink = KafkaSink(producer)
    avro = build_avro(settings)
    timeout = settings.batch.shutdown_timeout_seconds
    transaction = ReleaseTransaction(sink, timeout) if exactly_once else None
    pipeline = build_pipeline(settings, store, sink, avro, clock, transaction)
    source = KafkaSource(
        {**kafka_common, **settings.kafka.membership(), **settings.kafka.consumer},
        settings.topics.inputs,
    )
    batches: Source = TransactionalSource(source, sink, timeout) if exactly_once else source
    metrics = WorkerMetrics.create(registry)
    runner = Runner(
        batches,
        pipeline,
        clock,
        max_messages=settings.batch.max_messages,
        max_wait_seconds=settings.batch.max_wait_seconds,
        observer=MetricsRecorder(metrics, store.rules_stats.counts),
        # exactly once: one transaction open at a time, the next batch's store round running
        # while it commits (unless batch.max_in_flight is 1: one batch at a time)
        max_in_flight=1 if exactly_once else settings.batch.max_in_flight,
        overlap=settings.batch.max_in_flight > 1,
    )
    # before partitions go, the batches in flight are finished and committed
    source.listen(on_revoke=runner.partitions_revoked, on_lost=runner.partitions_lost)
    return Worker(
        runner=runner, source=source, sink=sink, store=store, redis=client, metrics=metrics
    )


def build_ops_server(settings: Settings, worker: Worker, clock: Clock | None = None) -> OpsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``observability.metrics_port``."""
    clock = clock or SystemClock()
    obs = settings.observability
    # the loop polls at least every batch.max_wait; a loop silent for the whole shutdown
    # timeout plus a minute is stuck, not slow
    stall = settings.batch.shutdown_timeout_seconds + 60
    return OpsServer(
        obs.metrics_host,
        obs.metrics_port,
        worker.metrics.registry,
        liveness(worker.runner.health, clock.monotonic, stall),
        readiness(worker.runner.health),
    )
