"""A round of Redis commands as RESP bytes, the bytes ``hiredis.pack_command`` writes.

``hiredis`` formats each argument's length with ``snprintf`` into a growing buffer, about 1,600
instructions an argument; a round's script calls (``EVALSHA`` or ``FCALL``) carry about 12
arguments per event. This
module writes the same bytes from a table of length headers and one ``join`` (compiled, about a
quarter of the work). An argument that is not ``bytes`` (never on the worker's path) sends its
command through ``hiredis`` as before, so the bytes stay its own; so does every command when
this module is not compiled (interpreted, the loop is slower than ``hiredis``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, cast

from hiredis import pack_command

_HEADERS: Final = [b"$%d\r\n" % n for n in range(1024)]
"""The bulk-string header of each short length."""
_CRLF: Final = b"\r\n"
_COMPILED: Final = not __file__.endswith(".py")
"""This module is an extension module (the compiled build)."""


def pack_script_round(
    command: bytes,
    target: bytes,
    calls: Sequence[tuple[Sequence[bytes], Sequence[bytes]]],
    preamble: Sequence[Sequence[bytes]] = (),
) -> bytes:
    """The ``preamble`` commands, then ``command target len(keys) *keys *args`` per (keys, args)
    of ``calls`` (``EVALSHA sha ...`` or ``FCALL function ...``), as one piece of RESP."""
    if not _COMPILED:
        return b"".join(
            [
                *(pack_command(cast(Any, tuple(words))) for words in preamble),
                *(
                    pack_command(cast(Any, (command, target, len(keys), *keys, *args)))
                    for keys, args in calls
                ),
            ]
        )
    parts: list[bytes] = []
    for words in preamble:
        _command(parts, list(words))
    for keys, args in calls:
        _command(parts, [command, target, str(len(keys)).encode(), *keys, *args])
    return b"".join(parts)


def _command(parts: list[bytes], words: list[Any]) -> None:
    for word in words:
        if type(word) is not bytes:
            parts.append(pack_command(tuple(words)))
            return
    parts.append(b"*%d\r\n" % len(words))
    for word in words:
        size = len(word)
        parts.append(_HEADERS[size] if size < 1024 else b"$%d\r\n" % size)
        parts.append(word)
        parts.append(_CRLF)
