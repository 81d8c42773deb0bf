"""The deadline around Kafka client calls that librdkafka can leave blocked."""

from __future__ import annotations

import threading

import pytest

from worker.kafka.deadline import call_within


def test_a_call_that_returns_in_time_gives_its_result_and_never_trips() -> None:
    stuck: list[str] = []
    assert call_within(lambda: 42, 5.0, "quick", lambda what, _s: stuck.append(what)) == 42
    assert stuck == []


def test_a_call_that_raises_passes_its_error_on_and_never_trips() -> None:
    stuck: list[str] = []

    def fail() -> None:
        raise ValueError("broker says no")

    with pytest.raises(ValueError, match="broker says no"):
        call_within(fail, 5.0, "failing", lambda what, _s: stuck.append(what))
    assert stuck == []


def test_a_call_blocked_past_its_deadline_trips_while_still_blocked() -> None:
    release = threading.Event()
    tripped = threading.Event()
    seen: list[tuple[str, float]] = []

    def on_stuck(what: str, seconds: float) -> None:
        seen.append((what, seconds))
        tripped.set()
        release.set()  # the real handler exits the process; here the call is let go

    def blocked() -> str:
        assert release.wait(10), "the watchdog never tripped"
        return "let go"

    assert call_within(blocked, 0.2, "send offsets", on_stuck) == "let go"
    assert tripped.is_set()
    assert seen == [("send offsets", 0.2)]
