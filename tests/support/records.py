"""A check shared by the integration tests: Python's reading of a person record
(``worker/store/record_format.py``) agrees with the script's (``lua/read_person.lua``'s view of
the same record), and Python writes a format 9 record back byte for byte."""

from __future__ import annotations

import json

from worker.store import record_format


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def assert_python_reads_record(
    tenant: str, root: bytes, value: bytes, view: bytes, members: bytes | None
) -> record_format.Record:
    """``value`` (the record at ``root``) decoded in Python equals ``view`` (the script's JSON
    view of it); a format 9 record, and its property states, encode back to the same bytes.
    ``members``: the root's members string (a spilled tree's ids), if any."""
    record = record_format.decode(value, root, _b(tenant))
    seen = json.loads(view)
    assert _b(seen["root"]) == root
    got = (record.person_id, record.created_at, record.last_seen, record.identified)
    assert got == (seen["person_id"], seen["created_at"], seen["last_seen"], seen["identified"])
    assert record.version == seen["version"], root
    meta, vals = record_format.decode_props(record)
    # (cjson writes an empty object as [])
    want_meta = {_b(k): _b(v) for k, v in (seen["meta"] or {}).items()}
    assert {k: s.code + record_format.order_text(s.order) for k, s in meta.items()} == want_meta
    assert vals == {_b(k): _b(v) for k, v in (seen["vals"] or {}).items()}
    if record.format != record_format.FORMAT_6 or record.id_count == 1:
        ids = record_format.tree_ids(root, record, members)
        assert ids == [_b(i) for i in seen["ids"]]
        assert record.id_count == len(ids)
    if record.format == record_format.FORMAT_9:
        assert record_format.encode(record) == value, root
        assert record_format.encode_props(meta, vals) == (record.snapshot, record.props), root
    return record
