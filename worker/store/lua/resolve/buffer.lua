--[[
buffer.lua: the 60-second buffer (docs/BUFFER.md). Its keys start with ctx.keys.buffer
(<p>:{t}:buf:) and so share the tenant's slot. An entry is named by its entry id (the event's
source, else its uuid and distinct id: Python's buffer.entry_id), so two events sharing a uuid
are two entries:
  q:<id>   list of the entry ids waiting for id, oldest first
  e        hash entry id -> the entry: ingestion time then the op's fields (argv.lua), as cjson
  p        hash entry id -> payload
  r        hash entry id -> its first release: reason .. " " .. released_ms .. " " .. reply entry
  due      zset id -> due time of its oldest entry
  pending  zset entry id -> lease deadline: released, not yet acknowledged
  n        the number of entries waiting
Reads happen here; every write is deferred to write_back.lua, so in between ctx.queues holds
each touched id's queue ({ stored = entries in Redis (0 once cleared), cleared, pushed = {
{entry id, entry}, ... } }), ctx.entries_out (entry id -> {entry, payload}) the entries to
write, ctx.pending_out (entry id -> lease deadline, or false: forget the lease) the leases,
ctx.release_out (entry id -> first release text) the releases to keep, ctx.released the
released entry texts in release order and ctx.released_ids their entry ids, ctx.waiting_delta
the change of n, ctx.buffer_touched whether the due times or leases may have changed.

buffer.maybe_buffer(ctx, op) -> entry text, or nil when the op is to be applied now: a
  bufferable op waits behind its id's queue, or while no person holds its id; over a cap
  (buffer_max_per_id, buffer_max_total) its id's queue is released (reason overflow) and the
  op applied with warning buffer_overflow.
buffer.apply(ctx, op) -> entry text: applies an op that does not wait (rules.apply); then, in a
  call with the buffer on, an id of it that now has a person releases its waiting entries
  (reason merge: a merge, or any event that gave it a person), into's queue first, then other's.
  In arrival mode the op's property operations come after the entries it released
  (docs/BUFFER.md, "arrival order"): rules.structure, the releases, then rules.finish. A call
  without a buffer policy releases nothing: the queues wait for their due time.
buffer.release_due(ctx): the release command: expired leases (their worker died; reason
  redelivery: the first release's reply entry and time again, nothing applied), then ids whose
  wait is over (reason timeout), release_limit of each.
buffer.release_again(ctx, entry_id): an entry released by an op answered from its receipt: if it
  is still leased, it is returned again with its first release's reason, time and reply entry,
  and leased anew.
A released entry is applied at once (rules.apply) and leased to this caller for lease_ms.
]]
local buffer = {}

local REASON = PROTOCOL.release_reason
local OVERFLOW = PROTOCOL.warning.buffer_overflow

