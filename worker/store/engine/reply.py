"""The JSON texts of the reply, built by concatenation (``reply.lua``)."""

from __future__ import annotations

from collections.abc import Sequence

from worker.store import record_format


def json_string(text: bytes) -> bytes:
    return record_format.quote(text)


def entry(
    person_id: str,
    person_mode: str,
    created_at: bytes | None,
    identified: bool,
    properties: bytes,
    merged: bool,
    created: bool,
    warnings: Sequence[str],
    overrides: Sequence[tuple[bytes, str, str]],
    version: int | None,
    changed: bool,
    groups_text: bytes = b"{}",
    changes_text: bytes = b"[]",
) -> bytes:
    """``reply.entry``."""
    overrides_text = (
        b"["
        + b",".join(
            [
                b"[" + json_string(i) + b',"' + old.encode() + b'","' + new.encode() + b'"]'
                for i, old, new in overrides
            ]
        )
        + b"]"
        if overrides
        else b"[]"
    )
    warnings_text = (
        b'["' + b'","'.join([w.encode() for w in warnings]) + b'"]' if warnings else b"[]"
    )
    return _ENTRY % (
        person_id.encode(),
        person_mode.encode(),
        created_at if created_at is not None else b"null",
        b"true" if identified else b"false",
        properties,
        b"true" if merged else b"false",
        b"true" if created else b"false",
        warnings_text,
        overrides_text,
        b"%d" % version if version is not None else b"null",
        b"true" if changed else b"false",
        groups_text,
        changes_text,
    )


_ENTRY = b'["%s","%s",%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s]'
"""An entry's JSON array: the fields of ``protocol.REPLY_ENTRY_FIELDS`` in order."""


def json_strings(fields: Sequence[bytes]) -> bytes:
    """``cjson.encode`` of an array of strings (a buffered entry)."""
    return b"[" + b",".join(record_format.quote(f) for f in fields) + b"]"
