#!lua
--[==[
commit_batch.lua: applies the writes of one call that the worker's engine computed
(worker/store/engine/, docs/ARCHITECTURE.md, "Rules in the worker", step 3), if and only if
everything the engine read is still as it read it; else it writes nothing and refuses the call
with "IWSTALE" (the worker reads again and computes again). Not called by the worker yet:
tests/integration/test_engine.py commits with it and compares the data it leaves with the
resolve script's.

KEYS: as resolve_batch.lua's ([1] ids, [2] members prefix, [3] this call's reply key, [4] a
reply of an earlier round to delete, [5] buffer prefix, [6] receipts prefix, [7] groups prefix,
[8] fold, [9] deleted, [10] optional: the reply key of this call's predecessor in its round).

ARGV: [1] format version, [2] reply TTL ms, [3] receipt TTL ms, [4] "1" when the reply reports
the next due time (the engine's buffer_touched), [5] the reply entries (a JSON array text),
[6] the released entries (a JSON array text), then sections, each a count and its items:
  checks      4 values each: kind, arg1, arg2, expected (worker/store/engine/commit.py, CHECKS)
  ids         pairs: id, value (HSET of the ids hash)
  members deleted, members appended (root, fresh "1"/"0", text), folds,
  receipts    triples: bucket, source, text
  group types, group records (field, text), group members (person id, text), group members
              deleted,
  queues cleared, queues pushed (id, n, n entry ids), due added (id, time), entries (entry id,
  entry, payload), releases (entry id, text), leases (entry id, deadline or "" to drop),
  then the waiting delta.
Writes are made in write_back.lua's order. Reply: [entries, released, next_due] as
resolve_batch.lua's, kept at KEYS[3] for the reply TTL (a retry gets it back; nothing is applied
twice).
]==]

--- @include "protocol"

local ids_key, members_prefix, reply_key, previous_reply = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local buffer_prefix, receipts_prefix, groups_prefix = KEYS[5], KEYS[6], KEYS[7]
local fold_key, deleted_key = KEYS[8], KEYS[9]

local stored = redis.call('GET', reply_key)
if stored then
  return stored
end
if KEYS[10] and redis.call('EXISTS', KEYS[10]) == 0 then
  return redis.error_reply('IWCHAIN the previous call of this round did not run')
end
if ARGV[1] ~= PROTOCOL.format_version then
  return redis.error_reply('ERR commit_batch: format version ' .. tostring(ARGV[1]))
end

local at = 7

local function count()
  local n = tonumber(ARGV[at])
  if n == nil then
    error('commit_batch: bad ARGV at ' .. at)
  end
  at = at + 1
  return n
end

local function members_text(list)
  local parts = {}
  for k, item in ipairs(list) do
    parts[k] = #item .. ':' .. item
  end
  return table.concat(parts)
end