-- Hand a released entry to this caller, leased until now + lease_ms.
local function emit(ctx, entry_id, fields, reason, released_ms, entry)
  local uuid = string.sub(fields[8], 21) -- the op's order key ends with its uuid
  ctx.released[#ctx.released + 1] = reply.released(uuid, reason, fields[1], entry, released_ms,
    entry_id)
  ctx.released_ids[#ctx.released_ids + 1] = entry_id
  ctx.pending_out[entry_id] = ctx.config.now + ctx.config.lease_ms
end

local function queue(ctx, id)
  local q = ctx.queues[id]
  if q == nil then
    q = { stored = redis.call('LLEN', ctx.keys.buffer .. 'q:' .. id), cleared = false, pushed = {} }
    ctx.queues[id] = q
  end
  return q
end

local function tenant_has_queues(ctx)
  if ctx.any_queue == nil then
    ctx.any_queue = redis.call('EXISTS', ctx.keys.buffer .. 'due') == 1
  end
  return ctx.any_queue
end

local function waiting(ctx, id)
  if not tenant_has_queues(ctx) then
    return 0
  end
  local q = queue(ctx, id)
  return q.stored + #q.pushed
end

local function total(ctx)
  if ctx.waiting_stored == nil then
    ctx.waiting_stored = tonumber(redis.call('GET', ctx.keys.buffer .. 'n') or '0')
  end
  return ctx.waiting_stored + ctx.waiting_delta
end

-- Release every waiting entry of `id`, in order: apply it now, lease it to this caller.
local function release(ctx, id, reason)
  local q = queue(ctx, id)
  local list = {}
  if q.stored > 0 then
    local ids = redis.call('LRANGE', ctx.keys.buffer .. 'q:' .. id, 0, -1)
    local entries = redis.call('HMGET', ctx.keys.buffer .. 'e', unpack(ids))
    for k, entry_id in ipairs(ids) do
      if entries[k] then
        list[#list + 1] = { entry_id, entries[k] }
      end
    end
  end
  for _, pushed in ipairs(q.pushed) do
    list[#list + 1] = pushed
  end
  ctx.waiting_delta = ctx.waiting_delta - q.stored - #q.pushed
  q.stored, q.cleared, q.pushed = 0, true, {}
  ctx.buffer_touched = true
  for k, item in ipairs(list) do
    local fields = cjson.decode(item[2])
    local op = argv.parse_op(fields, 2, k, true)
    local entry = rules.apply(ctx, op, reason == REASON.overflow and OVERFLOW or nil)
    emit(ctx, item[1], fields, reason, ctx.config.now_text, entry)
    ctx.release_out[item[1]] = reason .. ' ' .. ctx.config.now_text .. ' ' .. entry
  end
end

-- The first release of an entry: its text in ctx.release_out, else in Redis (or nil).
local function first_release(ctx, entry_id)
  local text = ctx.release_out[entry_id]
  if text == nil then
    text = redis.call('HGET', ctx.keys.buffer .. 'r', entry_id)
  end
  if not text then
    return nil
  end
  return string.match(text, '^(%S+) (%d+) (.*)$')
end

local function leased(ctx, entry_id)
  local deadline = ctx.pending_out[entry_id]
  if deadline ~= nil then
    return deadline ~= false
  end
  return redis.call('ZSCORE', ctx.keys.buffer .. 'pending', entry_id) ~= false
end

local function stored_entry(ctx, entry_id)
  local out = ctx.entries_out[entry_id]
  if out then
    return out[1]
  end
  return redis.call('HGET', ctx.keys.buffer .. 'e', entry_id)
end

function buffer.release_again(ctx, entry_id)
  if not leased(ctx, entry_id) then
    return
  end
  local text = stored_entry(ctx, entry_id)
  local reason, released_ms, entry = first_release(ctx, entry_id)
  if text and reason then
    ctx.buffer_touched = true
    emit(ctx, entry_id, cjson.decode(text), reason, released_ms, entry)
  end
end

function buffer.maybe_buffer(ctx, op)
  local config = ctx.config
  if config.buffer_delay_ms <= 0 then
    return nil
  end
  local n = waiting(ctx, op.into)
  if n == 0 and union_find.find(ctx, op.into) then
    return nil
  end
  if n >= config.buffer_max_per_id or total(ctx) >= config.buffer_max_total then
    release(ctx, op.into, REASON.overflow)
    return rules.apply(ctx, op, OVERFLOW)
  end
  local entry_id = op.entry_id
  if ctx.entries_out[entry_id] == nil
      and redis.call('HEXISTS', ctx.keys.buffer .. 'e', entry_id) == 0 then
    local entry = cjson.encode({ op.ingested, unpack(op.fields) })
    local q = queue(ctx, op.into)
    q.pushed[#q.pushed + 1] = { entry_id, entry }
    ctx.entries_out[entry_id] = { entry, op.payload }
    ctx.waiting_delta = ctx.waiting_delta + 1
    ctx.any_queue = true
    ctx.buffer_touched = true
  end
  return reply.entry('', PROTOCOL.person_mode.buffered, nil, false, '{}', false, false,
    reply.NONE, reply.NONE, nil, false, nil, nil)
end

-- Release id's queue if it has one and id now has a person; true if it did.
local function release_gained(ctx, id)
  if waiting(ctx, id) > 0 and union_find.find(ctx, id) then
    release(ctx, id, REASON.merge)
    return true
  end
  return false
end

function buffer.apply(ctx, op)
  local config = ctx.config
  if config.buffer_delay_ms <= 0 or not tenant_has_queues(ctx) then
    return rules.apply(ctx, op, nil)
  end
  if config.timestamp_mode or not op.process then
    local entry = rules.apply(ctx, op, nil)
    release_gained(ctx, op.into)
    if op.merge then
      release_gained(ctx, op.other)
    end
    return entry
  end
  local part = rules.structure(ctx, op, nil)
  for _, id in ipairs(op.merge and { op.into, op.other } or { op.into }) do
    if not part.settled and waiting(ctx, id) > 0 and union_find.find(ctx, id) then
      rules.settle(ctx, part)
    end
    release_gained(ctx, id)
  end
  return rules.finish(ctx, op, part)
end

function buffer.release_due(ctx)
  local config = ctx.config
  ctx.buffer_touched = true
  local expired = redis.call('ZRANGEBYSCORE', ctx.keys.buffer .. 'pending', '-inf', config.now,
    'LIMIT', 0, config.release_limit)
  if #expired > 0 then
    local entries = redis.call('HMGET', ctx.keys.buffer .. 'e', unpack(expired))
    for k, entry_id in ipairs(expired) do
      if entries[k] then
        local fields = cjson.decode(entries[k])
        local _, released_ms, entry = first_release(ctx, entry_id)
        if entry == nil then -- released by a script that kept no release: apply it again
          released_ms = config.now_text
          entry = rules.apply(ctx, argv.parse_op(fields, 2, k, true), nil)
          ctx.release_out[entry_id] = REASON.redelivery .. ' ' .. released_ms .. ' ' .. entry
        end
        emit(ctx, entry_id, fields, REASON.redelivery, released_ms, entry)
      else
        ctx.pending_out[entry_id] = false
      end
    end
  end
  local due = redis.call('ZRANGEBYSCORE', ctx.keys.buffer .. 'due', '-inf', config.now,
    'LIMIT', 0, config.release_limit)
  for _, id in ipairs(due) do
    release(ctx, id, REASON.timeout)
  end
end

return buffer
