"""Persons as ``lua/read_person.lua`` returns them (pure: no I/O): a JSON view of a person
record, built by the script from either stored format (``lua/resolve/record_codec.lua``), so the
record's binary layout never reaches Python and a client that decodes responses reads it too."""

from __future__ import annotations

import json
from typing import Any

from worker.identity.model import Person, PropertyOp, PropertyState
from worker.store import protocol

_ENCODING = "utf-8"
_ERRORS = "surrogatepass"
_TS_OFFSET = 1 << 63
_TS_WIDTH = 20
_OPS_BY_CODE = {
    protocol.SET: PropertyOp.SET,
    protocol.SET_ONCE: PropertyOp.SET_ONCE,
    protocol.UNSET: PropertyOp.UNSET,
}


def _states(meta: Any, vals: Any, where: str) -> dict[str, PropertyState]:
    """Per-key states from cjson ``meta`` (key -> op code .. order key) and ``vals`` (key ->
    value text); cjson writes an empty table as ``{}`` or ``[]``."""
    meta = meta if isinstance(meta, dict) else {}
    vals = vals if isinstance(vals, dict) else {}
    out: dict[str, PropertyState] = {}
    for key, state in meta.items():
        op = _OPS_BY_CODE[state[0]]
        ts_ms, event_uuid = int(state[1 : 1 + _TS_WIDTH]) - _TS_OFFSET, state[1 + _TS_WIDTH :]
        value = None if op is PropertyOp.UNSET else json.loads(vals[key])
        out[key] = PropertyState(op=op, value=value, ts_ms=ts_ms, uuid=event_uuid)
    if sum(1 for s in out.values() if s.op is not PropertyOp.UNSET) != len(vals):
        raise ValueError(f"person at {where!r} has inconsistent property texts")
    return out


def root_and_person(view: bytes | str) -> tuple[str, Person]:
    """The root and the person of one view (``read_person.lua``). Raises ``ValueError`` (or
    ``KeyError``) when it is malformed."""
    text = view.decode(_ENCODING, _ERRORS) if isinstance(view, bytes) else view
    fields = json.loads(text)
    root = str(fields["root"])
    ids = fields["ids"]
    if not isinstance(ids, list) or not ids:
        raise ValueError(f"person at {root!r} has no distinct ids")
    distinct_ids = frozenset(str(i) for i in ids)
    if len(distinct_ids) != len(ids) or root not in distinct_ids:
        raise ValueError(f"person at {root!r} has malformed distinct ids")
    identified, version = fields["identified"], fields["version"]
    if not isinstance(identified, bool) or not isinstance(version, int):
        raise ValueError(f"person at {root!r} has a malformed record")
    return root, Person(
        person_id=str(fields["person_id"]),
        created_at_ms=int(fields["created_at"]),
        last_seen_ms=int(fields["last_seen"]),
        is_identified=identified,
        version=version,
        distinct_ids=distinct_ids,
        properties=_states(fields["meta"], fields["vals"], root),
    )


def person_of(view: bytes | str) -> Person:
    """The person of one view (``root_and_person`` without the root)."""
    return root_and_person(view)[1]
