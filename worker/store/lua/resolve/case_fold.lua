--[[
case_fold.lua: the case-collision rule (docs/IDENTITY.md, "Case collisions";
worker/identity/reference.py, _case_collision, is the same). A distinct id that becomes known
(a person is created for it, or it joins one) and differs only by ASCII case from another known
id of the tenant gets the informational warning distinct_id_case_collision; it keeps its own
person all the same. Folding is string.lower: ASCII letters only, byte by byte (Redis runs Lua
in the C locale), as Python's ids.case_fold.

The hash ctx.keys.fold (<p>:{t}:fold) holds, as fields, lower(id) of every known id that is not
already lowercase (value "1"). So an id X has a known case variant iff
  lower(X) ~= X and (lower(X) is a known id (ctx.keys.ids) or a field of fold), or
  lower(X) == X and X is a field of fold.
Fields are only ever added (ids are never forgotten). Reads: one HGET of ids (union_find.get,
cached) and one HEXISTS of fold per new id (none when fold does not exist: one EXISTS per call),
cached in ctx.folds (fold -> true/false); new
fields wait in ctx.folds_out, written by write_back.lua (case_fold.write).

case_fold.collides(ctx, fresh) -> true when an id of fresh (the ids an op made known, in order)
  has a known case variant; each id counts as known for the ids after it.
case_fold.write(ctx): HSET of the new fold fields (500 per call).
]]
local case_fold = {}

local lower = string.lower

local function in_fold(ctx, folded)
  local known = ctx.folds[folded]
  if known == nil then
    if ctx.any_fold == nil then
      ctx.any_fold = redis.call('EXISTS', ctx.keys.fold) == 1
    end
    known = ctx.any_fold and redis.call('HEXISTS', ctx.keys.fold, folded) == 1
    ctx.folds[folded] = known
  end
  return known
end

function case_fold.collides(ctx, fresh)
  local hit = false
  for _, id in ipairs(fresh) do
    local folded = lower(id)
    if folded ~= id then
      if in_fold(ctx, folded) or union_find.get(ctx, folded) then
        hit = true
      end
      if not ctx.folds[folded] then
        ctx.folds[folded] = true
        ctx.folds_out[#ctx.folds_out + 1] = folded
      end
    elseif in_fold(ctx, id) then
      hit = true
    end
  end
  return hit
end

function case_fold.write(ctx)
  local out = ctx.folds_out
  for k = 1, #out, 500 do
    local args = {}
    for j = k, math.min(k + 499, #out) do
      args[#args + 1] = out[j]
      args[#args + 1] = '1'
    end
    redis.call('HSET', ctx.keys.fold, unpack(args))
  end
end

return case_fold
