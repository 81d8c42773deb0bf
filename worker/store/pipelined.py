"""Sends a round of script calls (``EVALSHA`` or ``FCALL``: ``script_call.py``) without waiting
for each reply, and yields the replies in order as they arrive, so the caller decodes reply
``k`` while Redis runs call ``k + 1``.

On a single Redis (or a primary behind Sentinel) the whole round is packed into one write on one
pooled connection (``Round.send``, which returns at once: the caller may work while Redis runs
the round, then read the replies with ``Round.replies``); Redis runs a connection's commands in
the order sent, so each tenant's calls run in order. On a Redis Cluster client (whose tenants
live on different nodes, with ``MOVED`` handled by the client) and when a caller asks for it,
the calls go one at a time instead (nothing is sent before ``replies``), and a call whose group
(tenant) already had an error reply is not sent: it gets ``SKIPPED``, as a pipelined call would
get the script's chain refusal.

A command may name its own script (``scripts``: the store's commits of the rules computed in the
worker, ``commit_batch.lua``, beside resolve calls); the others call the round's ``script``.

A round may lead with a ``preamble`` of other commands (the store's pending ``HDEL``s of
receipts): sent first in the same write, their replies read and dropped, errors included.

An error reply (``NOSCRIPT``, a script error, ``BUSY``...) is yielded as its ``ResponseError``
instance, not raised. A connection failure (reset, timeout) is raised, after the connection was
dropped: the replies not yielded yet are unknown (their calls may or may not have run).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator, Sequence
from typing import Any, cast

import redis

from worker.store.resp import pack_script_round
from worker.store.script_call import ScriptCall

CHAIN_BROKEN = "IWCHAIN"
"""First word of the script's refusal of a call whose predecessor in its round did not run
(``resolve_batch.lua``, KEYS[10])."""

SKIPPED = redis.exceptions.ResponseError(f"{CHAIN_BROKEN} not sent: an earlier call failed")
"""What a call not sent (one at a time, after its group's error) gets instead of a reply."""

Command = tuple[str, list[bytes], list[bytes]]
"""(group, KEYS, ARGV) of one script call: the group is the tenant whose calls chain."""


class Round:
    """One round of calls, not sent yet. ``send`` writes the whole round and returns at once,
    so the caller can work while Redis runs it; ``replies`` then yields the replies in order.
    Sent one at a time (a cluster, or ``one_at_a_time``), nothing goes before ``replies``.

    A failure to send (connection refused or reset) is not raised by ``send``: ``replies``
    raises it, where the caller handles every connection failure of the round. ``close``
    (also when ``replies`` ends) gives the connection back, dropping it if replies were left
    unread."""

    __slots__ = (
        "_client",
        "_commands",
        "_complete",
        "_connection",
        "_error",
        "_one_at_a_time",
        "_preamble",
        "_script",
        "_scripts",
        "_sent",
    )

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        script: ScriptCall,
        commands: Sequence[Command],
        *,
        one_at_a_time: bool = False,
        preamble: Sequence[Sequence[bytes]] = (),
        scripts: Sequence[ScriptCall | None] = (),
    ) -> None:
        self._client = client
        self._script = script
        self._commands = commands
        self._scripts = [
            (scripts[i] if i < len(scripts) else None) or script for i in range(len(commands))
        ]
        """the script each command calls"""
        self._one_at_a_time = one_at_a_time or isinstance(client, redis.RedisCluster)
        self._preamble = preamble
        self._connection: Any = None
        self._sent = False
        self._complete = False
        self._error: BaseException | None = None

    @property
    def sent(self) -> bool:
        """Whether the round was written (or its write failed)."""
        return self._sent

    def send(self) -> None:
        """Write the round on a pooled connection (pipelined rounds only; once)."""
        if self._sent or self._one_at_a_time:
            return
        self._sent = True
        client = cast(redis.Redis, self._client)
        pool = client.connection_pool
        try:
            self._connection = pool.get_connection()
            packed = _pack(self._scripts, self._commands, self._preamble)
            self._connection.send_packed_command(packed)
        except (redis.exceptions.RedisError, OSError) as exc:
            self._error = exc
            self.close()

    def replies(self) -> Generator[object, None, None]:
        """The reply (or ``ResponseError``) of each command, in order."""
        if self._one_at_a_time:
            for command in self._preamble:
                with contextlib.suppress(redis.exceptions.ResponseError):
                    self._client.execute_command(*command)  # type: ignore[no-untyped-call]
            yield from _one_at_a_time(self._client, self._scripts, self._commands)
            return
        self.send()
        try:
            if self._error is not None:
                raise self._error
            connection = self._connection
            for _ in self._preamble:
                with contextlib.suppress(redis.exceptions.ResponseError):
                    connection.read_response()
            for _ in self._commands:
                try:
                    reply: object = connection.read_response()
                except redis.exceptions.ResponseError as exc:
                    reply = exc
                yield reply
            self._complete = True
        finally:
            self.close()

    def close(self) -> None:
        """Give the connection back (dropped if replies are left unread on it)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if not self._complete:  # replies left unread on the socket: the connection is unusable
            connection.disconnect()
        cast(redis.Redis, self._client).connection_pool.release(connection)


def _pack(
    scripts: Sequence[ScriptCall],
    commands: Sequence[Command],
    preamble: Sequence[Sequence[bytes]] = (),
) -> list[bytes]:
    """The round as RESP bytes, in one piece per run of commands calling one script, as hiredis
    (a dependency, ``redis[hiredis]``) packs each command (``resp``, compiled, writes its
    bytes); redis-py would first copy every argument in Python, all bytes already."""
    if not commands:
        return [pack_script_round(b"", b"", [], preamble)]
    pieces: list[bytes] = []
    start = 0
    for end in range(1, len(commands) + 1):
        if end < len(commands) and scripts[end] is scripts[start]:
            continue
        script = scripts[start]
        calls = [(keys, args) for _, keys, args in commands[start:end]]
        lead = preamble if start == 0 else ()
        pieces.append(pack_script_round(script.command, script.target, calls, lead))
        start = end
    return pieces


def _one_at_a_time(
    client: redis.Redis | redis.RedisCluster,
    scripts: Sequence[ScriptCall],
    commands: Sequence[Command],
) -> Iterator[object]:
    failed: set[str] = set()
    for script, (group, keys, args) in zip(scripts, commands, strict=True):
        if group in failed:
            yield SKIPPED
            continue
        try:
            reply = cast(
                object,
                client.execute_command(  # type: ignore[no-untyped-call]
                    # by its name in text: redis-py's cluster client reads an EVALSHA's keys
                    # itself only so (bytes: a COMMAND GETKEYS round trip first)
                    script.command.decode(),
                    script.target,
                    len(keys),
                    *keys,
                    *args,
                ),
            )
        except redis.exceptions.ResponseError as exc:
            failed.add(group)
            reply = exc
        yield reply


def is_chain_refusal(error: redis.exceptions.ResponseError) -> bool:
    """Whether ``error`` is the refusal of a call whose predecessor did not run."""
    return str(error).startswith(CHAIN_BROKEN)
