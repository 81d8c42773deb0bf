--[[
argv.lua: reads ARGV into ctx.config and ctx.ops, and checks it. Raises (before anything is
written) on a malformed value.

argv.header(args) -> config: the 16 header values (layout in resolve_batch.lua's header):
  format_version, timestamp_mode (bool), max_ids, max_bytes, force_upgrade_ms, reply_ttl_ms,
  now (and now_text, as given), buffer_delay_ms, buffer_max_per_id, buffer_max_total,
  lease_ms, command, release_limit, receipt_ttl_ms, op_count, last_seen_ms (the last-seen
  resolution).
argv.parse_op(src, at, index, stored) -> op, next: one operation of src starting at index `at`
  (src is ARGV, or, with stored true, a buffered entry decoded from cjson, whose first value is
  its ingestion time and which has no source fields). An op read from ARGV also has source and
  bucket (its receipt's field and hash suffix, "" when it has no source). An op
  is { process, dangerous, merge, buffer, into, into_person_id, other, other_person_id, ts_text,
  ts, ord, props = { code, key, text, code, key, text, ... } (flat: no table per operation),
  groups, max_group_types } (the group section
  after the property triples: group_argv.lua), and a bufferable op (flag bufferable) also has
  fields (what its buffered entry keeps: flags without the bufferable bit, then its values up to
  the end of its group section), ingested, payload and entry_id. A merge of an id with itself
  is no merge.
argv.parse_ops(args, config) -> ops: the config.op_count ops that follow the header; raises
  when values are left over.
]]
local argv = {}

local tonumber = tonumber

local function bad(what)
  error('resolve_batch: bad ARGV: ' .. what)
end

local CODES = {}
for _, code in pairs(PROTOCOL.code) do
  CODES[code] = true
end

local function has_flag(flags, bit)
  return math.floor(flags / bit) % 2 == 1
end

-- The bits of a flags value: { process, dangerous, merge, buffer }.
local function bits_of(flags)
  local flag = PROTOCOL.flag
  return { has_flag(flags, flag.process_person), has_flag(flags, flag.merge_dangerously),
    has_flag(flags, flag.merge_with_other), has_flag(flags, flag.bufferable) }
end
-- The bits of each flags text met, filled on first use (a call meets a few values; building
-- them all when the script starts cost more than the ops' own reading of them). Only plain
-- forms are kept ("5", not "05"): at most max_flags + 1 entries, also in a library loaded once
-- and called many times (FCALL).
local FLAG_BITS = {}
local NO_PROPS = {}
-- The counts an op carries most (its property operations), read without tonumber (which goes
-- through strtod); any other text is read by tonumber.
local COUNT = { ['0'] = 0, ['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4 }

function argv.header(args)
  if args[1] ~= PROTOCOL.format_version then
    bad('unknown format ' .. tostring(args[1]))
  end
  local config = {
    format_version = args[1],
    timestamp_mode = args[2] == PROTOCOL.ordering.timestamp,
    max_ids = tonumber(args[3]),
    max_bytes = tonumber(args[4]),
    force_upgrade_ms = tonumber(args[5]),
    reply_ttl_ms = tonumber(args[6]),
    now = tonumber(args[7]),
    now_text = args[7],
    buffer_delay_ms = tonumber(args[8]),
    buffer_max_per_id = tonumber(args[9]),
    buffer_max_total = tonumber(args[10]),
    lease_ms = tonumber(args[11]),
    command = args[12],
    release_limit = tonumber(args[13]),
    receipt_ttl_ms = tonumber(args[14]),
    op_count = tonumber(args[15]),
    last_seen_ms = math.max(1, tonumber(args[16]) or -1),
  }
  if not config.timestamp_mode and args[2] ~= PROTOCOL.ordering.arrival then
    bad('ordering mode ' .. tostring(args[2]))
  end
  if not (config.max_ids and config.max_bytes and config.force_upgrade_ms and config.reply_ttl_ms
      and config.now and config.buffer_delay_ms and config.buffer_max_per_id
      and config.buffer_max_total and config.lease_ms and config.release_limit
      and config.receipt_ttl_ms and config.op_count and tonumber(args[16]))
      or (config.command ~= PROTOCOL.command.resolve
        and config.command ~= PROTOCOL.command.release) then
    bad('header')
  end
  return config
end

-- Reads the ops first..last of src, the first starting at index `at`, into ops[first..last];
-- returns the index after the last (one loop for a call's ops: no call per op).
local function read_ops(src, at, first, last, stored, ops)
  for index = first, last do
    local bits = FLAG_BITS[src[at]]
    local nprops = COUNT[src[at + 7]] or tonumber(src[at + 7])
    if bits == nil or nprops == nil then
      local flags = tonumber(src[at])
      if flags == nil or flags < 0 or flags > PROTOCOL.max_flags or nprops == nil then
        bad('op ' .. index)
      end
      bits = bits_of(flags) -- a value met first here, or not in its plain form ("05")
      if tostring(flags) == src[at] then
        FLAG_BITS[src[at]] = bits
      end
    end
    local into, other, ts_text, ord = src[at + 1], src[at + 3], src[at + 5], src[at + 6]
    local ts = tonumber(ts_text)
    if ts == nil or into == nil or ord == nil then
      bad('op ' .. index)
    end
    local op = {
      process = bits[1],
      dangerous = bits[2],
      -- never a self-loop (the stateless rules already made this no merge)
      merge = bits[3] and other ~= into,
      buffer = bits[4],
      into = into,
      into_person_id = src[at + 2],
      other = other,
      other_person_id = src[at + 4],
      ts_text = ts_text,
      ts = ts,
      ord = ord,
    }
    local op_at = at
    at = at + 8
    local props = NO_PROPS -- shared by the ops without property operations (never changed)
    if nprops > 0 then
      for j = 1, nprops do
        local k = at + j * 3
        if not CODES[src[k - 3]] or src[k - 1] == nil then
          bad('property operation ' .. j .. ' of op ' .. index)
        end
      end
      props = { unpack(src, at, at + nprops * 3 - 1) } -- one table, made at its size
      at = at + nprops * 3
    end
    op.props = props
    if src[at] == '0' then -- no group (the common case: no call)
      op.groups, op.max_group_types, at = group_argv.NONE, 0, at + 1
    else
      op.groups, op.max_group_types, at = group_argv.parse(src, at, index)
    end
    local props_end = at -- the op's own values end with its group section
    if not stored then
      local source, bucket = src[at], src[at + 1]
      if source == nil or bucket == nil then
        bad('source of op ' .. index)
      end
      op.source, op.bucket = source, bucket
      at = at + 2
    end
    if bits[4] then -- bufferable
      -- the entry kept while the event waits: its fields, flags without the bufferable bit
      local fields = { tostring(tonumber(src[op_at]) - PROTOCOL.flag.bufferable) }
      for k = op_at + 1, props_end - 1 do
        fields[#fields + 1] = src[k]
      end
      op.fields = fields
      op.ingested = src[at]
      op.payload = src[at + 1]
      op.entry_id = src[at + 2]
      if tonumber(op.ingested) == nil or op.payload == nil or op.entry_id == nil then
        bad('buffer fields of op ' .. index)
      end
      at = at + 3
    end
    ops[index] = op
  end
  return at
end

function argv.parse_op(src, at, index, stored)
  local one = {}
  at = read_ops(src, at, index, index, stored, one)
  return one[index], at
end

function argv.parse_ops(args, config)
  local ops = {}
  local at = read_ops(args, 17, 1, config.op_count, false, ops)
  if args[at] ~= nil then
    bad((#args - at + 1) .. ' unread values')
  end
  return ops
end

return argv
