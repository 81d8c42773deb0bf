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
            b"[" + json_string(i) + b',"' + old.encode() + b'","' + new.encode() + b'"]'
            for i, old, new in overrides
        )
        + b"]"
    )
    warnings_text = b"[" + b",".join(b'"' + w.encode() + b'"' for w in warnings) + b"]"
    return b"".join(
        (
            b'["',
            person_id.encode(),
            b'","',
            person_mode.encode(),
            b'",',
            created_at if created_at is not None else b"null",
            b",",
            b"true" if identified else b"false",
            b",",
            properties,
            b",",
            b"true" if merged else b"false",
            b",",
            b"true" if created else b"false",
            b",",
            warnings_text,
            b",",
            overrides_text,
            b",",
            b"%d" % version if version is not None else b"null",
            b",",
            b"true" if changed else b"false",
            b",",
            groups_text,
            b",",
            changes_text,
            b"]",
        )
    )


def json_strings(fields: Sequence[bytes]) -> bytes:
    """``cjson.encode`` of an array of strings (a buffered entry)."""
    return b"[" + b",".join(record_format.quote(f) for f in fields) + b"]"
