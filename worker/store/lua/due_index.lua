#!lua
--[==[
due_index.lua: keeps one tenant's entry of the due-tenants index (<p>:buffer-due, a sorted set
tenant -> earliest due time or lease deadline of its buffer; worker/store/keys.py), from the
next_due a call of resolve_batch.lua returned.

KEYS: [1] <p>:buffer-due
ARGV: [1] tenant  [2] its next due time ("" when nothing waits or is leased)  [3] the call's now

An entry still in the future (score > now) was set by a call that may have run after the one
reporting now (new due times and leases are always later than the now of any call running at
the same time), so it is only ever lowered; an entry already due (or missing) is replaced by
what the call saw, or removed when nothing is left. So the index never misses a tenant with
something due; it may list one whose due entries were acknowledged meanwhile (a release call
then finds nothing and removes it).
]==]
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
local now = tonumber(ARGV[3])
if current and tonumber(current) > now then
  if ARGV[2] ~= '' and tonumber(ARGV[2]) < tonumber(current) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  end
  return 0
end
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
return 1
