"""The resolve script in Python (pure: no I/O): step 2 of docs/ARCHITECTURE.md, *Rules in the
worker*. The store runs it when ``redis.rules`` is ``worker`` (``commit_plan.py``).

``run(state, call)`` does what ``lua/resolve_batch.lua`` does for one call (``parse_call`` reads
its ARGV, either command), on the tenant's data as ``state`` gives it, and returns the reply
entries and released entries the script would return (JSON texts in the script's format,
``protocol.REPLY_ENTRY_FIELDS``) and the writes it would make. It is a port of the script's
modules, one module here for each there, with the same names, so the two read side by side:

    call.py        argv.lua, group_argv.lua
    context.py     the call's ctx: union_find.lua, records.lua, case_fold.lua, deleted.lua
    properties.py  ordering.lua, properties.lua
    reply.py       reply.lua
    groups.py      groups.lua
    rules.py       rules.lua
    buffer.py      buffer.lua
    receipts.py    receipts.lua
    resolve.py     resolve_batch.lua's body and write_back.lua (``run``)
    state.py       what the engine reads (``TenantState``) and returns (``Outcome``, ``Writes``)

``tests/integration/test_engine.py`` runs the engine and the script from the same data, call by
call, and requires the same answers and the same data after.

What it covers: both commands (resolve, release), the buffer (queues, overflow, releases in
either ordering mode, leases and redeliveries), groups (types, group properties, memberships),
receipts (an op with a source is answered from the receipt of an earlier call or op, the
entries it released that are still leased returned again), deletions and case folds, on records
of formats 9 and 7. A format 6 record (a release older than format 7) raises ``Unsupported``:
the script migrates it. The reply's next due time is read after the writes (``write_back.lua``):
``Outcome.buffer_touched`` says whether the reply reports it; the writer computes it. Records are
written in format 9 (``record_format.py``); a snapshot's keys come in the order Python's dicts
keep them (the script's in its tables' order: the same JSON object, other bytes).
"""

from __future__ import annotations

from worker.store.engine.call import Call, parse_call
from worker.store.engine.resolve import run
from worker.store.engine.state import EngineError, Outcome, TenantState, Unsupported, Writes

__all__ = [
    "Call",
    "EngineError",
    "Outcome",
    "TenantState",
    "Unsupported",
    "Writes",
    "parse_call",
    "run",
]
