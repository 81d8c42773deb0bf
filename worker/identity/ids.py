"""Deterministic person ids (contract A2)."""

from __future__ import annotations

import uuid

PERSON_NAMESPACE = uuid.UUID("6f1f2b8e-3c0f-5a8e-9d54-1d1b0c6a7e21")


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


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
    return str(uuid.uuid5(PERSON_NAMESPACE, name))
