"""Sources: where an event came from, as replay receipts key them (pure: no I/O).

A source is ``topic/partition/offset``, or ``topic/partition/offset#i`` for element ``i`` of a
message of several events: an *input position*, ordered within its partition ``topic/partition``
by offset, then element. Any other text (tests, tools) is a source too, with no order.
"""

from __future__ import annotations

from collections.abc import Iterable

Position = tuple[int, int]
"""An input position's offset and element (-1 for a message of one event)."""


def input_position(source: str) -> tuple[str, Position] | None:
    """``(partition, (offset, element))`` of an input position; None for any other text."""
    head, sep, tail = source.rpartition("/")
    offset, hash_sign, element = tail.partition("#")
    if not sep or "/" not in head or not _digits(offset):
        return None
    if hash_sign and not _digits(element):
        return None
    return head, (int(offset), int(element) if hash_sign else -1)


def newest_positions(sources: Iterable[str]) -> dict[str, Position]:
    """The greatest position of ``sources`` per partition (other sources left out)."""
    newest: dict[str, Position] = {}
    for source in sources:
        found = input_position(source)
        if found is not None:
            partition, position = found
            if position > newest.get(partition, (-1, -1)):
                newest[partition] = position
    return newest


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()
