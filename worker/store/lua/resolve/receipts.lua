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
  carries its partition "<topic>/<partition>" as its bucket: in the block of its partition and
  offset range, the string "=" .. partition .. "/" .. floor(offset / 4096), to which each call
  APPENDs its receipts (per op three lines: the source's "<offset>[#<i>]", the reply entry, the
  released entry ids as a cjson array or ""; a reply entry never holds a raw newline, its
  strings are JSON). The hash "=marks" holds per partition the last position applied (field
  partition, value "<offset>[#<i>]"): an op past its partition's mark is new, and no receipt is
  looked up for it; only an op at or before the mark (a replay, or a partition without a mark)
  reads its block (one GET per block and call). The sorted set "=forgotten" scores each
  partition by the last offset the store's forget dropped (the input through it is committed;
  read only for such an op, one ZSCORE per partition and call): the receipts of a block at or
  before it are forgotten, an op there is applied again, and its new receipt goes to the hash
  of its offset range ("<topic>/<partition>/<n>", field: the source), which forget clears by
  field; an op past it not found in its block is looked up there too (format 7 kept every
  receipt so: read through an upgrade). So a call that replays nothing reads one HMGET of
  marks, and writes one APPEND per block and an HSET of the marks.
- Any other source, whose bucket is "~" .. source: the hash of that name, field the source, the
  entry (and a newline and the released ids when it released some), as format 7 kept them all.
Blocks and hashes expire receipt_ttl_ms after their last write; the store's forget deletes them
once the offsets they hold are committed (the marks only expire).

receipts.answer(ctx, op) -> the kept reply entry of op's source, or nil (no source, or none kept).
receipts.keep(ctx, op, entry, first): keeps entry, and the ids of ctx.released_ids from index
  first on, as op's receipt (when op has a source). Written by receipts.write (from
  write_back.lua): ctx.receipts_out (bucket -> { source -> text }) for the other sources,
  ctx.blocks_out (block -> { lines }) and ctx.marks_out (partition -> position) for positions.
receipts.write(ctx): every receipt kept by the call, and the marks moved.
]]
local receipts = {}

local byte, sub, find, floor = string.byte, string.sub, string.find, math.floor
local concat = table.concat

local OTHER = byte('~') -- the bucket of a source that is no input position
local SLASH = byte('/')
local BLOCK_OFFSETS = PROTOCOL.receipt_block_offsets
local MARKS = PROTOCOL.receipt_marks
local FORGOTTEN = PROTOCOL.receipts_forgotten

local function bad_source(op)
  error('resolve_batch: bad ARGV: source ' .. op.source .. ' of bucket ' .. op.bucket)
end

-- A position's offset and element (-1 without "#") from its text "<offset>[#<i>]".
local function parse_position(text)
  local hash = find(text, '#', 1, true)
  if hash then
    return tonumber(sub(text, 1, hash - 1)), tonumber(sub(text, hash + 1))
  end
  return tonumber(text), -1
end

