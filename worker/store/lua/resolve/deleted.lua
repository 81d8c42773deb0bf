--[[
deleted.lua: ids deleted before (contract A10; delete_person.lua writes them). The hash
ctx.keys.deleted (<p>:{t}:deleted) maps each distinct id ever deleted to
  epoch "|" person id
epoch being how many times the id was deleted and person id uuid5(tenant:id:epoch)
(worker/identity/ids.py, person_id_for). Such an id creates, and its personless events carry,
that person id instead of the uuid5(tenant:id) Python put in ARGV, so a person it starts after
its deletion is a new one. Reads: one EXISTS of the hash per call (a tenant that never deleted
anyone, the common case, reads nothing more), else one HGET per id of an op, cached in
ctx.deleted (id -> person id, or false).

deleted.rederive(ctx, op): op.into_person_id and op.other_person_id replaced for deleted ids.
]]
local deleted = {}

local function person_id(ctx, id)
  local known = ctx.deleted[id]
  if known == nil and ctx.any_deleted == nil then
    ctx.any_deleted = redis.call('EXISTS', ctx.keys.deleted) == 1
  end
  if known == nil and not ctx.any_deleted then
    return false
  end
  if known == nil then
    local value = redis.call('HGET', ctx.keys.deleted, id)
    known = value and string.match(value, '^%d+|(.+)$') or false
    ctx.deleted[id] = known
  end
  return known
end

function deleted.rederive(ctx, op)
  if ctx.any_deleted == false then
    return -- the tenant never deleted anyone (the common case)
  end
  local into = person_id(ctx, op.into)
  if into then
    op.into_person_id = into
  end
  if op.other ~= '' then
    local other = person_id(ctx, op.other)
    if other then
      op.other_person_id = other
    end
  end
end

return deleted
