#!lua flags=no-writes
--[==[
read_person.lua: the person holding a distinct id, read atomically (without path compression,
so it may run on a replica).

KEYS: [1] <p>:{t}:ids  [2] <p>:{t}:members:  (layout in resolve_batch.lua, resolve/union_find.lua
and resolve/records.lua; the members set KEYS[2] .. root shares the tenant's hash tag.)
ARGV: [1] distinct id
Reply: nil when no person holds the id, else {root, person record, SMEMBERS of the root} (the
set is empty for a root alone in its tree).
]==]

local node = ARGV[1]
local value = redis.call('HGET', KEYS[1], node)
if not value then
  return false
end
local hops = 0
while string.sub(value, 1, 1) == 'P' do
  node = string.sub(value, 2)
  value = redis.call('HGET', KEYS[1], node)
  hops = hops + 1
  if not value or hops > 100000 then
    error('read_person: broken parent chain at ' .. node)
  end
end
return { node, value, redis.call('SMEMBERS', KEYS[2] .. node) }
