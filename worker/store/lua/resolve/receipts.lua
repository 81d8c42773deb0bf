--[[
receipts.lua: replay receipts (docs/IDENTITY.md, "Replays"). An op read from ARGV with a source
(its input message's position) is answered once: its reply entry, and the entry ids of the
buffered entries it released, are kept as its receipt in the hash ctx.keys.receipts .. bucket
(field: the source; bucket: Python's keys.receipt_bucket, one hash per input partition and
offset range). A later op with the same source (a replayed batch) gets the kept entry back and
applies nothing: no property change, no buffering, no release; the entries it released that are
still leased are returned again (buffer.release_again), and, with the buffer on, the reply
reports the tenant's next due time again (its first report may have been lost with the worker
that made it). Receipts are dropped by the store's
forget (after the input offsets are committed) and, failing that, by the hash's TTL
(receipt_ttl_ms, refreshed on every write to it).

A receipt's text: the reply entry alone when the op released nothing (the entry string itself
is written: no copy is made), else the reply entry, a newline, then the released entry ids as a
cjson array. A reply entry never holds a raw newline (its strings are JSON), so the first newline
ends the entry. (Receipts written before, as the entry and a newline then nothing or the ids,
read the same.)

receipts.read(ctx) -> answering: reads the receipts of every op of ctx.ops with a source (one
  HMGET per bucket, kept in ctx.receipts_in: bucket -> { source -> text or false }); answering
  is false when no op of the call can be answered from a receipt (none was found and no source
  comes twice: the common case), so that receipts.answer need not be called.
receipts.answer(ctx, op) -> the kept reply entry of op's source, or nil (no source, or none kept).
  Reads the receipts (receipts.read) if that was not done.
receipts.keep(ctx, op, entry, first): keeps entry, and the ids of ctx.released_ids from index
  first on, as op's receipt (when op has a source): in ctx.receipts_in (a later op of the call
  with the same source is answered from it) and in ctx.receipts_out (bucket -> { source, text,
  source, text, ... }: the HSET arguments), which write_back.lua writes.
]]
local receipts = {}

-- The receipts of every sourced op of the call, read at the first: one HMGET per bucket.
local function read_all(ctx)
  local wanted, order = {}, {}
  local ops = ctx.ops
  for k = 1, #ops do -- (not ipairs: a C call per op less)
    local op = ops[k]
    if op.source ~= '' then
      local sources = wanted[op.bucket]
      if sources == nil then
        sources = {}
        wanted[op.bucket] = sources
        order[#order + 1] = op.bucket
      end
      sources[#sources + 1] = op.source
    end
  end
  local found, answering = {}, false
  for _, bucket in ipairs(order) do
    local sources, texts = wanted[bucket], {}
    for k = 1, #sources, 500 do
      local last = math.min(k + 499, #sources)
      local got = redis.call('HMGET', ctx.keys.receipts .. bucket, unpack(sources, k, last))
      for j = k, last do
        local source, text = sources[j], got[j - k + 1]
        if text or texts[source] ~= nil then -- a receipt, or a source met twice
          answering = true
        end
        texts[source] = text
      end
    end
    found[bucket] = texts
  end
  ctx.receipts_in = found
  return answering
end

function receipts.read(ctx)
  return read_all(ctx)
end

function receipts.answer(ctx, op)
  local source = op.source
  if source == '' then
    return nil
  end
  if ctx.receipts_in == nil then
    read_all(ctx)
  end
  local read = ctx.receipts_in[op.bucket]
  local text = read and read[source] -- (kept by an earlier op of the call, or read)
  if text == nil then -- an op not of ctx.ops (none today): read it alone
    text = redis.call('HGET', ctx.keys.receipts .. op.bucket, source)
  end
  if not text then
    return nil
  end
  local entry, ids = text, ''
  if string.find(text, '\n', 1, true) then
    entry, ids = string.match(text, '^([^\n]*)\n(.*)$')
    if entry == nil then
      error('resolve_batch: unreadable receipt for ' .. source)
    end
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
  local source = op.source
  if source == '' then
    return
  end
  local bucket = op.bucket
  local out = ctx.receipts_out[bucket]
  if out == nil then
    out = {}
    ctx.receipts_out[bucket] = out
  end
  local text = entry
  if first <= #ctx.released_ids then -- it released entries (else the entry alone: no copy)
    local ids = {}
    for k = first, #ctx.released_ids do
      ids[#ids + 1] = ctx.released_ids[k]
    end
    text = entry .. '\n' .. cjson.encode(ids)
  end
  local n = #out
  out[n + 1], out[n + 2] = source, text
  local read = ctx.receipts_in[bucket]
  if read == nil then -- (an op not of ctx.ops: none today)
    read = {}
    ctx.receipts_in[bucket] = read
  end
  read[source] = text -- a field read_all made (no new key)
end

return receipts
