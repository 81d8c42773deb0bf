"""Event timestamps: client clock-skew correction and clamping of future times (contract A1)."""

from __future__ import annotations

from worker.identity.model import IdentityWarning, WarningKind


def normalize_timestamp(
    timestamp_ms: int, sent_at_ms: int | None, now_ms: int, margin_ms: int
) -> tuple[int, IdentityWarning | None]:
    """The event time to use, and a warning when it had to be clamped.

    With ``sent_at``, the client's clock skew is removed: ``now - (sent_at - timestamp)``.
    A result more than ``margin_ms`` after ``now`` is clamped to ``now`` with warning
    ``event_timestamp_in_future``.
    """
    ts = now_ms - (sent_at_ms - timestamp_ms) if sent_at_ms is not None else timestamp_ms
    if ts - now_ms > margin_ms:
        warning = IdentityWarning(
            WarningKind.EVENT_TIMESTAMP_IN_FUTURE,
            {"timestamp_ms": str(ts), "now_ms": str(now_ms)},
        )
        return now_ms, warning
    return ts, None
