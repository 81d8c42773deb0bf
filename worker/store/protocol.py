"""What Python and ``lua/resolve_batch.lua`` must agree on, written once (pure: no I/O).

``codec.py`` encodes and decodes with these values; ``lua_loader.py`` renders them into the
``PROTOCOL`` table at the top of the joined script (``lua_prelude``), so the script never spells
one of them itself. Changing a value here changes both sides; changing the record or ARGV layout
means bumping ``FORMAT_VERSION`` (the script refuses a call of another format).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntFlag

from worker.identity.ids import PERSON_NAMESPACE
from worker.identity.model import OrderingMode, PersonMode

FORMAT_VERSION = "9"
"""First ARGV of every call; the script refuses any other."""


MEMBERS_INLINE = 8
"""The most distinct ids a tree keeps inside its person record; a bigger tree keeps them in its
members string (``lua/resolve/record_codec.lua``)."""


class OpFlag(IntFlag):
    """The flags digit of an operation in ARGV (its sum, 0-15)."""

    PROCESS_PERSON = 1
    """The event creates and updates its person (else A6: personless)."""
    MERGE_DANGEROUSLY = 2
    """An A3.6 merge may absorb an identified person."""
    MERGE_WITH_OTHER = 4
    """The op merges ``into`` with ``other`` (``PreparedOp.merge_with``)."""
    BUFFERABLE = 8
    """The event may wait in the buffer; three more fields (ingestion time, payload, entry id)
    follow its source fields."""


MAX_FLAGS = sum(OpFlag)
"""The largest valid flags value (every bit set)."""

REPLY_ENTRY_FIELDS = (
    "person_id",
    "person_mode",
    "created_at_ms",
    "is_identified",
    "properties",
    "merged",
    "person_created",
    "warnings",
    "overrides",
    "person_version",
    "person_changed",
    "groups",
    "group_changes",
)
"""The fields of one reply entry (a JSON array), in order."""

RELEASED_ENTRY_FIELDS = ("event_uuid", "reason", "ingested_ms", "entry", "released_ms", "entry_id")
"""The fields of one released entry of the reply (a JSON array), in order."""

SET = "s"
SET_ONCE = "o"
UNSET = "u"
SET_THEN_UNSET = "x"
"""Arrival mode only: a key both set and unset by one event (set if absent before it, else
removed)."""

PROPERTY_CODES = {
    "set": SET,
    "set_once": SET_ONCE,
    "unset": UNSET,
    "set_then_unset": SET_THEN_UNSET,
}
"""Property operation codes in ARGV. ``s``, ``o`` and ``u`` are also the op of a stored state."""

WARNING_MERGE_LIMIT = "merge_limit_exceeded"
WARNING_ALREADY_IDENTIFIED = "cannot_merge_already_identified"
WARNING_PROPERTIES_SIZE = "person_properties_size_violation"
WARNING_BUFFER_OVERFLOW = "buffer_overflow"
WARNING_GROUP_TYPE_LIMIT = "group_type_limit"
WARNING_GROUP_PROPERTIES_SIZE = "group_properties_size_violation"
WARNING_CASE_COLLISION = "distinct_id_case_collision"
WARNINGS = {
    "merge_limit": WARNING_MERGE_LIMIT,
    "already_identified": WARNING_ALREADY_IDENTIFIED,
    "properties_size": WARNING_PROPERTIES_SIZE,
    "buffer_overflow": WARNING_BUFFER_OVERFLOW,
    "group_type_limit": WARNING_GROUP_TYPE_LIMIT,
    "group_properties_size": WARNING_GROUP_PROPERTIES_SIZE,
    "case_collision": WARNING_CASE_COLLISION,
}
"""The warning names the script puts in a reply entry."""

COMMAND_RESOLVE = "resolve"
COMMAND_RELEASE = "release"
COMMANDS = {"resolve": COMMAND_RESOLVE, "release": COMMAND_RELEASE}
"""What a call does: apply its ops (resolve), or release what is due (release)."""

PERSON_MODE_BUFFERED = "buffered"
"""The person mode of the reply entry of an op that waits in the buffer."""

PERSON_MODES = {mode.name.lower(): mode.value for mode in PersonMode} | {
    "buffered": PERSON_MODE_BUFFERED
}
"""The person modes of a reply entry: ``PersonMode``'s values, and ``buffered``."""

ORDERING_MODES = {mode.name.lower(): mode.value for mode in OrderingMode}
"""The ordering mode in ARGV: ``OrderingMode``'s values."""

RELEASE_REASONS = {
    "merge": "merge",
    "timeout": "timeout",
    "overflow": "overflow",
    "redelivery": "redelivery",
}
"""Why a buffered entry was released (the ``reason`` of a released entry)."""


COMMIT_CHECKS = {
    "members": "m",
    "in_fold": "f",
    "deleted_person_id": "d",
    "group_types": "t",
    "group_record": "g",
    "group_members": "p",
    "has_queues": "q",
    "queue": "l",
    "waiting_count": "n",
    "buffered_entry": "e",
    "first_release": "o",
    "leased": "k",
    "expired_leases": "x",
    "due_ids": "y",
    "any_fold": "c",
    "any_deleted": "a",
}
"""``commit_batch.lua``'s check kind of each read of the engine (``engine/reads.py``) that is not
one of the ids hash or of a receipt hash (those come as lists: ``engine/commit.py``); in upper
case when the read found nothing."""


def lua_prelude() -> str:
    """The ``PROTOCOL`` table of the joined script: every value above, as Lua."""
    fields: dict[str, str] = {
        "format_version": _lua_string(FORMAT_VERSION),
        "flag": _lua_table({flag.name.lower(): flag.value for flag in OpFlag if flag.name}),
        "max_flags": str(MAX_FLAGS),
        "members_inline": str(MEMBERS_INLINE),
        "person_namespace": _lua_string(str(PERSON_NAMESPACE)),
        "reply_entry_fields": _lua_list(REPLY_ENTRY_FIELDS),
        "released_entry_fields": _lua_list(RELEASED_ENTRY_FIELDS),
        "code": _lua_table(PROPERTY_CODES),
        "warning": _lua_table(WARNINGS),
        "command": _lua_table(COMMANDS),
        "person_mode": _lua_table(PERSON_MODES),
        "ordering": _lua_table(ORDERING_MODES),
        "release_reason": _lua_table(RELEASE_REASONS),
        "check": _lua_table(COMMIT_CHECKS),
    }
    lines = [
        "-- Generated from worker/store/protocol.py by worker/store/lua_loader.py: edit it there.",
        "local PROTOCOL = {",
        *(f"  {name} = {value}," for name, value in fields.items()),
        "}",
    ]
    return "\n".join(lines) + "\n"


def _lua_string(text: str) -> str:
    if not text.isascii() or any(c in text for c in "'\\\n"):
        raise ValueError(f"not a plain protocol string: {text!r}")
    return f"'{text}'"


def _lua_value(value: str | int) -> str:
    return str(value) if isinstance(value, int) else _lua_string(value)


def _lua_table(mapping: Mapping[str, str | int]) -> str:
    return _lua_block([f"{name} = {_lua_value(value)}" for name, value in mapping.items()])


def _lua_list(items: tuple[str, ...]) -> str:
    return _lua_block([_lua_string(item) for item in items])


def _lua_block(items: list[str]) -> str:
    """A table constructor, one item a line (the prelude stays readable and under 100
    columns)."""
    return "{\n" + "".join(f"    {item},\n" for item in items) + "  }"
