"""Hypothesis strategies shared by the fuzzers of the decoders and of the whole pipeline."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.hostile.corpus import GOOD_MESSAGES


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    """A valid message of the corpus with 1-8 random byte flips, deletions, insertions or a
    truncation."""
    data = bytearray(draw(st.sampled_from(GOOD_MESSAGES)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[at]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at:]
    return bytes(data)
