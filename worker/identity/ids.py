"""Deterministic person ids (contract A2)."""

from __future__ import annotations

import uuid
from hashlib import sha1
from typing import Final

PERSON_NAMESPACE = uuid.UUID("6f1f2b8e-3c0f-5a8e-9d54-1d1b0c6a7e21")
_PERSON_NAMESPACE_BYTES: Final = PERSON_NAMESPACE.bytes


_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def case_fold(distinct_id: str) -> str:
    """``distinct_id`` with ASCII letters lowercased, nothing else: what Lua's ``string.lower``
    does in Redis (C locale, byte by byte), so both sides fold ids the same way. Two ids with
    the same fold differ only by ASCII case (``distinct_id_case_collision``)."""
    return distinct_id.translate(_ASCII_LOWER)


def person_id_for(tenant: str, distinct_id: str, epoch: int = 0) -> str:
    """uuid5 of ``"{tenant}:{distinct_id}"``: the id of the person ``distinct_id`` creates, and
    of its personless events. After ``distinct_id`` was deleted ``epoch`` times (contract A10),
    uuid5 of ``"{tenant}:{distinct_id}:{epoch}"``, so a person it creates again is a new one."""
    name = f"{tenant}:{distinct_id}:{epoch}" if epoch else f"{tenant}:{distinct_id}"
    return uuid5_text(_PERSON_NAMESPACE_BYTES, name)


def uuid5_text(namespace: bytes, name: str) -> str:
    """``str(uuid.uuid5(UUID(bytes=namespace), name))``, written from the SHA-1 digest's hex
    text (no ``UUID`` object, no 128-bit integer): a third of the time. The version (5) is the
    13th hex digit; the variant (binary ``10``) is the top two bits of the 17th."""
    return uuid5_of_bytes(namespace, name.encode("utf-8"))


def uuid5_of_bytes(namespace: bytes, name: bytes) -> str:
    """``uuid5_text`` of a name already in bytes (a distinct id as Redis holds it)."""
    text = sha1(namespace + name, usedforsecurity=False).hexdigest()
    return f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{_VARIANT[text[16]]}{text[17:20]}-{text[20:32]}"


_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
"""A hex digit with its top two bits set to ``10``."""
