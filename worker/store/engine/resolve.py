"""One call, from its ops to its reply and writes: ``resolve_batch.lua``'s body and
``write_back.lua``."""

from __future__ import annotations

from worker.store import record_format
from worker.store.engine.buffer import buffer_apply, buffer_writes, maybe_buffer, release_due
from worker.store.engine.cache import DecodeCache
from worker.store.engine.call import Call
from worker.store.engine.context import Ctx
from worker.store.engine.groups import group_writes
from worker.store.engine.receipts import answer, keep, read_receipts
from worker.store.engine.rules import apply
from worker.store.engine.state import Outcome, TenantState, Writes


def run(state: TenantState, call: Call, cache: DecodeCache | None = None) -> Outcome:
    """The call's reply entries, released entries and writes (``resolve_batch.lua``'s body and
    ``write_back.lua``); ``cache``: records and property states decoded or encoded before
    (``cache.py``), kept across calls."""
    ctx = Ctx(state, call.config, call.ops, cache)
    entries: list[bytes] = []
    if call.config.release:
        release_due(ctx)
    else:
        read_receipts(ctx)
        unbuffered = call.config.buffer_delay_ms <= 0
        for op in call.ops:
            answered = answer(ctx, op)
            if answered is None:
                first = len(ctx.released_ids)
                if unbuffered:
                    answered = apply(ctx, op)
                else:
                    answered = maybe_buffer(ctx, op) if op.buffer else None
                    if answered is None:
                        answered = buffer_apply(ctx, op)
                keep(ctx, op, answered, first)
            entries.append(answered)
    writes = Writes(folds=list(ctx.folds_out), receipts=ctx.receipts_out)
    group_writes(ctx, writes)
    buffer_writes(ctx, writes)
    writes.members_deleted = set(ctx.dropped)
    for root, ids in ctx.added.items():
        if root in ctx.persons and ids:
            writes.members_appended[root] = record_format.members_text(ids)
            if root in ctx.fresh and root not in ctx.dropped:
                writes.members_fresh.add(root)
    for root in ctx.dirty:
        text = ctx.encode(ctx.persons[root], root)
        if text != ctx.values.get(root):
            ctx.put(root, text)
    for distinct_id in ctx.written:
        value = ctx.values[distinct_id]
        if value is not None:
            writes.ids[distinct_id] = value
    return Outcome(entries, writes, ctx.released, ctx.buffer_touched)
