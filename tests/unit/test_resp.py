"""``resp.pack_script_round`` writes a round's commands as the bytes ``hiredis`` writes."""

from __future__ import annotations

from typing import Any, cast

from hiredis import pack_command
from hypothesis import given
from hypothesis import strategies as st

from worker import build
from worker.store import resp
from worker.store.resp import pack_script_round

words = st.lists(st.binary(max_size=1100), max_size=6)
calls = st.lists(st.tuples(words, words), max_size=4)
SHA = b"0123456789abcdef0123456789abcdef01234567"
FUNCTION = b"resolve_batch_0123456789abcdef"
targets = st.sampled_from([(b"EVALSHA", SHA), (b"FCALL", FUNCTION)])


def _hiredis(
    target: tuple[bytes, bytes], round_: list[tuple[list[bytes], list[bytes]]], preamble: Any
) -> bytes:
    command, name = target
    return b"".join(
        [
            *(pack_command(cast(Any, tuple(command))) for command in preamble),
            *(
                pack_command(cast(Any, (command, name, len(keys), *keys, *args)))
                for keys, args in round_
            ),
        ]
    )


@given(
    targets, calls, st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=4), max_size=2)
)
def test_a_round_packs_as_hiredis_packs_it(
    target: tuple[bytes, bytes],
    round_: list[tuple[list[bytes], list[bytes]]],
    preamble: list[list[bytes]],
) -> None:
    assert pack_script_round(*target, round_, preamble) == _hiredis(target, round_, preamble)


def test_a_command_with_a_word_that_is_not_bytes_goes_through_hiredis() -> None:
    preamble: list[Any] = [[b"HDEL", "key-é", 7]]
    round_ = [([b"k"], [b"a", b""])]
    target = (b"EVALSHA", SHA)
    assert pack_script_round(*target, round_, preamble) == _hiredis(target, round_, preamble)
    assert pack_script_round(*target, []) == b""


def test_the_module_packs_itself_exactly_when_it_is_compiled() -> None:
    assert ("worker.store.resp" in build.compiled_modules()) == resp._COMPILED
