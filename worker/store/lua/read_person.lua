#!lua flags=no-writes
--[==[
read_person.lua: persons read atomically for Python (without path compression, so it may run on
a replica), as text whatever the record's format (resolve/record_codec.lua: format 9, or formats
7 and 6 not migrated yet), so any client reads them, one that decodes responses too.

KEYS: [1] <p>:{t}:ids  [2] <p>:{t}:members:  (layout in resolve_batch.lua, resolve/union_find.lua
and resolve/record_codec.lua; the members key KEYS[2] .. root shares the tenant's hash tag.)
ARGV: [1] "id", [2] a distinct id: the person holding it.
  Reply: false when no person holds the id, else its view (record_codec.view, a JSON text).
ARGV: [1] "scan", [2] an HSCAN cursor of KEYS[1], [3] its COUNT: one page of the persons.
  Reply: { next cursor, view, view, ... } (a view per root of the page).
]==]

--- @include "protocol"
--- @include "resolve/record_codec"

local ids_key, members_prefix = KEYS[1], KEYS[2]
local tenant = record_codec.tenant_of(ids_key) -- an implicit record's person id is its root's

local function members_reader(root)
  local key = members_prefix .. root
  return function(kind)
    return redis.call(kind == 'set' and 'SMEMBERS' or 'GET', key)
  end
end

local function view(root, value)
  local fields = record_codec.decode(value, root, tenant)
  if fields == nil then
    error('read_person: unreadable person record at ' .. root)
  end
  return record_codec.view(root, fields, record_codec.tree_ids(root, fields, members_reader(root)))
end

if ARGV[1] == 'scan' then
  local page = redis.call('HSCAN', ids_key, ARGV[2], 'COUNT', ARGV[3])
  local out = { page[1] }
  for k = 1, #page[2], 2 do
    local value = page[2][k + 1]
    if record_codec.is_record(value) then
      out[#out + 1] = view(page[2][k], value)
    end
  end
  return out
end

local root, value = record_codec.root_of(ARGV[2], function(id)
  return redis.call('HGET', ids_key, id)
end, 'read_person')
if root == nil then
  return false
end
return view(root, value)
