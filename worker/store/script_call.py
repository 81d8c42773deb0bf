"""How the store calls its resolve script (``redis.script_command``): ``EVALSHA`` of the joined
script, or ``FCALL`` of the same code loaded once as a function library.

A script run with ``EVALSHA`` defines its modules (closures, tables, patterns: fifteen of them)
on every call, about 340,000 instructions of Redis's time a call, 5% of a call of 48 ops
(docs/BENCHMARKS.md, section 5). A function library keeps them: they are defined by its first
call and reused by every later one (``lua_loader.load_library``). Both run the same rules on
the same keys and answer alike (tests/integration/test_script_call.py).

``auto``, the default, calls the library on a single Redis (or a Sentinel primary) that takes
``FUNCTION LOAD``, and falls back to ``EVALSHA`` where it cannot: an ACL user without
``FUNCTION LOAD``, a Redis-compatible server without functions, and a Redis Cluster client (redis-py
finds an ``FCALL``'s slot with a ``COMMAND GETKEYS`` round trip per call; it reads an
``EVALSHA``'s keys itself). ``fcall`` insists (a refused ``FUNCTION LOAD`` stops the worker);
``evalsha`` never loads a library.

A Redis that lost the script or the library (a restart without persistence, ``SCRIPT FLUSH``,
``FUNCTION FLUSH``) answers ``NOSCRIPT`` or ``Function not found``: the store loads it again and
sends the calls that did not run (``missing``, ``load``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import redis

from worker.store.lua_loader import Library

FUNCTION_NOT_FOUND: Final = "Function not found"
"""Redis's error for an ``FCALL`` of a function it does not hold."""


class ScriptCommand(StrEnum):
    """``redis.script_command``: which command calls the resolve script."""

    AUTO = "auto"
    FCALL = "fcall"
    EVALSHA = "evalsha"


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """The command and its first argument for each call of the script, and how to (re)load
    it: ``EVALSHA <sha1>`` of a script, or ``FCALL <function>`` of a library."""

    command: bytes
    target: bytes
    code: str
    """the script, or the library's ``FUNCTION LOAD`` text"""

    @classmethod
    def evalsha(cls, script: str) -> ScriptCall:
        sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 (Redis's script id)
        return cls(b"EVALSHA", sha.encode(), script)

    @classmethod
    def fcall(cls, library: Library) -> ScriptCall:
        return cls(b"FCALL", library.function.encode(), library.code)

    @property
    def is_function(self) -> bool:
        return self.command == b"FCALL"

    def missing(self, error: redis.exceptions.ResponseError) -> bool:
        """Whether ``error`` says Redis does not hold the script (or library): load it, then
        send the call again (it did not run)."""
        if self.is_function:
            return str(error).startswith(FUNCTION_NOT_FOUND)
        return isinstance(error, redis.exceptions.NoScriptError)

    def load(self, client: redis.Redis | redis.RedisCluster) -> None:
        """Load the script or library (a library already loaded is left as it is: its name
        is the digest of its code). Raises what redis-py raises."""
        if not self.is_function:
            client.script_load(self.code)
            return
        try:
            client.function_load(self.code)
        except redis.exceptions.ResponseError as exc:
            if "already exists" not in str(exc):
                raise
