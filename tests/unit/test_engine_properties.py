"""``properties.outranks`` compares order keys in their stored form where both pack, and ranks
exactly as on their texts (``ordering.lua``'s rule)."""

from __future__ import annotations

import itertools

from worker.store import record_format
from worker.store.engine.call import SET, SET_ONCE, UNSET
from worker.store.engine.properties import outranks

_UUIDS = (
    "00000000-0000-0000-0000-000000000000",
    "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "f0e1d2c3-b4a5-4968-8776-655443322110",
)
TEXTS = [
    *(b"%020d%s" % (n, u.encode()) for n in (0, 7, 9_223_372_036_854_775_908) for u in _UUIDS),
    *(b"%020d%s" % (n, u.upper().encode()) for n in (0, 7) for u in _UUIDS[1:]),  # no packing
    b"%020d%s" % (10**19 * 5, _UUIDS[1].encode()),  # first half past 32 bits: no packing
    b"1234",
    b"",
]
"""Order keys as texts: 20 digits and a lowercase uuid pack; the others stay texts."""


def _reference(
    new_code: bytes, new_order: bytes, new_text: bytes, code: bytes, order: bytes, text: bytes
) -> bool:
    new_strong, strong = new_code != SET_ONCE, code != SET_ONCE
    if new_strong != strong:
        return new_strong
    if new_order == order:
        return new_text > text
    return (new_order > order) == new_strong


def test_some_keys_pack_and_some_do_not() -> None:
    packed = [record_format.pack_order(t)[:1] == b"\0" for t in TEXTS]
    assert packed == [True] * 9 + [False] * 7


def test_outranks_ranks_as_the_texts_do() -> None:
    """Every pair of keys, each as text or stored, every pair of codes and of value texts."""
    codes = (SET, SET_ONCE, UNSET)
    for new_order, order in itertools.product(TEXTS, TEXTS):
        forms = {(new_order, order)}
        forms |= {(record_format.pack_order(new_order), order)}
        forms |= {(new_order, record_format.pack_order(order))}
        forms |= {(record_format.pack_order(new_order), record_format.pack_order(order))}
        for (new_form, form), new_code, code in itertools.product(forms, codes, codes):
            for new_text, text in itertools.product((b"1", b"2"), repeat=2):
                expected = _reference(new_code, new_order, new_text, code, order, text)
                got = outranks(new_code + new_form, new_text, code + form, text)
                assert got == expected, (new_code + new_form, new_text, code + form, text)
    assert outranks(SET + TEXTS[0], b"1", None, b"")
