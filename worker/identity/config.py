"""Tunable limits and lists of the identity rules (pure; built from settings by the app)."""

from __future__ import annotations

from dataclasses import dataclass

from worker.identity.model import OrderingMode

DEFAULT_ILLEGAL_IDS_CASE_INSENSITIVE: tuple[str, ...] = (
    "anonymous",
    "guest",
    "distinctid",
    "distinct_id",
    "id",
    "not_authenticated",
    "email",
    "undefined",
    "true",
    "false",
)
DEFAULT_ILLEGAL_IDS_CASE_SENSITIVE: tuple[str, ...] = (
    "[object Object]",
    "NaN",
    "None",
    "none",
    "null",
    "0",
)


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """Limits of contract A3-A6. Defaults follow PostHog where the contract says so."""

    ordering: OrderingMode = OrderingMode.TIMESTAMP
    max_distinct_ids_per_person: int = 10_000
    max_distinct_id_length: int = 400
    max_property_key_length: int = 1_024
    max_property_value_length: int = 1_024
    max_properties_bytes: int = 512 * 1024
    force_upgrade_after_ms: int = 60_000
    future_timestamp_margin_ms: int = 23 * 3600 * 1000
    illegal_ids_case_insensitive: tuple[str, ...] = DEFAULT_ILLEGAL_IDS_CASE_INSENSITIVE
    illegal_ids_case_sensitive: tuple[str, ...] = DEFAULT_ILLEGAL_IDS_CASE_SENSITIVE
    max_group_types: int = 5
    """Group types per tenant (contract A9, PostHog's 5)."""
    last_seen_resolution_ms: int = 60_000
    """A person's ``last_seen_ms`` is its latest event time rounded down to a multiple of this
    (0: exact; ``timestamps.last_seen_at``), so that an event inside the resolution of the last
    one changes nothing and writes nothing (docs/IDENTITY.md, "Persons"). ``created_at_ms``
    is always exact."""
