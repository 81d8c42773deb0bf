"""The 60-second buffer (``buffer.lua``; docs/BUFFER.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from worker.store import protocol, record_format
from worker.store.engine.call import Op, parse_op
from worker.store.engine.context import Ctx, Queue, as_bytes
from worker.store.engine.reply import entry, json_strings
from worker.store.engine.rules import apply, finish, settle, structure
from worker.store.engine.state import EngineError, Writes

_REASON_MERGE = protocol.RELEASE_REASONS["merge"]


_REASON_TIMEOUT = protocol.RELEASE_REASONS["timeout"]


_REASON_OVERFLOW = protocol.RELEASE_REASONS["overflow"]


_REASON_REDELIVERY = protocol.RELEASE_REASONS["redelivery"]


BUFFERED = entry(
    "", protocol.PERSON_MODE_BUFFERED, None, False, b"{}", False, False, (), (), None, False
)


def entry_fields(text: bytes) -> list[bytes]:
    try:
        fields = json.loads(text)
    except ValueError as exc:
        raise EngineError("an unreadable buffered entry") from exc
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise EngineError("an unreadable buffered entry")
    return [as_bytes(f) for f in fields]


def _emit(
    ctx: Ctx,
    entry_id: bytes,
    fields: Sequence[bytes],
    reason: str,
    released_ms: bytes,
    entry_text: bytes,
) -> None:
    """Hand a released entry to this caller, leased until now + lease_ms."""
    event_uuid = fields[7][20:]  # the op's order key ends with its uuid
    ctx.released.append(
        b"["
        + record_format.quote(event_uuid)
        + b',"'
        + reason.encode()
        + b'",'
        + fields[0]
        + b","
        + entry_text
        + b","
        + released_ms
        + b","
        + record_format.quote(entry_id)
        + b"]"
    )
    ctx.released_ids.append(entry_id)
    ctx.pending_out[entry_id] = ctx.config.now + ctx.config.lease_ms


def _queue(ctx: Ctx, distinct_id: bytes) -> Queue:
    q = ctx.queues.get(distinct_id)
    if q is None:
        q = ctx.queues[distinct_id] = Queue(len(ctx.state.queue(distinct_id)))
    return q


def _has_queues(ctx: Ctx) -> bool:
    if ctx.any_queue is None:
        ctx.any_queue = ctx.state.has_queues()
    return ctx.any_queue


def _waiting(ctx: Ctx, distinct_id: bytes) -> int:
    if not _has_queues(ctx):
        return 0
    q = _queue(ctx, distinct_id)
    return q.stored + len(q.pushed)


def _total(ctx: Ctx) -> int:
    if ctx.waiting_stored is None:
        ctx.waiting_stored = ctx.state.waiting_count()
    return ctx.waiting_stored + ctx.waiting_delta


def _release(ctx: Ctx, distinct_id: bytes, reason: str) -> None:
    """Release every waiting entry of ``distinct_id``, in order: applied now, leased to this
    caller."""
    q = _queue(ctx, distinct_id)
    items: list[tuple[bytes, bytes]] = []
    if q.stored > 0:
        for entry_id in ctx.state.queue(distinct_id):
            text = ctx.state.buffered_entry(entry_id)
            if text is not None:  # (one acknowledged meanwhile is gone)
                items.append((entry_id, text))
    items += q.pushed
    ctx.waiting_delta -= q.stored + len(q.pushed)
    q.stored, q.cleared, q.pushed = 0, True, []
    ctx.buffer_touched = True
    for index, (entry_id, text) in enumerate(items):
        fields = entry_fields(text)
        op, _ = parse_op(fields, 1, index + 1, stored=True)
        warning = protocol.WARNING_BUFFER_OVERFLOW if reason == _REASON_OVERFLOW else None
        answered = apply(ctx, op, warning)
        now = ctx.config.now_text
        _emit(ctx, entry_id, fields, reason, now, answered)
        ctx.release_out[entry_id] = reason.encode() + b" " + now + b" " + answered


def _first_release(ctx: Ctx, entry_id: bytes) -> tuple[str, bytes, bytes] | None:
    text = ctx.release_out.get(entry_id)
    if text is None:
        text = ctx.state.first_release(entry_id)
    if text is None:
        return None
    parts = text.split(b" ", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[0]:
        return None
    return parts[0].decode(), parts[1], parts[2]


def _leased(ctx: Ctx, entry_id: bytes) -> bool:
    if entry_id in ctx.pending_out:
        return ctx.pending_out[entry_id] is not None
    return ctx.state.leased(entry_id)


def _stored_entry(ctx: Ctx, entry_id: bytes) -> bytes | None:
    out = ctx.entries_out.get(entry_id)
    if out is not None:
        return out[0]
    return ctx.state.buffered_entry(entry_id)


def release_again(ctx: Ctx, entry_id: bytes) -> None:
    """``buffer.release_again``: an entry released by an op answered from its receipt, still
    leased, is returned again with its first release's reason, time and reply entry."""
    if not _leased(ctx, entry_id):
        return
    text = _stored_entry(ctx, entry_id)
    first = _first_release(ctx, entry_id)
    if text is not None and first is not None:
        ctx.buffer_touched = True
        reason, released_ms, answered = first
        _emit(ctx, entry_id, entry_fields(text), reason, released_ms, answered)


