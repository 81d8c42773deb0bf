"""Every hostile message ends as a dead letter with a clear reason, or as an event the identity
rules and the encoders handle; never as another exception."""

from __future__ import annotations

import pytest

from tests.hostile.corpus import ANY, EVENT, HostileMessage, corpus
from tests.hostile.harness import NOW_MS, decode, handle
from worker.codec import DECODE_REASONS, DecodeError
from worker.identity.timestamps import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS

CORPUS = corpus()


@pytest.mark.parametrize("message", CORPUS, ids=[m.name[:60] for m in CORPUS])
def test_hostile_message_is_a_dead_letter_or_a_handled_event(message: HostileMessage) -> None:
    result = decode(message)
    if isinstance(result, DecodeError):
        assert result.reason in DECODE_REASONS
        assert result.message
        assert len(result.message) <= 300
        assert message.expect in (ANY, result.reason), (message.name, result)
        return
    assert message.expect in (ANY, EVENT), (message.name, result.uuid)
    handled = handle(result)
    assert MIN_EVENT_TIME_MS <= handled.identity.timestamp_ms <= MAX_EVENT_TIME_MS
    if message.expect == EVENT:
        kind = handled.time_warning.kind.value if handled.time_warning else None
        assert kind == message.warning, message.name
    if handled.time_warning is not None and message.warning is not None:
        assert handled.identity.timestamp_ms == NOW_MS  # the receive time stands in


def test_the_corpus_reaches_every_new_reason() -> None:
    reasons = {m.expect for m in CORPUS}
    assert {"value_out_of_range", "nesting_too_deep", "too_many_properties"} <= reasons
    assert len(CORPUS) > 500
