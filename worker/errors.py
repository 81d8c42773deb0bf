"""The worker's error types. Library exceptions (redis-py, confluent-kafka, fastavro) are
converted into these at the boundary of the module that talks to the library; nothing else in
the worker catches a library exception.

::

    WorkerError
    ├── ConfigError                  bad settings: fix the configuration
    ├── TransientError               retried with backoff; the batch is not committed
    │   ├── TransientStoreError      Redis unreachable, loading, busy, failing over
    │   ├── KafkaUnavailableError    broker unreachable, commit or delivery failed
    │   └── TransientSchemaRegistryError  the schema registry did not answer
    └── StoreError                   (base of the store's errors)
        ├── TransientStoreError      (also a TransientError)
        └── PermanentStoreError      a script or data error that retrying cannot fix
"""

from __future__ import annotations

from typing import ClassVar


class WorkerError(Exception):
    """Base of every error the worker raises on purpose."""


class ConfigError(WorkerError):
    """The settings are invalid or inconsistent. Fix the configuration (``identity-worker
    check-config`` prints what the worker sees) and restart."""


class TransientError(WorkerError):
    """A dependency is briefly unavailable. The worker pauses, backs off and retries the batch;
    nothing is committed meanwhile. If it persists, check the named component."""

    component: ClassVar[str] = "unknown"


class StoreError(WorkerError):
    """Base of the identity store's errors."""


class TransientStoreError(StoreError, TransientError):
    """Redis did not answer (connection lost, timeout, LOADING, BUSY, READONLY during a
    failover). Retried with backoff; check Redis health and network if it persists."""

    component: ClassVar[str] = "redis"


class PermanentStoreError(StoreError):
    """Redis rejected a script or holds data the worker cannot read (a bug or a foreign writer
    in the worker's key space). Not retried: look at the message and the Redis logs."""


class KafkaUnavailableError(TransientError):
    """Kafka did not answer or did not acknowledge writes in time. Retried with backoff; check
    the brokers and the worker's network if it persists."""

    component: ClassVar[str] = "kafka"


class TransientSchemaRegistryError(TransientError):
    """A writer schema could not be fetched from the schema registry right now. Retried with
    backoff; check the registry URL and its health if it persists."""

    component: ClassVar[str] = "schema_registry"
