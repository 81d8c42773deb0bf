"""Builds the store's Lua scripts from ``lua/``, the way BullMQ builds its commands from
``commands/includes/``.

A script is one file whose ``--- @include "name"`` lines are replaced, at load time, by the file
``lua/name.lua``, or, for ``--- @include "protocol"``, by the ``PROTOCOL`` table rendered from
``protocol.py``. A module file returns its table (``return argv``) and becomes ``local argv =
(function() ... end)()`` in the joined script, so its private locals stay private. The result
is one script, registered once and run with ``EVALSHA`` (redis-py's ``Script`` reloads it on
``NOSCRIPT``).

``python -m worker.store.lua_loader DIR`` writes each joined script to ``DIR`` (``make lint``
runs luacheck on them).
"""

from __future__ import annotations

import re
import sys
from functools import cache
from importlib import resources
from pathlib import Path

from worker.store import protocol

SCRIPTS = ("resolve_batch.lua", "read_person.lua", "delete_person.lua")
"""The scripts the store runs."""

PROTOCOL_INCLUDE = "protocol"

_INCLUDE = re.compile(r'^--- @include "([a-z_/]+)"$', re.MULTILINE)


def module_source(name: str) -> str:
    """The text of ``lua/<name>.lua`` (``name`` may name a sub-folder: ``resolve/argv``)."""
    path = resources.files("worker.store").joinpath("lua", *f"{name}.lua".split("/"))
    return path.read_text(encoding="utf-8")


@cache
def load_script(file_name: str) -> str:
    """The joined text of the script ``lua/<file_name>``."""
    return join(module_source(file_name.removesuffix(".lua")))


def join(source: str) -> str:
    """``source`` with its includes replaced (once each; an include may not include)."""
    seen: set[str] = set()

    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            raise ValueError(f"{name!r} is included twice")
        seen.add(name)
        if name == PROTOCOL_INCLUDE:
            return protocol.lua_prelude().rstrip("\n")
        text = module_source(name)
        if _INCLUDE.search(text):
            raise ValueError(f"{name!r} includes another module: only a main script may")
        return wrap(name, text)

    return _INCLUDE.sub(include, source)


def wrap(name: str, text: str) -> str:
    """A module's text as one local of the joined script: the module's table, which its file
    returns (``return <basename>``), built in a function of its own so that its private locals
    stay private."""
    table = name.rsplit("/", 1)[-1]
    body = text.rstrip("\n")
    if not body.endswith(f"\nreturn {table}"):
        raise ValueError(f"lua/{name}.lua must end with 'return {table}'")
    return f"local {table} = (function()\n{body}\nend)()"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m worker.store.lua_loader DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name in SCRIPTS:
        (out / name).write_text(load_script(name), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
