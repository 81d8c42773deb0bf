#!lua
--[==[
resolve_batch.lua: the stateful identity rules of docs/IDENTITY.md (contract A2-A4, A6) and the
buffer of docs/BUFFER.md, applied to one chunk of prepared operations of ONE tenant, atomically.
An executable port of worker/identity/reference.py; tests/integration/test_differential.py
checks that they agree.

This file is the main script. worker/store/lua_loader.py joins it at load time into one script:
each include line below is replaced by the module lua/resolve/<name>.lua (as a local of that
name), and "protocol" by the PROTOCOL table rendered from worker/store/protocol.py (the format
version, flag bits, codes, warning names, reply field order: the values Python and Lua must
agree on). Each module says at its top what it does; the modules share nothing but the one
`ctx` table built below.

KEYS (all share the tenant's hash tag, see worker/store/keys.py, TenantKeys.script_keys):
  [1] <p>:{t}:ids             hash: distinct id -> "P" .. parent id | person record
                              (record format 9: record_codec.lua; formats 7 and 6 still read)
  [2] <p>:{t}:members:        prefix of the members string of a root of a big tree
                              (union_find.lua)
  [3] <p>:{t}:reply:<token>   where this call's reply is kept (retry deduplication)
  [4] <p>:{t}:reply:<prev>    a reply of an earlier round, already read: deleted now
                              (== KEYS[3] if none)
  [5] <p>:{t}:buf:            prefix of the buffer's keys (buffer.lua)
  [6] <p>:{t}:rcpt:           prefix of the receipt hashes (receipts.lua)
  [7] <p>:{t}:g:              prefix of the groups' keys (groups.lua)
  [8] <p>:{t}:fold            hash: lower(id) of known ids not already lowercase (case_fold.lua)
  [9] <p>:{t}:deleted         hash: deleted id -> epoch "|" its next person id (deleted.lua)
  [10] <p>:{t}:reply:<pred>   optional: the reply of this call's predecessor in its pipelined
                              round; when it does not exist (the predecessor was refused or has
                              not run) the call is refused with "IWCHAIN" and does nothing, so a
                              tenant's calls apply in order or not at all (redis_store.py)
The members string of a root (KEYS[2] .. root), the buffer's keys (KEYS[5] .. name), the receipt
hashes (KEYS[6] .. bucket) and the groups' keys (KEYS[7] .. name) cannot all
be declared up front (roots and ids are found while the script runs), but they start with the
same "<p>:{t}:" as KEYS[1], so they hash to the same Redis Cluster slot, which is all cluster
mode requires of a script's keys.

ARGV: a header of 16 values, then the ops:
  [1] format version (PROTOCOL.format_version)   [2] ordering mode: timestamp | arrival
  [3] max distinct ids per person                [4] max properties bytes
  [5] force-upgrade delay ms                     [6] reply TTL ms (0: do not keep the reply)
  [7] now ms                                     [8] buffer delay ms (0: buffer off)
  [9] buffer max entries per id                  [10] buffer max entries per tenant
  [11] lease ms                                  [12] command: resolve | release
  [13] release limit (release: ids and leases per call)
  [14] receipt TTL ms                            [15] number of ops (release: 0)
  [16] last-seen resolution ms (rules.lua: last_seen moves for an event this much later)
then per op:
  flags (the sum of PROTOCOL.flag: 1 process person, 2 merge dangerously, 4 merge with other,
  8 bufferable), into, into's uuid5 person id, other ("" if none), other's uuid5 person id,
  ts ms, order key (ordering.lua), number of property operations k, then k triples (code, key,
  text), one per key (the text of an unset is ""):
    timestamp mode: "s" set, "o" set_once, "u" unset (decided per key in Python);
    arrival mode: "s" set (if the value changes), "o" set if absent, "u" remove if present,
    "x" a key both set and unset by the event: set if absent before it, else removed;
  then its group section (group_argv.lua: the number of groups g, and when g > 0 the tenant's
  cap on group types and g entries: type, key, key's JSON text, flags, k, k triples);
  then its source and its receipt bucket ("" and "" without a source: receipts.lua);
  and, for a bufferable op only, its ingestion time ms, its payload and its entry id.
A buffered entry keeps the op's values from its flags to the end of its group section (argv.lua),
so a later release applies its property and group operations as the op would have.

Reply: one JSON array text [[entry per op], [released entry, ...], next_due], an entry being
  [person_id, person_mode, created_at_ms (or null), is_identified, properties (an object),
   merged, person_created, warnings (names), overrides ([distinct_id, old_person_id,
   new_person_id] each), person_version (or null), person_changed, groups ({type: [key,
   properties]}), group_changes ([[type, key, version, properties], ...])]
(PROTOCOL.reply_entry_fields), a released entry [event_uuid, reason, ingested_ms, entry,
released_ms, entry_id] (PROTOCOL.released_entry_fields; buffer.lua), and next_due false (the
buffer's due times and leases were not touched) or the tenant's earliest due time or lease
deadline (null: none), which Python keeps in its due-tenants index. An op waiting in the buffer
gets the entry ["", "buffered", null, false, {}, false, false, [], [], null, false, {}, []].
An op with a source that already has a receipt gets its kept entry back and applies nothing
(receipts.lua); otherwise its entry is kept as its receipt (the whole entry: a replay gets its
groups and group_changes again).
The same text is kept at KEYS[3] for the reply TTL: a retry of a call whose reply was lost (the
connection dropped after the script ran) gets the stored reply back and applies nothing twice.

Cost: the chunk's ids are read with a few HMGETs (one per level of the trees), the receipts of
its sourced ops with one HMGET per receipt bucket, the deleted ids and case folds with one
EXISTS each (and an HGET per id only when the tenant has such a hash); every change is written
at the end with one HSET per 500 fields, a record only when its text changed; members strings
are touched only by joins and merges of trees past 8 ids; the rest is Lua.

Loading: run with EVALSHA, this script defines its modules on every call; lua_loader.py also
builds it as a function library (FUNCTION LOAD once, then FCALL): the modules are defined when
the library loads, and everything below the includes is the function's body
(redis_store.py, "How the script is called").

Atomicity: Redis does not roll a script back when it raises, so every write is deferred to
write_back.lua: malformed ARGV or corrupt data met on the way raises before anything is written.
The "#!lua" line (no allow-oom flag) makes Redis refuse the whole call up front when it is over
maxmemory. Only a foreign key of the wrong type met by the final writes could leave a chunk
half done.
]==]

--- @include "protocol"
--- @include "resolve/group_argv"
--- @include "resolve/argv"
--- @include "resolve/ordering"
--- @include "resolve/record_codec"
--- @include "resolve/union_find"
--- @include "resolve/records"
--- @include "resolve/properties"
--- @include "resolve/reply"
--- @include "resolve/groups"
--- @include "resolve/case_fold"
--- @include "resolve/deleted"
--- @include "resolve/rules"
--- @include "resolve/buffer"
--- @include "resolve/receipts"
--- @include "resolve/round"
--- @include "resolve/write_back"

-- A library loaded once (FCALL) keeps its modules between calls: their caches start empty.
record_codec.new_call()

-- The one state of the call; each module's header says which fields it reads and writes.
local ctx = {
  keys = {
    ids = KEYS[1], members = KEYS[2], reply = KEYS[3], previous_reply = KEYS[4],
    buffer = KEYS[5], receipts = KEYS[6], groups = KEYS[7], fold = KEYS[8],
    deleted = KEYS[9],
  },
  config = nil, -- argv.header
  ops = nil, -- argv.parse_ops
  values = {}, written = {}, added = {}, fresh = {}, dropped = {}, -- union_find.lua
  persons = {}, dirty = {}, -- records.lua
  queues = {}, entries_out = {}, pending_out = {}, released = {}, -- buffer.lua
  released_ids = {}, release_out = {}, buffer_touched = false,
  waiting_delta = 0, waiting_stored = nil, any_queue = nil,
  receipts_out = {}, -- receipts.lua
  folds = {}, folds_out = {}, -- case_fold.lua
  deleted = {}, -- deleted.lua
}

-- A retried call: the first attempt ran, return its reply. A pipelined call runs only after
-- its predecessor of the round did (KEYS[10]).
local stored = round.kept(ctx.keys.reply) or round.refusal(KEYS[10])
if stored then
  return stored
end

ctx.config = argv.header(ARGV)
ctx.ops = argv.parse_ops(ARGV, ctx.config)
union_find.prefetch(ctx, ctx.ops)

local entries = {}
if ctx.config.command == PROTOCOL.command.resolve then
  local unbuffered = ctx.config.buffer_delay_ms <= 0 -- buffer.apply is then rules.apply
  local answering = receipts.read(ctx) -- false: no op is answered from a receipt (no call)
  local ops = ctx.ops
  for index = 1, #ops do -- (not ipairs: a C call per op less)
    local op = ops[index]
    local entry = answering and receipts.answer(ctx, op) or nil
    if entry == nil then
      local first = #ctx.released_ids + 1
      if unbuffered then
        entry = rules.apply(ctx, op, nil)
      else
        entry = op.buffer and buffer.maybe_buffer(ctx, op) or nil
        if entry == nil then
          entry = buffer.apply(ctx, op)
        end
      end
      receipts.keep(ctx, op, entry, first)
    end
    entries[index] = entry
  end
else
  buffer.release_due(ctx)
end

return write_back.run(ctx, entries)
