--[[
receipts.lua: replay receipts (docs/IDENTITY.md, "Replays"). An op read from ARGV with a source
(its input message's position) is answered once: its reply entry, and the entry ids of the
buffered entries it released, are kept as its receipt. A later op with the same source (a
replayed batch) gets the kept entry back and applies nothing: no property change, no buffering,
no release; the entries it released that are still leased are returned again
(buffer.release_again), and, with the buffer on, the reply reports the tenant's next due time
again (its first report may have been lost with the worker that made it).

Where receipts are kept (worker/store/keys.py; ctx.keys.receipts is the tenant's "rcpt:"):
- An input position, source "<topic>/<partition>/<offset>" or ".../<offset>#<i>", whose op
  carries the bucket "<topic>/<partition>/<n>" (n = floor(offset / 4096), Python's
  keys.receipt_bucket): in the block "=" .. bucket, a string to which each call APPENDs its
  receipts (per op three lines: the source, the reply entry, the released entry ids as a
  cjson array or ""; a reply entry never holds a raw newline, its strings are JSON).
- The hash "=marks" holds per partition "<topic>/<partition>" the last source applied. A call
  reads the marks of its partitions (one HMGET) and compares each partition's first op with
  its mark: an op past the mark is new, and a call's ops of one partition come in offset order
  (one batch's, as the consumer delivers them; Python says so in the header, in_order), so
  when the first is past the mark every op of the partition is new and none is looked up or
  even parsed. Only a partition whose first op
  is at or before its mark (a replay, or no mark yet) has its ops compared one by one, and such
  an op reads its block (one GET per block and call).
- The sorted set "=forgotten" scores each partition by the last offset the store's forget
  dropped (the input through it is committed; read only for an op at or before its mark, one
  ZSCORE per partition and call): the receipts of a block at or before it are forgotten, an op
  there is applied again, and its new receipt goes to the hash of its offset range
  (the bucket's name, field: the source), which forget clears by field; an op past it not found
  in its block is looked up there too (format 7 kept every receipt so: read through an
  upgrade).
- Any other source, whose bucket is "~" .. source: the hash of that name, field the source, the
  entry (and a newline and the released ids when it released some), as format 7 kept them all.
So a call that replays nothing reads one HMGET of marks, and writes one APPEND per block, an
HSET of the marks and their PEXPIREs. Blocks and hashes expire receipt_ttl_ms after their last
write; the store's forget deletes blocks once the offsets they hold are committed.

receipts.answer(ctx, op) -> the kept reply entry of op's source, or nil (no source, or none kept).
receipts.keep(ctx, op, entry, first): keeps entry, and the ids of ctx.released_ids from index
  first on, as op's receipt (when op has a source). Written by receipts.write (from
  write_back.lua): ctx.receipts_out (hash name -> { source -> text }) for the sources kept by
  field, ctx.blocks_out (bucket -> { lines }) and the marks moved for positions.
receipts.write(ctx): every receipt kept by the call, and the marks moved.
]]
local receipts = {}

local byte, find = string.byte, string.find
local concat = table.concat

local OTHER = byte('~') -- the bucket of a source that is no input position
local MARKS = PROTOCOL.receipt_marks
local FORGOTTEN = PROTOCOL.receipts_forgotten

-- An input position's offset and element (-1 without "#") from its source, or nil. Parsed
-- only for a call's first op of each partition, and for the ops of a replay.
local function position_of(source)
  local offset, element = string.match(source, '/(%d+)#(%d+)$')
  if offset then
    return tonumber(offset), tonumber(element)
  end
  offset = string.match(source, '/(%d+)$')
  return offset and tonumber(offset), -1
end

local function past(offset, element, mark)
  return offset > mark[1] or (offset == mark[1] and element > mark[2])
end

-- The partition of a bucket "<topic>/<partition>/<n>" (cached per call).
local function partition_of(ctx, bucket)
  local partition = ctx.partitions[bucket]
  if partition == nil then
    partition = string.match(bucket, '^(.+)/%d+$')
    if partition == nil then
      error('resolve_batch: bad ARGV: receipt bucket ' .. bucket)
    end
    ctx.partitions[bucket] = partition
  end
  return partition
end

-- The call's view of its partitions, made at its first op with a position: ctx.marks
-- (partition -> { offset, element } or false), ctx.unseen (partition -> true when its first op
-- is past its mark: none of its ops is looked up), ctx.last_sources (partition -> the source
-- of its last op, the mark the call leaves when it is past the old one). One HMGET.
local function survey(ctx)
  local firsts, lasts, order = {}, {}, {}
  for _, op in ipairs(ctx.ops) do
    local bucket = op.bucket
    if op.source ~= '' and byte(bucket, 1) ~= OTHER then
      local partition = partition_of(ctx, bucket)
      if firsts[partition] == nil then
        firsts[partition] = op.source
        order[#order + 1] = partition
      end
      lasts[partition] = op.source
    end
  end
  local marks, unseen = {}, {}
  for k = 1, #order, 500 do
    local last = math.min(k + 499, #order)
    local got = redis.call('HMGET', ctx.keys.receipts .. MARKS, unpack(order, k, last))
    for j = k, last do
      local partition, text = order[j], got[j - k + 1]
      local mark = false
      if text then
        local offset, element = position_of(text)
        if offset == nil then
          error('resolve_batch: unreadable receipt mark of ' .. partition)
        end
        mark = { offset, element }
      end
      marks[partition] = mark
      local offset, element = position_of(firsts[partition])
      if offset == nil then
        error('resolve_batch: bad ARGV: source ' .. firsts[partition])
      end
      unseen[partition] = ctx.config.in_order and mark and past(offset, element, mark) or false
    end
  end
  ctx.marks, ctx.unseen, ctx.last_sources = marks, unseen, lasts
end

-- Whether an op at or before its mark is at or before its partition's forgotten offset.
local function forgotten(ctx, partition, offset)
  local at = ctx.forgotten[partition]
  if at == nil then
    local score = redis.call('ZSCORE', ctx.keys.receipts .. FORGOTTEN, partition)
    at = score and tonumber(score) or false
    ctx.forgotten[partition] = at
  end
  return at and offset <= at
end

-- The receipts of a block: source -> { entry, ids }, read once per call.
local function block_in(ctx, bucket)
  local found = ctx.blocks_in[bucket]
  if found == nil then
    found = {}
    local text = redis.call('GET', ctx.keys.receipts .. '=' .. bucket)
    if text then
      for source, entry, ids in string.gmatch(text, '([^\n]*)\n([^\n]*)\n([^\n]*)\n') do
        found[source] = { entry, ids }
      end
    end
    ctx.blocks_in[bucket] = found
  end
  return found
end

-- A receipt text kept by field: entry, ids.
local function split_text(op, text)
  if not find(text, '\n', 1, true) then
    return text, ''
  end
  local entry, ids = string.match(text, '^([^\n]*)\n(.*)$')
  if entry == nil then
    error('resolve_batch: unreadable receipt for ' .. op.source)
  end
  return entry, ids
end

-- The receipt of op kept by field in the hash ctx.keys.receipts .. name: entry, ids; or nil.
local function find_in_hash(ctx, op, name)
  local kept = ctx.receipts_out[name] -- kept earlier in this call
  local text = kept and kept[op.source]
  if text == nil then
    text = redis.call('HGET', ctx.keys.receipts .. name, op.source)
  end
  if not text then
    return nil
  end
  return split_text(op, text)
end

-- The receipt of an op at or before its mark: entry, ids; or nil. op.replay is set when the
-- op is at or before its forgotten offset (keep then keeps its receipt by field).
local function find_kept(ctx, op, partition)
  local offset = position_of(op.source)
  if offset == nil then
    error('resolve_batch: bad ARGV: source ' .. op.source)
  end
  if forgotten(ctx, partition, offset) then
    op.replay = true
    return find_in_hash(ctx, op, op.bucket)
  end
  local lines = ctx.blocks_out[op.bucket] -- kept earlier in this call (the same source twice)
  if lines then
    for k = #lines - 2, 1, -3 do
      if lines[k] == op.source then
        return lines[k + 1], lines[k + 2]
      end
    end
  end
  local got = block_in(ctx, op.bucket)[op.source]
  if got then
    return got[1], got[2]
  end
  return find_in_hash(ctx, op, op.bucket)
end

-- Whether op (at or before its partition's mark, in a partition not unseen) is past
-- the mark as the call's earlier ops moved it.
local function past_mark(ctx, op, partition)
  local mark = ctx.marks[partition]
  if not mark then
    return false
  end
  local offset, element = position_of(op.source)
  if offset == nil then
    error('resolve_batch: bad ARGV: source ' .. op.source)
  end
  return past(offset, element, mark)
end

function receipts.answer(ctx, op)
  if op.source == '' then
    return nil
  end
  local entry, ids
  if byte(op.bucket, 1) == OTHER then
    entry, ids = find_in_hash(ctx, op, op.bucket)
  else
    if ctx.unseen == nil then
      survey(ctx)
    end
    local partition = partition_of(ctx, op.bucket)
    if ctx.unseen[partition] or past_mark(ctx, op, partition) then
      return nil -- a new event (the common case: an unseen partition, nothing parsed)
    end
    entry, ids = find_kept(ctx, op, partition)
  end
  if entry == nil then
    return nil
  end
  if ctx.config.buffer_delay_ms > 0 then
    ctx.buffer_touched = true -- a replay reports the due time again (the first run's may be lost)
  end
  if ids ~= '' then
    for _, entry_id in ipairs(cjson.decode(ids)) do
      buffer.release_again(ctx, entry_id)
    end
  end
  return entry
end

function receipts.keep(ctx, op, entry, first)
  if op.source == '' then
    return
  end
  local ids = ''
  if first <= #ctx.released_ids then -- it released entries (rare)
    local released = {}
    for k = first, #ctx.released_ids do
      released[#released + 1] = ctx.released_ids[k]
    end
    ids = cjson.encode(released)
  end
  local other = byte(op.bucket, 1) == OTHER
  if other or op.replay then
    local bucket = ctx.receipts_out[op.bucket]
    if bucket == nil then
      bucket = {}
      ctx.receipts_out[op.bucket] = bucket
    end
    bucket[op.source] = ids == '' and entry or entry .. '\n' .. ids
  else
    local lines = ctx.blocks_out[op.bucket]
    if lines == nil then
      lines = {}
      ctx.blocks_out[op.bucket] = lines
    end
    local n = #lines
    lines[n + 1], lines[n + 2], lines[n + 3] = op.source, entry, ids
  end
  if not other and not ctx.unseen[partition_of(ctx, op.bucket)] then
    -- a partition replayed in part: the mark moves with each op past it
    local partition = partition_of(ctx, op.bucket)
    local offset, element = position_of(op.source)
    local mark = ctx.marks[partition]
    if not mark then
      ctx.marks[partition] = { offset, element }
      ctx.marks_out[partition] = op.source
    elseif past(offset, element, mark) then
      mark[1], mark[2] = offset, element
      ctx.marks_out[partition] = op.source
    end
  end
end

function receipts.write(ctx)
  local prefix, ttl = ctx.keys.receipts, ctx.config.receipt_ttl_ms
  for name, fields in pairs(ctx.receipts_out) do
    local key = prefix .. name
    local args = {}
    for source, text in pairs(fields) do
      args[#args + 1] = source
      args[#args + 1] = text
    end
    for k = 1, #args, 1000 do
      redis.call('HSET', key, unpack(args, k, math.min(k + 999, #args)))
    end
    redis.call('PEXPIRE', key, ttl)
  end
  for bucket, lines in pairs(ctx.blocks_out) do
    local key = prefix .. '=' .. bucket
    lines[#lines + 1] = '' -- each record ends with a newline
    redis.call('APPEND', key, concat(lines, '\n'))
    redis.call('PEXPIRE', key, ttl)
  end
  local marks = {}
  if ctx.unseen then
    for partition, source in pairs(ctx.last_sources) do
      if ctx.unseen[partition] then -- every op of it new: the mark is its last
        marks[#marks + 1] = partition
        marks[#marks + 1] = source
      end
    end
  end
  for partition, source in pairs(ctx.marks_out) do
    marks[#marks + 1] = partition
    marks[#marks + 1] = source
  end
  if #marks > 0 then
    for k = 1, #marks, 1000 do
      redis.call('HSET', prefix .. MARKS, unpack(marks, k, math.min(k + 999, #marks)))
    end
    redis.call('PEXPIRE', prefix .. MARKS, ttl)
  end
end

return receipts
