"""The worker's error types: one tree, rooted at ``WorkerError``.

Library exceptions (redis-py, confluent-kafka, fastavro, the registry client) are converted into
these at the boundary of the module that talks to the library; nothing else in the worker
catches a library exception. What to catch:

::

    WorkerError
    ├── ConfigError                         bad settings: fix the configuration
    ├── InternalError                       the worker broke its own invariant: a bug
    ├── TransientError  (.component)        retried with backoff; the batch is not committed
    │   ├── TransientStoreError             Redis unreachable, loading, busy, failing over
    │   ├── KafkaUnavailableError           broker unreachable, commit or delivery failed
    │   └── TransientSchemaRegistryError    the schema registry did not answer
    │       └── SchemaRegistryUnavailableError   (worker.codec.errors; also a CodecError)
    ├── StoreError                          (base of the store's errors)
    │   ├── TransientStoreError             (also a TransientError)
    │   ├── PermanentStoreError             a script or data error that retrying cannot fix
    │   │   ├── RecordError                 an unreadable stored record (record_format)
    │   │   └── EngineError                 data the resolve script refuses too (engine)
    │   ├── Unsupported                     a call for the script, not the engine (engine)
    │   └── NeedsFreshReads                 a call planned once its round's earlier calls ran
    └── CodecError                          (worker.codec.errors: base of the codecs' errors)
        ├── DecodeError                     an input that can never be decoded: dead-lettered
        ├── EncodeError                     one of our own records could not be encoded
        └── SchemaRegistryUnavailableError  (also a TransientSchemaRegistryError)

Each ``TransientError`` names the ``Component`` that failed; the runner, the metrics (the
``component`` label of ``identity_worker_errors_total``) and the health endpoints use it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Component(StrEnum):
    """An external system the worker depends on; the value is the metric label."""

    REDIS = "redis"
    KAFKA = "kafka"
    SCHEMA_REGISTRY = "schema_registry"


class WorkerError(Exception):
    """Base of every error the worker raises on purpose."""


class ConfigError(WorkerError):
    """The settings are invalid or inconsistent. Fix the configuration (``identity-worker
    check-config`` prints what the worker sees) and restart."""


class InternalError(WorkerError):
    """The worker found one of its own invariants broken (a bug, not bad input or a failing
    dependency). The worker stops; report it with the log. A restart resumes from the last
    committed offsets, so nothing is lost."""


class TransientError(WorkerError):
    """A dependency is briefly unavailable. The worker pauses, backs off and retries the batch;
    nothing is committed meanwhile. If it persists, check the ``component`` it names."""

    component: ClassVar[Component]


class StoreError(WorkerError):
    """Base of the identity store's errors."""


class TransientStoreError(StoreError, TransientError):
    """Redis did not answer (connection lost, timeout, LOADING, BUSY, READONLY during a
    failover). Retried with backoff; check Redis health and network if it persists."""

    component: ClassVar[Component] = Component.REDIS


class StoreAccessError(TransientStoreError):
    """Redis refused the worker's user (a failed ``AUTH``, or an ACL without a command or key
    the worker needs: ``NOPERM``). The configuration, not an event: no event is dead-lettered
    for it and nothing is committed; the batch is retried with the runner's backoff until the
    credentials or the ACL are fixed. The message names what Redis refused (docs/OPERATIONS.md,
    *Where the rules run*, lists the commands)."""


class PermanentStoreError(StoreError):
    """Redis rejected a script or holds data the worker cannot read (a bug or a foreign writer
    in the worker's key space). Not retried: look at the message and the Redis logs."""


class RecordError(PermanentStoreError):
    """A value of the ids hash that is not a readable person record (or members string): a
    bug or a foreign writer in the worker's key space; look at the message
    (``worker.store.record_format``)."""


class EngineError(PermanentStoreError):
    """Data the resolve script would refuse too (malformed ARGV, a broken parent chain, an
    unreadable record): not retried; look at the message (``worker.store.engine``)."""


class Unsupported(StoreError):
    """A call the engine (``worker.store.engine``) does not cover: send it to the resolve script
    instead (it migrates a format 6 record, for one)."""


class NeedsFreshReads(StoreError):
    """A call the engine can plan only from Redis as the earlier calls of its round leave it
    (they wrote to the buffer: ``worker.store.engine.overlay``). Never leaves the store: the
    call is planned again once they answered."""


class KafkaUnavailableError(TransientError):
    """Kafka did not answer or did not acknowledge writes in time. Retried with backoff; check
    the brokers and the worker's network if it persists."""

    component: ClassVar[Component] = Component.KAFKA


class TransientSchemaRegistryError(TransientError):
    """A writer schema could not be fetched from the schema registry right now. Retried with
    backoff; check the registry URL, its credentials and its health if it persists."""

    component: ClassVar[Component] = Component.SCHEMA_REGISTRY
