"""Avro helpers for tests: a record's body under any schema (e.g. another writer's)."""

from __future__ import annotations

import copy
import io
from typing import Any

import fastavro


def avro_body(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """``record`` written with ``schema`` (schemaless: no framing). The schema is copied, as
    fastavro's parse_schema annotates the dict it is given."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(copy.deepcopy(schema)), record)
    return out.getvalue()