local function bytewise(x, y) -- Lua's < on strings follows the locale
  local n = math.min(#x, #y)
  for k = 1, n do
    local p, q = string.byte(x, k), string.byte(y, k)
    if p ~= q then
      return p < q
    end
  end
  return #x < #y
end

local function flag(value)
  return value and '1' or '0'
end

-- What the engine read, read again: kind -> function(arg1, arg2) -> the value as the worker
-- encodes it (worker/store/engine/commit.py), or false for nothing.
local READ = {
  v = function(id) return redis.call('HGET', ids_key, id) end,
  m = function(root) return redis.call('GET', members_prefix .. root) end,
  f = function(folded) return flag(redis.call('HEXISTS', fold_key, folded) == 1) end,
  d = function(id)
    local value = redis.call('HGET', deleted_key, id)
    return value and string.match(value, '^%d+|(.+)$') or false
  end,
  r = function(bucket, source) return redis.call('HGET', receipts_prefix .. bucket, source) end,
  t = function()
    local types = redis.call('SMEMBERS', groups_prefix .. 'types')
    table.sort(types, bytewise)
    return members_text(types)
  end,
  g = function(field) return redis.call('HGET', groups_prefix .. 'records', field) end,
  p = function(person_id) return redis.call('HGET', groups_prefix .. 'members', person_id) end,
  q = function() return flag(redis.call('EXISTS', buffer_prefix .. 'due') == 1) end,
  l = function(id)
    return members_text(redis.call('LRANGE', buffer_prefix .. 'q:' .. id, 0, -1))
  end,
  n = function() return tostring(tonumber(redis.call('GET', buffer_prefix .. 'n') or '0')) end,
  e = function(entry_id) return redis.call('HGET', buffer_prefix .. 'e', entry_id) end,
  o = function(entry_id) return redis.call('HGET', buffer_prefix .. 'r', entry_id) end,
  k = function(entry_id)
    return flag(redis.call('ZSCORE', buffer_prefix .. 'pending', entry_id) ~= false)
  end,
  x = function(now, limit)
    return members_text(redis.call('ZRANGEBYSCORE', buffer_prefix .. 'pending', '-inf', now,
      'LIMIT', 0, limit))
  end,
  y = function(now, limit)
    return members_text(redis.call('ZRANGEBYSCORE', buffer_prefix .. 'due', '-inf', now,
      'LIMIT', 0, limit))
  end,
}

-- The checks: expected "" with kind in upper case means nothing was there. The reads of the ids
-- hash and of the receipt hashes, most of them, are made with one HMGET per hash (of up to 500
-- fields); the others one command each.
local by_hash, hashes = {}, {} -- key -> { fields, expected, absent }
local function batched(key, field, expected, absent)
  local batch = by_hash[key]
  if batch == nil then
    batch = { fields = {}, expected = {}, absent = {} }
    by_hash[key] = batch
    hashes[#hashes + 1] = key
  end
  local n = #batch.fields + 1
  batch.fields[n], batch.expected[n], batch.absent[n] = field, expected, absent
end

for k = 1, count() do
  local kind, a, b, expected = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  at = at + 4
  if expected == nil then
    error('commit_batch: bad check ' .. k)
  end
  local absent = string.upper(kind) == kind
  local lower = string.lower(kind)
  if lower == 'v' then
    batched(ids_key, a, expected, absent)
  elseif lower == 'r' then
    batched(receipts_prefix .. a, b, expected, absent)
  else
    local read = READ[lower]
    if read == nil then
      error('commit_batch: bad check ' .. k)
    end
    local got = read(a, b)
    if (absent and got) or (not absent and got ~= expected) then
      return redis.error_reply('IWSTALE ' .. lower .. ' ' .. a .. ' changed')
    end
  end
end
for _, key in ipairs(hashes) do
  local batch = by_hash[key]
  local fields = batch.fields
  for first = 1, #fields, 500 do
    local last = math.min(first + 499, #fields)
    local got = redis.call('HMGET', key, unpack(fields, first, last))
    for j = first, last do
      local value = got[j - first + 1]
      if (batch.absent[j] and value) or (not batch.absent[j] and value ~= batch.expected[j]) then
        return redis.error_reply('IWSTALE ' .. (key == ids_key and 'v' or 'r') .. ' ' ..
          fields[j] .. ' changed')
      end
    end
  end
end

-- The writes, as write_back.lua makes them.
local function items(width)
  local list = {}
  for _ = 1, count() do
    list[#list + 1] = { unpack(ARGV, at, at + width - 1) }
    at = at + width
  end
  return list
end

local ids, members_deleted, members_appended = items(2), items(1), items(3)
local folds, receipts = items(1), items(3)
local group_types, group_records, group_members, group_members_deleted =
  items(1), items(2), items(2), items(1)
local queues_cleared = items(1)
local queues_pushed = {}
for _ = 1, count() do
  local id, n = ARGV[at], tonumber(ARGV[at + 1])
  queues_pushed[#queues_pushed + 1] = { id, { unpack(ARGV, at + 2, at + 1 + n) } }
  at = at + 2 + n
end
local due_added, entries_out, releases, leases = items(2), items(3), items(2), items(2)
local waiting_delta = tonumber(ARGV[at])
if waiting_delta == nil or ARGV[at + 1] ~= nil then
  error('commit_batch: bad ARGV at ' .. at)
end

if previous_reply ~= reply_key then
  redis.call('DEL', previous_reply)
end
for _, item in ipairs(members_deleted) do
  redis.call('DEL', members_prefix .. item[1])
end
for _, item in ipairs(members_appended) do
  if item[2] == '1' then
    redis.call('DEL', members_prefix .. item[1])
  end
  redis.call('APPEND', members_prefix .. item[1], item[3])
end
-- (HSETs of up to 500 fields)
local function hset_all(key, pairs_list, first_of, second_of)
  local args = {}
  for _, item in ipairs(pairs_list) do
    args[#args + 1] = item[first_of]
    args[#args + 1] = item[second_of]
    if #args == 1000 then
      redis.call('HSET', key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then
    redis.call('HSET', key, unpack(args))
  end
end
hset_all(ids_key, ids, 1, 2)
for _, item in ipairs(queues_cleared) do
  redis.call('DEL', buffer_prefix .. 'q:' .. item[1])
  redis.call('ZREM', buffer_prefix .. 'due', item[1])
end
for _, item in ipairs(queues_pushed) do
  redis.call('RPUSH', buffer_prefix .. 'q:' .. item[1], unpack(item[2]))
end
for _, item in ipairs(due_added) do
  redis.call('ZADD', buffer_prefix .. 'due', item[2], item[1])
end
for _, item in ipairs(entries_out) do
  redis.call('HSET', buffer_prefix .. 'e', item[1], item[2])
  redis.call('HSET', buffer_prefix .. 'p', item[1], item[3])
end
for _, item in ipairs(releases) do
  redis.call('HSET', buffer_prefix .. 'r', item[1], item[2])
end
for _, item in ipairs(leases) do
  if item[2] == '' then
    redis.call('ZREM', buffer_prefix .. 'pending', item[1])
  else
    redis.call('ZADD', buffer_prefix .. 'pending', item[2], item[1])
  end
end
if waiting_delta ~= 0 then
  redis.call('INCRBY', buffer_prefix .. 'n', waiting_delta)
end
for _, item in ipairs(group_types) do
  redis.call('SADD', groups_prefix .. 'types', item[1])
end
for _, item in ipairs(group_records) do
  redis.call('HSET', groups_prefix .. 'records', item[1], item[2])
end
for _, item in ipairs(group_members_deleted) do
  redis.call('HDEL', groups_prefix .. 'members', item[1])
end
for _, item in ipairs(group_members) do
  redis.call('HSET', groups_prefix .. 'members', item[1], item[2])
end
for _, item in ipairs(folds) do
  redis.call('HSET', fold_key, item[1], '1')
end
local by_bucket, buckets = {}, {}
for _, item in ipairs(receipts) do
  local list = by_bucket[item[1]]
  if list == nil then
    list = {}
    by_bucket[item[1]] = list
    buckets[#buckets + 1] = item[1]
  end
  list[#list + 1] = item
end
for _, bucket in ipairs(buckets) do
  hset_all(receipts_prefix .. bucket, by_bucket[bucket], 2, 3)
  redis.call('PEXPIRE', receipts_prefix .. bucket, ARGV[3])
end

local due = 'false'
if ARGV[4] == '1' then
  local first
  for _, name in ipairs({ 'due', 'pending' }) do
    local got = redis.call('ZRANGE', buffer_prefix .. name, 0, 0, 'WITHSCORES')
    if got[2] then
      local score = tonumber(got[2])
      if first == nil or score < first then
        first = score
      end
    end
  end
  due = first and string.format('%d', first) or 'null'
end
local text = '[' .. ARGV[5] .. ',' .. ARGV[6] .. ',' .. due .. ']'
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', reply_key, text, 'PX', ARGV[2])
end
return text
