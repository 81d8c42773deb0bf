"""Sends a round of ``EVALSHA`` calls without waiting for each reply, and yields the replies in
order as they arrive, so the caller decodes reply ``k`` while Redis runs call ``k + 1``.

On a single Redis (or a primary behind Sentinel) the whole round is packed into one write on one
pooled connection; Redis runs a connection's commands in the order sent, so each tenant's calls
run in order. On a Redis Cluster client (whose tenants live on different nodes, with ``MOVED``
handled by the client) and when a caller asks for it, the calls go one at a time instead, and a
call whose group (tenant) already had an error reply is not sent: it gets ``SKIPPED``, as a
pipelined call would get the script's chain refusal.

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
from hiredis import pack_command
from redis.commands.core import Script

CHAIN_BROKEN = "IWCHAIN"
"""First word of the script's refusal of a call whose predecessor in its round did not run
(``resolve_batch.lua``, KEYS[10])."""

SKIPPED = redis.exceptions.ResponseError(f"{CHAIN_BROKEN} not sent: an earlier call failed")
"""What a call not sent (one at a time, after its group's error) gets instead of a reply."""

Command = tuple[str, list[bytes], list[bytes]]
"""(group, KEYS, ARGV) of one ``EVALSHA``: the group is the tenant whose calls chain."""


def replies(
    client: redis.Redis | redis.RedisCluster,
    script: Script,
    commands: Sequence[Command],
    *,
    one_at_a_time: bool = False,
    preamble: Sequence[Sequence[bytes]] = (),
) -> Generator[object, None, None]:
    """The reply (or ``ResponseError``) of each command, in order (see the module docstring)."""
    if one_at_a_time or isinstance(client, redis.RedisCluster):
        for command in preamble:
            with contextlib.suppress(redis.exceptions.ResponseError):
                client.execute_command(*command)  # type: ignore[no-untyped-call]
        yield from _one_at_a_time(client, script, commands)
        return
    pool = client.connection_pool
    connection = pool.get_connection()
    complete = False
    try:
        packed = _pack(script, commands, preamble)
        connection.send_packed_command(packed)  # type: ignore[no-untyped-call]
        for _ in preamble:
            with contextlib.suppress(redis.exceptions.ResponseError):
                connection.read_response()
        for _ in commands:
            try:
                reply: object = connection.read_response()
            except redis.exceptions.ResponseError as exc:
                reply = exc
            yield reply
        complete = True
    finally:
        if not complete:  # replies left unread on the socket: the connection is unusable
            connection.disconnect()  # type: ignore[no-untyped-call]
        pool.release(connection)


def _pack(
    script: Script, commands: Sequence[Command], preamble: Sequence[Sequence[bytes]] = ()
) -> list[bytes]:
    """The round as RESP bytes, in one piece: hiredis (a dependency, ``redis[hiredis]``) packs
    each command in C; redis-py would first copy every argument in Python, all bytes already."""
    sha = script.sha.encode() if isinstance(script.sha, str) else script.sha
    return [
        b"".join(
            [
                *(pack_command(cast(Any, tuple(command))) for command in preamble),
                *(
                    pack_command(cast(Any, (b"EVALSHA", sha, len(keys), *keys, *args)))
                    for _, keys, args in commands
                ),
            ]
        )
    ]


def _one_at_a_time(
    client: redis.Redis | redis.RedisCluster, script: Script, commands: Sequence[Command]
) -> Iterator[object]:
    failed: set[str] = set()
    for group, keys, args in commands:
        if group in failed:
            yield SKIPPED
            continue
        try:
            reply = cast(object, client.evalsha(script.sha, len(keys), *keys, *args))
        except redis.exceptions.ResponseError as exc:
            failed.add(group)
            reply = exc
        yield reply


def is_chain_refusal(error: redis.exceptions.ResponseError) -> bool:
    """Whether ``error`` is the refusal of a call whose predecessor did not run."""
    return str(error).startswith(CHAIN_BROKEN)
