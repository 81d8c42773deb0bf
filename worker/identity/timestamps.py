"""Event timestamps: client clock-skew correction, range checks and clamping of future times
(contract A1)."""

from __future__ import annotations

from typing import Final

from worker.identity.model import IdentityWarning, WarningKind

MIN_EVENT_TIME_MS: Final = 0
"""1970-01-01T00:00:00Z: the earliest event time kept after skew correction."""
MAX_EVENT_TIME_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the latest event time ISO 8601 and every output can carry."""


def normalize_timestamp(
    timestamp_ms: int,
    sent_at_ms: int | None,
    now_ms: int,
    margin_ms: int,
    *,
    ignored: str | None = None,
) -> tuple[int, IdentityWarning | None]:
    """The event time to use, and a warning when it had to be replaced or clamped.

    With ``sent_at``, the client's clock skew is removed: ``now - (sent_at - timestamp)``.
    A result outside years 1970-9999, or an event whose own time the decoder already
    ``ignored`` (malformed; the reason), becomes ``now`` with warning
    ``ignored_invalid_timestamp`` (as PostHog does). A result more than ``margin_ms`` after
    ``now`` is clamped to ``now`` with warning ``event_timestamp_in_future``.
    """
    if ignored is not None:
        return now_ms, _ignored(ignored, now_ms)
    ts = now_ms - (sent_at_ms - timestamp_ms) if sent_at_ms is not None else timestamp_ms
    if not MIN_EVENT_TIME_MS <= ts <= MAX_EVENT_TIME_MS:
        return now_ms, _ignored(f"event time {ts} ms is outside years 1970-9999", now_ms)
    if ts - now_ms > margin_ms:
        warning = IdentityWarning(
            WarningKind.EVENT_TIMESTAMP_IN_FUTURE,
            {"timestamp_ms": str(ts), "now_ms": str(now_ms)},
        )
        return now_ms, warning
    return ts, None


def _ignored(reason: str, now_ms: int) -> IdentityWarning:
    return IdentityWarning(
        WarningKind.IGNORED_INVALID_TIMESTAMP, {"reason": reason[:200], "now_ms": str(now_ms)}
    )


def last_seen_at(timestamp_ms: int, resolution_ms: int) -> int:
    """The last-seen time an event at ``timestamp_ms`` gives its person: its time rounded down
    to a multiple of ``resolution_ms`` (0 or 1: the time itself). A person's ``last_seen_ms`` is
    the greatest of its events' (so it does not depend on their order), and an event inside
    the resolution of the last one moves nothing: it writes nothing to Redis."""
    return timestamp_ms - timestamp_ms % max(1, resolution_ms)
