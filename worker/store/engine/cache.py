"""Decoded records and property states, by the bytes they were decoded from (pure: no I/O).

The engine decodes the person records it reads (``record_format.decode``) and, for a person
whose properties change, their states (``decode_states``): about a third of its time on the
drain mix. A worker reads mostly records it wrote itself in an earlier batch, so the engine
keeps what it decoded and what it encoded here, by value. A cache keyed by the stored bytes
never goes stale: the same bytes decode the same whoever wrote them (another worker's write
is other bytes, a miss). Bounded: past ``limit`` entries of a kind, that kind starts over; a
cache of ``limit`` 0 keeps nothing (the engine run without one).
"""

from __future__ import annotations

from worker.store import record_format

DEFAULT_LIMIT = 50_000
"""Entries of each kind (records; property states) before the cache starts over: about 50 MB
on the drain mix's records at most."""


class DecodeCache:
    """Records by value; property states (metas and value texts) by (snapshot, states)."""

    __slots__ = ("_limit", "_records", "_states")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._limit = limit
        self._records: dict[bytes, record_format.Record] = {}
        self._states: dict[tuple[bytes, bytes], tuple[dict[bytes, bytes], dict[bytes, bytes]]] = {}

    def record(self, value: bytes) -> record_format.Record:
        """``record_format.decode(value)`` (raises its ``RecordError``): a record the caller
        must not change."""
        record = self._records.get(value)
        if record is not None:
            return record
        record = record_format.decode(value)
        self.keep_record(value, record)
        return record

    def keep_record(self, value: bytes, record: record_format.Record) -> None:
        """``record``, as ``decode(value)`` would return it (the caller no longer changes it)."""
        if self._limit <= 0:
            return
        if len(self._records) >= self._limit:
            self._records.clear()
        self._records[value] = record

    def states(
        self, snapshot: bytes, props: bytes
    ) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
        """The metas (key -> code and order key) and value texts of a record's properties, as
        dicts of the caller's own (copies)."""
        found = self._states.get((snapshot, props))
        if found is None:
            meta, vals = record_format.decode_states(snapshot, props)
            metas = {key: state.code + state.order for key, state in meta.items()}
            self.keep_states(snapshot, props, metas, vals)
            return dict(metas), dict(vals)
        return dict(found[0]), dict(found[1])

    def keep_states(
        self, snapshot: bytes, props: bytes, metas: dict[bytes, bytes], vals: dict[bytes, bytes]
    ) -> None:
        """The properties ``snapshot`` and ``props`` hold, from the ``metas`` and ``vals`` they
        were encoded from (``record_format.encode_props``), as decoding gives them back: the
        visible keys' metas in ``vals``' order, then the hidden keys', each order key in its
        stored form."""
        if self._limit <= 0:
            return
        if len(self._states) >= self._limit:
            self._states.clear()
        stored: dict[bytes, bytes] = {key: _stored(metas[key]) for key in vals}
        for key, meta in metas.items():
            if key not in vals:
                stored[key] = _stored(meta)
        self._states[(snapshot, props)] = (stored, dict(vals))


def _stored(meta: bytes) -> bytes:
    """A meta (code, order key) with its order key as stored (``encode_props``)."""
    order = meta[1:]
    return meta if order[:1] == b"\0" else meta[:1] + record_format.pack_order(order)
