#!lua
--[==[
commit_batch.lua: applies the writes of one call that the worker's engine computed
(worker/store/engine/, docs/ARCHITECTURE.md, "Rules in the worker", step 3), if and only if
everything the engine read is still as it read it; else it writes nothing and refuses the call
with "IWSTALE" (the worker reads again and computes again). The store calls it for every call
when redis.rules is worker (redis_store.py); tests/integration/test_engine.py also commits
with it call by call and compares the data it leaves with the resolve script's.

KEYS: as resolve_batch.lua's ([1] ids, [2] members prefix, [3] this call's reply key, [4] a
reply of an earlier round to delete, [5] buffer prefix, [6] receipts prefix, [7] groups prefix,
[8] fold, [9] deleted, [10] optional: the reply key of this call's predecessor in its round).

ARGV: [1] format version, [2] reply TTL ms, [3] receipt TTL ms, [4] "1" when the reply reports
the next due time (the engine's buffer_touched), [5] the reply entries (a JSON array text),
[6] the released entries (a JSON array text), both empty when the worker keeps them itself (the
store does: then the reply, and the reply kept, is the next due time alone), then sections,
each a count and its items (worker/store/engine/commit.py writes them):
  checks of the ids hash: n, the n ids, a presence string (n times "1" or "0"), the n values
  checks of receipts: the number of receipt hashes, then each: bucket, then as the ids'
  other checks: quadruples kind, arg1, arg2, expected (kinds: PROTOCOL.check; in upper case
              when nothing was there)
  ids         pairs: id, value (HSET of the ids hash)
  members deleted, members appended (root, fresh "1"/"0", text), folds,
  receipts    the number of receipt hashes, then each: bucket, k, k pairs (source, text)
  group types, group records (field, text), group members (person id, text), group members
              deleted,
  queues cleared, queues pushed (id, n, n entry ids), due added (id, time), entries (entry id,
  entry, payload), releases (entry id, text), leases (entry id, deadline or "" to drop),
  then the waiting delta.
Writes are made in write_back.lua's order. Reply: [entries, released, next_due] as
resolve_batch.lua's (with ARGV[5] empty: next_due alone, "false", "null" or digits), kept at
KEYS[3] for the reply TTL (a retry gets it back; nothing is applied twice).
]==]

--- @include "protocol"
--- @include "resolve/round"

local ids_key, members_prefix, reply_key, previous_reply = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local buffer_prefix, receipts_prefix, groups_prefix = KEYS[5], KEYS[6], KEYS[7]
local fold_key, deleted_key = KEYS[8], KEYS[9]

local stored = round.kept(reply_key) or round.refusal(KEYS[10])
if stored then
  return stored
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

-- What the engine read, read again (the reads not of the ids or receipt hashes): kind
-- (PROTOCOL.check) -> function(arg1, arg2) -> the value as the worker encodes it
-- (worker/store/engine/commit.py), or false for nothing.
local CHECK = PROTOCOL.check
local READ = {
  [CHECK.members] = function(root) return redis.call('GET', members_prefix .. root) end,
  [CHECK.in_fold] = function(folded)
    return flag(redis.call('HEXISTS', fold_key, folded) == 1)
  end,
  [CHECK.any_fold] = function()
    return flag(redis.call('EXISTS', fold_key) == 1)
  end,
  [CHECK.any_deleted] = function()
    return flag(redis.call('EXISTS', deleted_key) == 1)
  end,
  [CHECK.deleted_person_id] = function(id)
    local value = redis.call('HGET', deleted_key, id)
    return value and string.match(value, '^%d+|(.+)$') or false
  end,
  [CHECK.group_types] = function()
    local types = redis.call('SMEMBERS', groups_prefix .. 'types')
    table.sort(types, bytewise)
    return members_text(types)
  end,
  [CHECK.group_record] = function(field)
    return redis.call('HGET', groups_prefix .. 'records', field)
  end,
  [CHECK.group_members] = function(person_id)
    return redis.call('HGET', groups_prefix .. 'members', person_id)
  end,
  [CHECK.has_queues] = function()
    return flag(redis.call('EXISTS', buffer_prefix .. 'due') == 1)
  end,
  [CHECK.queue] = function(id)
    return members_text(redis.call('LRANGE', buffer_prefix .. 'q:' .. id, 0, -1))
  end,
  [CHECK.waiting_count] = function()
    return tostring(tonumber(redis.call('GET', buffer_prefix .. 'n') or '0'))
  end,
  [CHECK.buffered_entry] = function(entry_id)
    return redis.call('HGET', buffer_prefix .. 'e', entry_id)
  end,
  [CHECK.first_release] = function(entry_id)
    return redis.call('HGET', buffer_prefix .. 'r', entry_id)
  end,
  [CHECK.leased] = function(entry_id)
    return flag(redis.call('ZSCORE', buffer_prefix .. 'pending', entry_id) ~= false)
  end,
  [CHECK.expired_leases] = function(now, limit)
    return members_text(redis.call('ZRANGEBYSCORE', buffer_prefix .. 'pending', '-inf', now,
      'LIMIT', 0, limit))
  end,
  [CHECK.due_ids] = function(now, limit)
    return members_text(redis.call('ZRANGEBYSCORE', buffer_prefix .. 'due', '-inf', now,
      'LIMIT', 0, limit))
  end,
}

-- The checks. The ids hash's and the receipt hashes', nearly all of them, come as a list of
-- fields, a presence string (one "1" or "0" per field: whether it was there) and their values,
-- read back with one HMGET per hash (of up to 500 fields) and compared without a table per
-- check; the others as (kind, arg1, arg2, expected), kind in upper case when nothing was there.
local function check_hash(key, what)
  local n = count()
  local fields, presence, values = at, at + n, at + n + 1
  at = at + 2 * n + 1
  for first = 0, n - 1, 500 do
    local last = math.min(first + 499, n - 1)
    local got = redis.call('HMGET', key, unpack(ARGV, fields + first, fields + last))
    for j = first, last do
      local value = got[j - first + 1]
      local present = string.byte(ARGV[presence], j + 1) == 49 -- "1"
      if (present and value ~= ARGV[values + j]) or (not present and value) then
        return 'IWSTALE ' .. what .. ' ' .. ARGV[fields + j] .. ' changed'
      end
    end
  end
  return nil
end

local stale = check_hash(ids_key, 'v')
if stale then
  return redis.error_reply(stale)
end
for _ = 1, count() do
  local bucket = ARGV[at]
  at = at + 1
  stale = check_hash(receipts_prefix .. bucket, 'r')
  if stale then
    return redis.error_reply(stale)
  end
end
for k = 1, count() do
  local kind, a, b, expected = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  at = at + 4
  local lower = string.lower(kind)
  local read = READ[lower]
  if read == nil or expected == nil then
    error('commit_batch: bad check ' .. k)
  end
  local absent = lower ~= kind
  local got = read(a, b)
  if (absent and got) or (not absent and got ~= expected) then
    return redis.error_reply('IWSTALE ' .. lower .. ' ' .. a .. ' changed')
  end
end

-- The writes, as write_back.lua makes them: each section read in place (its first index and
-- count; no table per item).
local function section(width)
  local n = count()
  local first = at
  at = at + n * width
  return first, n
end

local function hset_range(key, first, n) -- n (field, value) pairs from ARGV[first]
  for k = 0, n - 1, 500 do
    local last = math.min(k + 499, n - 1)
    redis.call('HSET', key, unpack(ARGV, first + 2 * k, first + 2 * last + 1))
  end
end

local ids_at, ids_n = section(2)
local deleted_at, deleted_n = section(1)
local appended_at, appended_n = section(3)
local folds_at, folds_n = section(1)
local receipt_buckets = {}
for _ = 1, count() do
  local bucket, n = ARGV[at], tonumber(ARGV[at + 1])
  receipt_buckets[#receipt_buckets + 1] = { bucket, at + 2, n }
  at = at + 2 + 2 * n
end
local types_at, types_n = section(1)
local records_at, records_n = section(2)
local gm_at, gm_n = section(2)
local gm_deleted_at, gm_deleted_n = section(1)
local cleared_at, cleared_n = section(1)
local pushed = {}
for _ = 1, count() do
  local n = tonumber(ARGV[at + 1])
  pushed[#pushed + 1] = { ARGV[at], at + 2, n }
  at = at + 2 + n
end
local due_at, due_n = section(2)
local entries_at, entries_n = section(3)
local releases_at, releases_n = section(2)
local leases_at, leases_n = section(2)
local waiting_delta = tonumber(ARGV[at])
if waiting_delta == nil or ARGV[at + 1] ~= nil then
  error('commit_batch: bad ARGV at ' .. at)
end

if previous_reply ~= reply_key then
  redis.call('DEL', previous_reply)
end
for k = 0, deleted_n - 1 do
  redis.call('DEL', members_prefix .. ARGV[deleted_at + k])
end
for k = 0, appended_n - 1 do
  local root, fresh, text = ARGV[appended_at + 3 * k], ARGV[appended_at + 3 * k + 1],
    ARGV[appended_at + 3 * k + 2]
  if fresh == '1' then
    redis.call('DEL', members_prefix .. root)
  end
  redis.call('APPEND', members_prefix .. root, text)
end
hset_range(ids_key, ids_at, ids_n)
for k = 0, cleared_n - 1 do
  redis.call('DEL', buffer_prefix .. 'q:' .. ARGV[cleared_at + k])
  redis.call('ZREM', buffer_prefix .. 'due', ARGV[cleared_at + k])
end
for _, item in ipairs(pushed) do
  local key = buffer_prefix .. 'q:' .. item[1]
  redis.call('RPUSH', key, unpack(ARGV, item[2], item[2] + item[3] - 1))
end
for k = 0, due_n - 1 do
  redis.call('ZADD', buffer_prefix .. 'due', ARGV[due_at + 2 * k + 1], ARGV[due_at + 2 * k])
end
for k = 0, entries_n - 1 do
  local entry_id = ARGV[entries_at + 3 * k]
  redis.call('HSET', buffer_prefix .. 'e', entry_id, ARGV[entries_at + 3 * k + 1])
  redis.call('HSET', buffer_prefix .. 'p', entry_id, ARGV[entries_at + 3 * k + 2])
end
if releases_n > 0 then
  hset_range(buffer_prefix .. 'r', releases_at, releases_n)
end
for k = 0, leases_n - 1 do
  local entry_id, deadline = ARGV[leases_at + 2 * k], ARGV[leases_at + 2 * k + 1]
  if deadline == '' then
    redis.call('ZREM', buffer_prefix .. 'pending', entry_id)
  else
    redis.call('ZADD', buffer_prefix .. 'pending', deadline, entry_id)
  end
end
if waiting_delta ~= 0 then
  redis.call('INCRBY', buffer_prefix .. 'n', waiting_delta)
end
if types_n > 0 then
  redis.call('SADD', groups_prefix .. 'types', unpack(ARGV, types_at, types_at + types_n - 1))
end
if records_n > 0 then
  hset_range(groups_prefix .. 'records', records_at, records_n)
end
for k = 0, gm_deleted_n - 1 do
  redis.call('HDEL', groups_prefix .. 'members', ARGV[gm_deleted_at + k])
end
if gm_n > 0 then
  hset_range(groups_prefix .. 'members', gm_at, gm_n)
end
for k = 0, folds_n - 1 do
  redis.call('HSET', fold_key, ARGV[folds_at + k], '1')
end
for _, item in ipairs(receipt_buckets) do
  hset_range(receipts_prefix .. item[1], item[2], item[3])
  redis.call('PEXPIRE', receipts_prefix .. item[1], ARGV[3])
end

local due = 'false'
if ARGV[4] == '1' then
  due = round.next_due(buffer_prefix) or 'null'
end
local text = due -- ARGV[5] empty: the worker holds the entries; the reply is the due time alone
if ARGV[5] ~= '' then
  text = '[' .. ARGV[5] .. ',' .. ARGV[6] .. ',' .. due .. ']'
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', reply_key, text, 'PX', ARGV[2])
end
return text
