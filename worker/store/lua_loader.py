"""Builds the store's Lua scripts from ``lua/``, the way BullMQ builds its commands from
``commands/includes/``.

A script is one file whose ``--- @include "name"`` lines are replaced, at load time, by the file
``lua/name.lua``, or, for ``--- @include "protocol"``, by the ``PROTOCOL`` table rendered from
``protocol.py``. A module file returns its table (``return argv``) and becomes ``local argv =
(function() ... end)()`` in the joined script, so its private locals stay private. The result
is one script, registered once and run with ``EVALSHA`` (redis-py's ``Script``, and for the
resolve script ``script_call.py``, load it again on ``NOSCRIPT``).

``resolve_batch.lua`` is also built as a Redis function library (``load_library``; Redis 7+:
``FUNCTION LOAD`` once, then ``FCALL``): its modules are defined by the library's first call
and kept for the later ones instead of defined on every call (a library that loads gets no
globals to define them with), and the main script's text after its last include becomes the
function's body, which gets ``KEYS`` and ``ARGV`` as its parameters.
The library and function names end with a digest of the code, so workers of two versions (a
rolling deploy) call each their own.

``python -m worker.store.lua_loader DIR`` writes each joined script, and each library as
``<name>.library.lua``, to ``DIR`` (``make lint`` runs luacheck on them).
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from worker.store import protocol

SCRIPTS = (
    "resolve_batch.lua",
    "read_person.lua",
    "delete_person.lua",
    "commit_batch.lua",
)
"""The scripts the store runs."""

LIBRARIES = ("resolve_batch.lua",)
"""The scripts also built as a function library (``load_library``)."""

LIBRARY_PREFIX = "identity_worker_"
"""Start of every library's name (then the digest of its code): ``FUNCTION LIST LIBRARYNAME
identity_worker_`` lists the libraries workers loaded."""

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


@dataclass(frozen=True, slots=True)
class Library:
    """A script built as a function library: ``FUNCTION LOAD code``, then ``FCALL function``."""

    name: str
    function: str
    code: str


@cache
def load_library(file_name: str) -> Library:
    """The script ``lua/<file_name>`` as a function library: its includes defined by the
    library's first call (a library that loads gets no globals to define them with), the rest
    of the main script the body of one function, named ``<script>_<digest>`` (the digest, of
    the library's code, also names the library)."""
    source = module_source(file_name.removesuffix(".lua"))
    includes = list(_INCLUDE.finditer(source))
    if not includes:
        raise ValueError(f"{file_name} has no include: nothing to define once")
    end = includes[-1].end()
    top, body = join(source[:end]), source[end:].strip("\n")
    if top.startswith("#!"):
        top = top.split("\n", 1)[1]  # the script's flags line; a library has its own
    inner = "\n".join("    " + line if line else line for line in body.split("\n"))
    digest = hashlib.sha1((top + "\n" + body).encode()).hexdigest()[:16]  # noqa: S324 (a name)
    script = file_name.removesuffix(".lua")
    name, function = LIBRARY_PREFIX + digest, f"{script}_{digest}"
    code = (
        f"#!lua name={name}\n"
        "-- While a library loads, Redis gives it no global but redis.register_function (and\n"
        "-- redis.log): the modules are defined by the first call, then kept for the next ones.\n"
        "local function define()\n"
        f"{top}\n\n"
        f"  return function(KEYS, ARGV)\n{inner}\n  end\nend\n\n"
        "local run -- define()'s function, once the first call made it\n"
        f"redis.register_function{{\n  function_name = '{function}',\n"
        "  callback = function(keys, args)\n"
        "    if run == nil then\n      run = define()\n    end\n"
        "    return run(keys, args)\n  end,\n}\n"
    )
    return Library(name, function, code)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m worker.store.lua_loader DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name in SCRIPTS:
        (out / name).write_text(load_script(name), encoding="utf-8")
    for name in LIBRARIES:
        library = out / (name.removesuffix(".lua") + ".library.lua")
        library.write_text(load_library(name).code, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
