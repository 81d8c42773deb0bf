--[[
buffer.lua: the 60-second buffer (docs/BUFFER.md). Its keys start with ctx.keys.buffer
(<p>:{t}:buf:) and so share the tenant's slot:
  q:<id>   list of the uuids of the entries waiting for id, oldest first
  e        hash uuid -> the entry: ingestion time then the op's fields (argv.lua), as cjson
  p        hash uuid -> payload
  due      zset id -> due time of its oldest entry
  pending  zset uuid -> lease deadline: released, not yet acknowledged
  n        the number of entries waiting
Reads happen here; every write is deferred to write_back.lua, so in between ctx.queues holds
each touched id's queue ({ stored = entries in Redis (0 once cleared), cleared, pushed = {
{uuid, entry}, ... } }), ctx.entries_out (uuid -> {entry, payload}) the entries to write,
ctx.pending_out (uuid -> lease deadline, or false: forget the lease) the leases, ctx.released
the released entry texts in release order, ctx.waiting_delta the change of n.

buffer.maybe_buffer(ctx, op) -> entry text, or nil when the op is to be applied now: a
  bufferable op waits behind its id's queue, or while no person holds its id; over a cap
  (buffer_max_per_id, buffer_max_total) its id's queue is released (reason overflow) and the
  op applied with warning buffer_overflow.
buffer.release_gained(ctx, op): after an op, an id of it that now has a person releases its
  waiting entries (reason merge: a merge, or any event that gave it a person).
buffer.release_due(ctx): the release command: expired leases (their worker died; reason
  redelivery), then ids whose wait is over (reason timeout), release_limit of each.
A released entry is applied at once (rules.apply) and leased to this caller for lease_ms.
]]
local buffer = {}

local REASON = PROTOCOL.release_reason
local OVERFLOW = PROTOCOL.warning.buffer_overflow

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
    local uuids = redis.call('LRANGE', ctx.keys.buffer .. 'q:' .. id, 0, -1)
    local entries = redis.call('HMGET', ctx.keys.buffer .. 'e', unpack(uuids))
    for k, uuid in ipairs(uuids) do
      if entries[k] then
        list[#list + 1] = { uuid, entries[k] }
      end
    end
  end
  for _, pushed in ipairs(q.pushed) do
    list[#list + 1] = pushed
  end
  ctx.waiting_delta = ctx.waiting_delta - q.stored - #q.pushed
  q.stored, q.cleared, q.pushed = 0, true, {}
  for k, item in ipairs(list) do
    local fields = cjson.decode(item[2])
    local op = argv.parse_op(fields, 2, k)
    local entry = rules.apply(ctx, op, reason == REASON.overflow and OVERFLOW or nil)
    ctx.released[#ctx.released + 1] = reply.released(item[1], reason, fields[1], entry)
    ctx.pending_out[item[1]] = ctx.config.now + ctx.config.lease_ms
  end
end

local function uuid_of(op)
  return string.sub(op.ord, 21)
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
  local uuid = uuid_of(op)
  if ctx.entries_out[uuid] == nil
      and redis.call('HEXISTS', ctx.keys.buffer .. 'e', uuid) == 0 then
    local entry = cjson.encode({ op.ingested, unpack(op.fields) })
    local q = queue(ctx, op.into)
    q.pushed[#q.pushed + 1] = { uuid, entry }
    ctx.entries_out[uuid] = { entry, op.payload }
    ctx.waiting_delta = ctx.waiting_delta + 1
    ctx.any_queue = true
  end
  return reply.entry({
    person_id = '', person_mode = PROTOCOL.person_mode.buffered, is_identified = false,
    properties = '{}', merged = false, person_created = false,
    warnings = reply.NONE, overrides = reply.NONE,
  })
end

function buffer.release_gained(ctx, op)
  if not tenant_has_queues(ctx) then
    return
  end
  if waiting(ctx, op.into) > 0 and union_find.find(ctx, op.into) then
    release(ctx, op.into, REASON.merge)
  end
  if op.merge and waiting(ctx, op.other) > 0 and union_find.find(ctx, op.other) then
    release(ctx, op.other, REASON.merge)
  end
end

function buffer.release_due(ctx)
  local config = ctx.config
  local expired = redis.call('ZRANGEBYSCORE', ctx.keys.buffer .. 'pending', '-inf', config.now,
    'LIMIT', 0, config.release_limit)
  if #expired > 0 then
    local entries = redis.call('HMGET', ctx.keys.buffer .. 'e', unpack(expired))
    for k, uuid in ipairs(expired) do
      if entries[k] then
        local fields = cjson.decode(entries[k])
        local entry = rules.apply(ctx, argv.parse_op(fields, 2, k), nil)
        ctx.released[#ctx.released + 1] = reply.released(uuid, REASON.redelivery, fields[1],
          entry)
        ctx.pending_out[uuid] = config.now + config.lease_ms
      else
        ctx.pending_out[uuid] = false
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
