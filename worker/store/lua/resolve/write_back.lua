--[[
write_back.lua: every write of the call, at its end, so that malformed ARGV or corrupt data met
before raises with nothing written (Redis does not roll a script back).

write_back.run(ctx, entries) -> the reply text. In order: deletes a reply of an earlier round
  (ctx.keys.previous_reply, unless it is this call's), the members keys of ctx.dropped;
  APPENDs ctx.added of each root still holding a person to its members string (union_find.lua;
  one of ctx.fresh is deleted first); encodes the records of ctx.dirty (a record whose text did
  not change is not written); writes every field of ctx.written with HSETs of up to 500
  fields; the buffer's
  queues (DEL/ZREM of cleared ones, RPUSH of pushed entries, ZADD due of a new queue: its
  first entry's ingestion time + buffer_delay_ms), entries and payloads, first releases,
  leases, the count n; the groups (groups.lua) and the new case folds (case_fold.lua); the
  receipts (HSET, then PEXPIRE receipt_ttl_ms of each hash written); and keeps the reply at
  ctx.keys.reply for reply_ttl_ms (when > 0). The reply's next_due (reply.whole) is read after
  those writes, when ctx.buffer_touched.
]]
local write_back = {}

local function write_union_find(ctx)
  local keys = ctx.keys
  if keys.previous_reply ~= keys.reply then
    redis.call('DEL', keys.previous_reply)
  end
  for root in pairs(ctx.dropped) do
    redis.call('DEL', keys.members .. root)
  end
  for root, ids in pairs(ctx.added) do
    if ctx.persons[root] and #ids > 0 then
      local key = keys.members .. root
      if ctx.fresh[root] and not ctx.dropped[root] then
        redis.call('DEL', key) -- a stale key (the script never leaves one; cheap insurance)
      end
      redis.call('APPEND', key, record_codec.members_text(ids))
    end
  end

  for root in pairs(ctx.dirty) do
    local text = records.encode(ctx.persons[root], root, ctx)
    if text ~= ctx.values[root] then -- an event that changed nothing writes nothing
      union_find.put(ctx, root, text)
    end
  end
  local fields = {}
  for id in pairs(ctx.written) do
    fields[#fields + 1] = id
    fields[#fields + 1] = ctx.values[id]
  end
  for k = 1, #fields, 1000 do
    redis.call('HSET', keys.ids, unpack(fields, k, math.min(k + 999, #fields)))
  end
end

local function write_buffer(ctx)
  local prefix = ctx.keys.buffer
  for id, q in pairs(ctx.queues) do
    local key = prefix .. 'q:' .. id
    if q.cleared then
      redis.call('DEL', key)
      redis.call('ZREM', prefix .. 'due', id)
    end
    if #q.pushed > 0 then
      local ids = {}
      for k, pushed in ipairs(q.pushed) do
        ids[k] = pushed[1]
      end
      redis.call('RPUSH', key, unpack(ids))
      if q.stored == 0 then -- a new queue: due when its first entry has waited long enough
        local first = cjson.decode(q.pushed[1][2])[1]
        redis.call('ZADD', prefix .. 'due', tonumber(first) + ctx.config.buffer_delay_ms, id)
      end
    end
  end
  for entry_id, entry in pairs(ctx.entries_out) do
    redis.call('HSET', prefix .. 'e', entry_id, entry[1])
    redis.call('HSET', prefix .. 'p', entry_id, entry[2])
  end
  for entry_id, text in pairs(ctx.release_out) do
    redis.call('HSET', prefix .. 'r', entry_id, text)
  end
  for entry_id, deadline in pairs(ctx.pending_out) do
    if deadline then
      redis.call('ZADD', prefix .. 'pending', deadline, entry_id)
    else -- an expired lease whose entry was acknowledged meanwhile
      redis.call('ZREM', prefix .. 'pending', entry_id)
    end
  end
  if ctx.waiting_delta ~= 0 then
    redis.call('INCRBY', prefix .. 'n', ctx.waiting_delta)
  end
end

local function write_receipts(ctx)
  for bucket, args in pairs(ctx.receipts_out) do -- source, text, ... (receipts.lua)
    local key = ctx.keys.receipts .. bucket
    for k = 1, #args, 1000 do
      redis.call('HSET', key, unpack(args, k, math.min(k + 999, #args)))
    end
    redis.call('PEXPIRE', key, ctx.config.receipt_ttl_ms)
  end
end

function write_back.run(ctx, entries)
  write_union_find(ctx)
  write_buffer(ctx)
  groups.write(ctx)
  case_fold.write(ctx)
  write_receipts(ctx)
  local due = false
  if ctx.buffer_touched then
    due = round.next_due(ctx.keys.buffer)
  end
  local text = reply.whole(entries, ctx.released, due)
  if ctx.config.reply_ttl_ms > 0 then
    redis.call('SET', ctx.keys.reply, text, 'PX', ctx.config.reply_ttl_ms)
  end
  return text
end

return write_back