-- op.tail, op.offset, op.element of an op whose source is an input position.
local function locate(op)
  local tail = sub(op.source, #op.bucket + 2)
  local offset, element = parse_position(tail)
  if offset == nil or element == nil or byte(op.source, #op.bucket + 1) ~= SLASH
      or sub(op.source, 1, #op.bucket) ~= op.bucket then
    bad_source(op)
  end
  op.tail, op.offset, op.element = tail, offset, element
end

local function read_mark(text, field)
  if not text then
    return false
  end
  local offset, element = parse_position(text)
  if offset == nil or element == nil then
    error('resolve_batch: unreadable receipt mark ' .. field)
  end
  return { offset, element }
end

-- The marks of every partition of ctx.ops, read at the first op with a position: one HMGET.
-- ctx.marks: partition -> { offset, element } or false (no mark).
local function read_marks(ctx)
  local fields, seen = {}, {}
  for _, op in ipairs(ctx.ops) do
    if op.source ~= '' and byte(op.bucket, 1) ~= OTHER and not seen[op.bucket] then
      seen[op.bucket] = true
      fields[#fields + 1] = op.bucket
    end
  end
  local marks = {}
  for k = 1, #fields, 500 do
    local last = math.min(k + 499, #fields)
    local got = redis.call('HMGET', ctx.keys.receipts .. MARKS, unpack(fields, k, last))
    for j = k, last do
      marks[fields[j]] = read_mark(got[j - k + 1], fields[j])
    end
  end
  ctx.marks = marks
  return marks
end

local function past(op, mark)
  return op.offset > mark[1] or (op.offset == mark[1] and op.element > mark[2])
end

local function block_of(op)
  return '=' .. op.bucket .. '/' .. floor(op.offset / BLOCK_OFFSETS)
end

-- The hash of op's offset range (receipts of forgotten positions applied again; format 7's).
local function hash_of(op)
  return op.bucket .. '/' .. floor(op.offset / BLOCK_OFFSETS)
end

-- Whether op (at or before its partition's mark) is at or before its forgotten offset.
local function forgotten(ctx, op)
  local offset = ctx.forgotten[op.bucket]
  if offset == nil then
    local score = redis.call('ZSCORE', ctx.keys.receipts .. FORGOTTEN, op.bucket)
    offset = score and tonumber(score) or false
    ctx.forgotten[op.bucket] = offset
  end
  return offset and op.offset <= offset
end

-- The receipts of a block: tail -> { entry, ids }, read once per call.
local function block_in(ctx, block)
  local found = ctx.blocks_in[block]
  if found == nil then
    found = {}
    local text = redis.call('GET', ctx.keys.receipts .. block)
    if text then
      for tail, entry, ids in string.gmatch(text, '([^\n]*)\n([^\n]*)\n([^\n]*)\n') do
        found[tail] = { entry, ids }
      end
    end
    ctx.blocks_in[block] = found
  end
  return found
end

-- A receipt text of format 7 (or of a source that is no position): entry, ids.
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

-- The receipt of op in a hash (bucket: its name after ctx.keys.receipts): entry, ids; or nil.
local function find_in_hash(ctx, op, bucket)
  local kept = ctx.receipts_out[bucket] -- kept earlier in this call
  local text = kept and kept[op.source]
  if text == nil then
    text = redis.call('HGET', ctx.keys.receipts .. bucket, op.source)
  end
  if not text then
    return nil
  end
  return split_text(op, text)
end

-- The receipt of an op at or before its partition's mark: entry, ids; or nil.
local function find_kept(ctx, op)
  if forgotten(ctx, op) then
    return find_in_hash(ctx, op, hash_of(op))
  end
  local block = block_of(op)
  local lines = ctx.blocks_out[block] -- kept earlier in this call (the same source twice)
  if lines then
    for k = #lines - 2, 1, -3 do
      if lines[k] == op.tail then
        return lines[k + 1], lines[k + 2]
      end
    end
  end
  local got = block_in(ctx, block)[op.tail]
  if got then
    return got[1], got[2]
  end
  return find_in_hash(ctx, op, hash_of(op))
end

function receipts.answer(ctx, op)
  if op.source == '' then
    return nil
  end
  local entry, ids
  if byte(op.bucket, 1) == OTHER then
    entry, ids = find_in_hash(ctx, op, op.bucket)
  else
    locate(op)
    local mark = (ctx.marks or read_marks(ctx))[op.bucket]
    if mark and past(op, mark) then
      return nil -- the common case: a new event
    end
    op.replay = true -- at or before its mark: keep reads the forgotten offset too
    entry, ids = find_kept(ctx, op)
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
  if other or (op.replay and forgotten(ctx, op)) then
    local name = other and op.bucket or hash_of(op)
    local bucket = ctx.receipts_out[name]
    if bucket == nil then
      bucket = {}
      ctx.receipts_out[name] = bucket
    end
    bucket[op.source] = ids == '' and entry or entry .. '\n' .. ids
    if other then
      return
    end
  else
    local block = block_of(op)
    local lines = ctx.blocks_out[block]
    if lines == nil then
      lines = {}
      ctx.blocks_out[block] = lines
    end
    local n = #lines
    lines[n + 1], lines[n + 2], lines[n + 3] = op.tail, entry, ids
  end
  local mark = ctx.marks[op.bucket]
  if not mark or past(op, mark) then
    ctx.marks[op.bucket] = { op.offset, op.element }
    ctx.marks_out[op.bucket] = op.tail
  end
end

function receipts.write(ctx)
  local prefix, ttl = ctx.keys.receipts, ctx.config.receipt_ttl_ms
  for bucket, fields in pairs(ctx.receipts_out) do
    local key = prefix .. bucket
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
  for block, lines in pairs(ctx.blocks_out) do
    local key = prefix .. block
    lines[#lines + 1] = '' -- each record ends with a newline
    redis.call('APPEND', key, concat(lines, '\n'))
    redis.call('PEXPIRE', key, ttl)
  end
  local marks = {}
  for partition, tail in pairs(ctx.marks_out) do
    marks[#marks + 1] = partition
    marks[#marks + 1] = tail
  end
  if #marks > 0 then
    for k = 1, #marks, 1000 do
      redis.call('HSET', prefix .. MARKS, unpack(marks, k, math.min(k + 999, #marks)))
    end
    redis.call('PEXPIRE', prefix .. MARKS, ttl)
  end
end

return receipts
