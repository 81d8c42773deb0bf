"""The event time after skew correction stays in years 1970-9999, else the receive time and a
warning, as PostHog does (``ignored_invalid_timestamp``)."""

from __future__ import annotations

import pytest

from worker.identity.model import WarningKind
from worker.identity.timestamps import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, normalize_timestamp

NOW = 1_714_564_800_000
MARGIN = 23 * 3_600_000
YEAR_MS = 365 * 86_400_000


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [
        (-1, None),  # 1969
        (MAX_EVENT_TIME_MS + 1, None),  # year 10000
        (NOW, NOW + 60 * YEAR_MS),  # a clock far ahead: corrected to 1964
        (MAX_EVENT_TIME_MS, 0),  # a clock far behind: corrected past 9999
    ],
)
def test_a_time_outside_1970_9999_becomes_now_with_a_warning(
    timestamp: int, sent_at: int | None
) -> None:
    ts, warning = normalize_timestamp(timestamp, sent_at, NOW, MARGIN)
    assert ts == NOW
    assert warning is not None
    assert warning.kind is WarningKind.IGNORED_INVALID_TIMESTAMP
    assert "1970-9999" in warning.details["reason"]


@pytest.mark.parametrize("timestamp", [MIN_EVENT_TIME_MS, NOW - YEAR_MS])
def test_a_time_in_range_is_kept(timestamp: int) -> None:
    assert normalize_timestamp(timestamp, None, NOW, MARGIN) == (timestamp, None)


def test_a_time_the_decoder_ignored_becomes_now_with_its_reason() -> None:
    ts, warning = normalize_timestamp(NOW - 5, None, NOW, MARGIN, ignored="offset is out of range")
    assert ts == NOW
    assert warning is not None
    assert warning.kind is WarningKind.IGNORED_INVALID_TIMESTAMP
    assert warning.details["reason"] == "offset is out of range"


def test_a_future_time_within_range_is_still_clamped_as_before() -> None:
    ts, warning = normalize_timestamp(NOW + MARGIN + 1, None, NOW, MARGIN)
    assert ts == NOW
    assert warning is not None
    assert warning.kind is WarningKind.EVENT_TIMESTAMP_IN_FUTURE