def maybe_buffer(ctx: Ctx, op: Op) -> bytes | None:
    """``buffer.maybe_buffer``: the buffered entry when the op waits, else None (apply it)."""
    config = ctx.config
    if config.buffer_delay_ms <= 0:
        return None
    n = _waiting(ctx, op.into)
    if n == 0 and ctx.find(op.into) is not None:
        return None
    if n >= config.buffer_max_per_id or _total(ctx) >= config.buffer_max_total:
        _release(ctx, op.into, _REASON_OVERFLOW)
        return apply(ctx, op, protocol.WARNING_BUFFER_OVERFLOW)
    entry_id = op.entry_id
    if entry_id not in ctx.entries_out and ctx.state.buffered_entry(entry_id) is None:
        text = json_strings([op.ingested, *op.fields])
        _queue(ctx, op.into).pushed.append((entry_id, text))
        ctx.entries_out[entry_id] = (text, op.payload)
        ctx.waiting_delta += 1
        ctx.any_queue = True
        ctx.buffer_touched = True
    return BUFFERED


def _release_gained(ctx: Ctx, distinct_id: bytes) -> bool:
    if _waiting(ctx, distinct_id) > 0 and ctx.find(distinct_id) is not None:
        _release(ctx, distinct_id, _REASON_MERGE)
        return True
    return False


def buffer_apply(ctx: Ctx, op: Op) -> bytes:
    """``buffer.apply``: an op that does not wait, applied; then, with the buffer on, an id of
    it that now has a person releases its waiting entries (arrival mode: between the op's
    structure and its property operations)."""
    config = ctx.config
    if config.buffer_delay_ms <= 0 or not _has_queues(ctx):
        return apply(ctx, op)
    if config.timestamp_mode or not op.process:
        answered = apply(ctx, op)
        _release_gained(ctx, op.into)
        if op.merge:
            _release_gained(ctx, op.other)
        return answered
    part = structure(ctx, op, None)
    for distinct_id in (op.into, op.other) if op.merge else (op.into,):
        if not part.settled and _waiting(ctx, distinct_id) > 0 and ctx.find(distinct_id):
            settle(ctx, part)
        _release_gained(ctx, distinct_id)
    return finish(ctx, op, part)


def release_due(ctx: Ctx) -> None:
    """``buffer.release_due``: expired leases (reason redelivery: the first release again),
    then ids whose wait is over (reason timeout), ``release_limit`` of each."""
    config = ctx.config
    ctx.buffer_touched = True
    for index, entry_id in enumerate(ctx.state.expired_leases(config.now, config.release_limit)):
        text = ctx.state.buffered_entry(entry_id)
        if text is None:
            ctx.pending_out[entry_id] = None
            continue
        fields = entry_fields(text)
        first = _first_release(ctx, entry_id)
        if first is None:  # released by a script that kept no release: apply it again
            released_ms = config.now_text
            op, _ = parse_op(fields, 1, index + 1, stored=True)
            answered = apply(ctx, op)
            ctx.release_out[entry_id] = (
                _REASON_REDELIVERY.encode() + b" " + released_ms + b" " + answered
            )
        else:
            _, released_ms, answered = first
        _emit(ctx, entry_id, fields, _REASON_REDELIVERY, released_ms, answered)
    for distinct_id in ctx.state.due_ids(config.now, config.release_limit):
        _release(ctx, distinct_id, _REASON_TIMEOUT)


def buffer_writes(ctx: Ctx, writes: Writes) -> None:
    """``write_back.lua``'s buffer part."""
    for distinct_id, q in ctx.queues.items():
        if q.cleared:
            writes.queues_cleared.append(distinct_id)
        if q.pushed:
            writes.queues_pushed[distinct_id] = [entry_id for entry_id, _ in q.pushed]
            if q.stored == 0:  # a new queue: due once its first entry has waited long enough
                first = int(entry_fields(q.pushed[0][1])[0])
                writes.due_added[distinct_id] = first + ctx.config.buffer_delay_ms
    writes.entries = dict(ctx.entries_out)
    writes.releases = dict(ctx.release_out)
    writes.leases = dict(ctx.pending_out)
    writes.waiting_delta = ctx.waiting_delta
