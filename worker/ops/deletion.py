"""Person deletion (contract A10) end to end: a request, the atomic Redis deletion, then the
tombstones (null values) on the compacted person-changes topic (key ``tenant:person_id``) and
override topic (key ``tenant:distinct_id``, one per id), and an audit record on
``topics.deletion_audit``. Used by ``identity-worker delete`` and by the deletions consumer
(``worker.ops.deletions``).

An audit record names the tenant, what was asked, the person deleted, how many ids it held, who
asked and when; never an id's value beyond the one asked for, never a property value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from worker.config import TopicSettings
from worker.errors import KafkaUnavailableError
from worker.identity.deletion import Deletion

AUDIT_DELETED = "deleted"
AUDIT_NOT_FOUND = "not_found"


class DeletingStore(Protocol):
    def delete_person(
        self, tenant: str, *, distinct_id: str | None = None, person_id: str | None = None
    ) -> Deletion | None: ...


class BadDeletionRequest(ValueError):
    """A deletions-topic message that is not a request (dead-lettered with ``reason``)."""

    reason = "bad_deletion_request"


@dataclass(frozen=True, slots=True)
class DeletionRequest:
    """Delete the person holding ``distinct_id``, or the person ``person_id`` (exactly one)."""

    tenant: str
    distinct_id: str | None
    person_id: str | None
    requested_by: str

    @classmethod
    def parse(cls, value: bytes | None) -> DeletionRequest:
        """A request from its JSON: ``{"tenant", "distinct_id" | "person_id",
        "requested_by"}``; raises ``BadDeletionRequest``."""
        try:
            body = json.loads(value or b"")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadDeletionRequest(f"not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadDeletionRequest("not a JSON object")
        tenant, requested_by = body.get("tenant"), body.get("requested_by")
        distinct_id, person_id = body.get("distinct_id"), body.get("person_id")
        if not isinstance(tenant, str) or not tenant:
            raise BadDeletionRequest("tenant must be a non-empty string")
        if not isinstance(requested_by, str) or not requested_by:
            raise BadDeletionRequest("requested_by must be a non-empty string")
        if (distinct_id is None) == (person_id is None):
            raise BadDeletionRequest("give exactly one of distinct_id and person_id")
        for name, given in (("distinct_id", distinct_id), ("person_id", person_id)):
            if given is not None and (not isinstance(given, str) or not given):
                raise BadDeletionRequest(f"{name} must be a non-empty string")
        return cls(tenant, distinct_id, person_id, requested_by)


def audit_record(request: DeletionRequest, deletion: Deletion | None, at_ms: int) -> dict[str, Any]:
    """The audit record of a request: ``status`` deleted or not_found."""
    return {
        "tenant": request.tenant,
        "status": AUDIT_DELETED if deletion else AUDIT_NOT_FOUND,
        "requested_distinct_id": request.distinct_id,
        "requested_person_id": request.person_id,
        "person_id": deletion.person_id if deletion else None,
        "distinct_id_count": len(deletion.distinct_ids) if deletion else 0,
        "buffered_events_dropped": deletion.buffered if deletion else 0,
        "requested_by": request.requested_by,
        "deleted_at_ms": at_ms,
    }


def execute(
    store: DeletingStore,
    producer: Any,
    topics: TopicSettings,
    request: DeletionRequest,
    clock_ms: Callable[[], int],
    flush_timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Delete, then write the tombstones and the audit record and wait for them; returns the
    audit record. Raises ``KafkaUnavailableError`` when a record is not acknowledged."""
    deletion = store.delete_person(
        request.tenant, distinct_id=request.distinct_id, person_id=request.person_id
    )
    record = audit_record(request, deletion, clock_ms())
    errors: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            errors.append(str(error))

    tenant = request.tenant
    if deletion is not None:
        key = f"{tenant}:{deletion.person_id}".encode()
        producer.produce(topics.person_changes, None, key, on_delivery=delivered)
        for distinct_id in deletion.distinct_ids:
            id_key = f"{tenant}:{distinct_id}".encode("utf-8", "surrogatepass")
            producer.produce(topics.overrides, None, id_key, on_delivery=delivered)
    audit_key = f"{tenant}:{deletion.person_id if deletion else ''}".encode()
    value = json.dumps(record, sort_keys=True).encode()
    producer.produce(topics.deletion_audit, value, audit_key, on_delivery=delivered)
    left = producer.flush(flush_timeout_s)
    if left or errors:
        raise KafkaUnavailableError(
            f"Kafka: {left} deletion records not delivered; {'; '.join(errors[:3])}"
        )
    return record
