"""PostHog capture's own Kafka messages: the ``RawEventMessage`` envelope.

PostHog's capture service writes each event as an envelope: ``data`` holds the event as JSON
text, beside ``uuid``, ``distinct_id``, ``token`` (or ``team_id``), ``now`` (when capture
received it), ``sent_at`` and ``ip``. The envelope is read as the event it wraps: the event's own
fields win, the envelope fills what the event lacks (uuid, distinct id, token, team id,
sent_at), and ``now`` is the receive time (standing in for a missing timestamp and the base of
PostHog's ``offset``).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any, Final

from worker.codec.errors import DecodeError
from worker.codec.fields import as_timestamp_ms, loads_json

_FILLED: Final = ("uuid", "distinct_id", "token", "team_id", "sent_at")


def is_capture_envelope(obj: Mapping[str, Any]) -> bool:
    """``data`` is JSON text and there is no ``event`` beside it."""
    return isinstance(obj.get("data"), str) and "event" not in obj


def unwrap(obj: Mapping[str, Any], received_at_ms: int | None) -> tuple[dict[str, Any], int | None]:
    """The wrapped event (envelope fields filled in) and its receive time."""
    inner = loads_json(obj["data"], reason="json_invalid", field="data")
    if not isinstance(inner, dict):
        raise DecodeError("invalid_field", "data must hold a JSON object", field="data")
    for name in _FILLED:
        if inner.get(name) is None and obj.get(name) is not None:
            inner[name] = obj[name]
    now = obj.get("now")
    if now is not None:
        # a malformed ``now`` leaves the Kafka timestamp as the receive time
        with suppress(DecodeError):
            received_at_ms = as_timestamp_ms(now, "now")
    return inner, received_at_ms
