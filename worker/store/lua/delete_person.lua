#!lua
--[==[
delete_person.lua: contract A10, one person deleted atomically (docs/IDENTITY.md, "Deletion"):
its distinct ids (union-find entries, members key if any), its record (properties included),
its group memberships, the case-fold fields only its ids held, and the buffered events of its ids.

KEYS (all share the tenant's hash tag, see worker/store/keys.py, TenantKeys.delete_keys):
  [1] <p>:{t}:ids   [2] <p>:{t}:members:   [3] <p>:{t}:buf:   [4] <p>:{t}:g:
  [5] <p>:{t}:fold  [6] <p>:{t}:deleted
ARGV: [1] format version  [2] tenant (raw)  [3] the person-id uuid5 namespace (16 bytes)
  [4] a distinct id of the person  [5] the expected person id ("" for any)
Reply: false when no person holds the id (or it is not the expected person), else the JSON text
{"person_id": ..., "distinct_ids": [...], "buffered": n} (n: buffered events dropped).

Each deleted id's field of KEYS[6] becomes epoch "|" uuid5(tenant:id:epoch), epoch counting its
deletions (resolve/deleted.lua reads it): a person the id starts later is a new one.
Reads come first; a malformed record raises before anything is written.
]==]

--- @include "protocol"
--- @include "resolve/record_codec"

if ARGV[1] ~= PROTOCOL.format_version then
  error('delete_person: unknown format ' .. tostring(ARGV[1]))
end
local ids_key, members_prefix, buf, groups_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local fold_key, deleted_key = KEYS[5], KEYS[6]
local tenant, namespace, start, expected = ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local function uuid5(name)
  return record_codec.uuid5(namespace, name)
end

-- The root of start's tree and its record.
local root, value = record_codec.root_of(start, function(id)
  return redis.call('HGET', ids_key, id)
end, 'delete_person')
if root == nil then
  return false
end
local fields = record_codec.decode(value, root, tenant)
if fields == nil then
  error('delete_person: unreadable person record at ' .. root)
end
local person_id = fields.person_id
if expected ~= '' and expected ~= person_id then
  return false
end
local ids = record_codec.tree_ids(root, fields, function(kind)
  return redis.call(kind == 'set' and 'SMEMBERS' or 'GET', members_prefix .. root)
end)
local gone = {}
for _, id in ipairs(ids) do
  gone[id] = true
end

-- Buffered events of its ids: their queues, and the leased entries whose op names one of them.
local entry_ids = {}
for _, id in ipairs(ids) do
  for _, entry_id in ipairs(redis.call('LRANGE', buf .. 'q:' .. id, 0, -1)) do
    entry_ids[#entry_ids + 1] = entry_id
  end
end
local waiting = #entry_ids
local leased = redis.call('ZRANGE', buf .. 'pending', 0, -1)
if #leased > 0 then
  local entries = redis.call('HMGET', buf .. 'e', unpack(leased))
  for k, entry_id in ipairs(leased) do
    if entries[k] then
      local entry = cjson.decode(entries[k]) -- ingested, flags, into, into's id, other, ...
      if gone[entry[3]] or gone[entry[5]] then
        entry_ids[#entry_ids + 1] = entry_id
      end
    end
  end
end

-- Case folds: lower(id) of a deleted id that is not lowercase goes, unless a known id that
-- stays also has it (one HSCAN of the ids, only when such a fold exists).
local folds, any_fold = {}, false
for _, id in ipairs(ids) do
  local folded = string.lower(id)
  if folded ~= id then
    folds[folded], any_fold = true, true
  end
end
if any_fold then
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', ids_key, cursor, 'COUNT', 1000)
    cursor = page[1]
    for k = 1, #page[2], 2 do
      local id = page[2][k]
      local folded = string.lower(id)
      if not gone[id] and folded ~= id then
        folds[folded] = nil
      end
    end
  until cursor == '0'
end

-- The writes.
local epochs = redis.call('HMGET', deleted_key, unpack(ids))
for k, id in ipairs(ids) do
  local epoch = (epochs[k] and tonumber(string.match(epochs[k], '^(%d+)|')) or 0) + 1
  redis.call('HSET', deleted_key, id, epoch .. '|' .. uuid5(tenant .. ':' .. id .. ':' .. epoch))
  redis.call('HDEL', ids_key, id)
  redis.call('DEL', buf .. 'q:' .. id)
  redis.call('ZREM', buf .. 'due', id)
end
redis.call('DEL', members_prefix .. root)
redis.call('HDEL', groups_key .. 'members', person_id)
for folded in pairs(folds) do
  redis.call('HDEL', fold_key, folded)
end
if #entry_ids > 0 then
  for _, name in ipairs({ 'e', 'p', 'r' }) do
    redis.call('HDEL', buf .. name, unpack(entry_ids))
  end
  redis.call('ZREM', buf .. 'pending', unpack(entry_ids))
end
if waiting > 0 then
  redis.call('DECRBY', buf .. 'n', waiting)
end
return cjson.encode({ person_id = person_id, distinct_ids = ids, buffered = #entry_ids })
