"""Reading every person of a tenant through ``lua/read_person.lua``'s scan (one ``HSCAN`` page of
the ids hash per call): for ``persons()`` and for finding a person by its id. Not atomic: read
a quiet tenant."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

PAGE = 1000
"""``HSCAN`` COUNT of one call."""

Read = Callable[[list[bytes]], Any]
"""Runs ``read_person.lua`` with these ARGV (its KEYS bound) and returns its reply."""


def views(read: Read) -> Iterator[bytes | str]:
    """The view of every root of the tenant (a root may come twice: ``HSCAN`` may return a
    field twice)."""
    cursor = b"0"
    while True:
        reply = read([b"scan", cursor, b"%d" % PAGE])
        cursor = reply[0] if isinstance(reply[0], bytes) else str(reply[0]).encode()
        yield from reply[1:]
        if cursor == b"0":
            return
