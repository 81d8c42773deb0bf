"""Replay receipts (``receipts.lua``; docs/IDENTITY.md, "Replays")."""

from __future__ import annotations

import json

from worker.store.engine.buffer import release_again
from worker.store.engine.call import Op
from worker.store.engine.context import Ctx, as_bytes
from worker.store.engine.reply import json_strings
from worker.store.engine.state import EngineError


def read_receipts(ctx: Ctx) -> None:
    """The receipt of every op with a source, read before anything is applied."""
    for op in ctx.ops:
        if op.source != b"" and (op.bucket, op.source) not in ctx.receipts_in:
            ctx.receipts_in[(op.bucket, op.source)] = ctx.state.receipt(op.bucket, op.source)


def answer(ctx: Ctx, op: Op) -> bytes | None:
    """``receipts.answer``: the entry kept for the op's source (by an earlier call, or by an
    earlier op of this one), or None; the entries it released that are still leased are
    returned again."""
    if op.source == b"":
        return None
    text = ctx.receipts_in.get((op.bucket, op.source))
    if text is None:
        return None
    answered, _, ids = text.partition(b"\n")
    if ctx.config.buffer_delay_ms > 0:
        ctx.buffer_touched = True  # a replay reports the due time again
    if ids:
        try:
            released = json.loads(ids)
        except ValueError as exc:
            raise EngineError(f"an unreadable receipt for {op.source!r}") from exc
        for entry_id in released:
            release_again(ctx, as_bytes(entry_id))
    return answered


def keep(ctx: Ctx, op: Op, entry_text: bytes, first: int) -> None:
    """``receipts.keep``: the entry, and the ids of the entries it released (from index
    ``first`` of ``ctx.released_ids``), as the op's receipt."""
    if op.source == b"":
        return
    text = entry_text
    if first < len(ctx.released_ids):
        text += b"\n" + json_strings(ctx.released_ids[first:])
    ctx.receipts_out.setdefault(op.bucket, []).append((op.source, text))
    ctx.receipts_in[(op.bucket, op.source)] = text
