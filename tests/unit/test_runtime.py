"""The interpreter tuning of the worker's process (``worker.runtime``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from worker.config import Settings
from worker.runtime import DEFAULT_GC_THRESHOLD, tune_gc


@pytest.fixture
def gc_state() -> Iterator[None]:
    """Put the collector back as it was after the test."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("gc_state")
def test_tuning_freezes_what_exists_and_spaces_out_young_collections() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    alive = [[i] for i in range(1000)]  # container objects built "at start-up"
    tune_gc(5_000)
    assert gc.get_threshold() == (5_000, 10, 10)
    assert gc.get_freeze_count() >= len(alive)
    collected = {id(o) for o in gc.get_objects()}  # what collections walk: frozen ones are not
    assert not any(id(x) in collected for x in alive)


@pytest.mark.usefixtures("gc_state")
def test_zero_leaves_the_interpreter_alone() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    tune_gc(0)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_the_setting_defaults_to_the_tuned_threshold_and_can_be_turned_off() -> None:
    assert Settings().batch.gc_threshold == DEFAULT_GC_THRESHOLD
    assert Settings(batch={"gc_threshold": 0}).batch.gc_threshold == 0  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gc_threshold"):
        Settings(batch={"gc_threshold": -1})  # type: ignore[arg-type]
