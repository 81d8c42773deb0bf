--[[
group_argv.lua: reads the group section of one op (contract A9; docs/IDENTITY.md, "Groups"),
which follows the op's property triples (and comes before its source fields and a bufferable
op's extra fields, so a buffered entry keeps it). Raises on a malformed value.

group_argv.parse(src, at, index) -> groups, max_types, next: the section starting at `at`:
  g, the number of groups; then, when g > 0, the tenant's cap on group types, and g entries:
  group type, group key, the key's canonical JSON text, flags (1 attach: the event belongs to the
  group; 2 remember: the person's membership of the type becomes the key), number of property
  operations k, then k triples (code, key, text) as the op's own (argv.lua).
  groups is a list of { type, key, key_text, attach, remember, props } (props flat, as an op's:
  argv.lua).
group_argv.NONE: the groups of an op without any (one table shared by all, never changed).
]]
local group_argv = {}

-- The groups of an op without any (shared: never changed).
group_argv.NONE = {}

local function bad(what)
  error('resolve_batch: bad ARGV: ' .. what)
end

function group_argv.parse(src, at, index)
  local count = tonumber(src[at])
  if count == nil then
    bad('group count of op ' .. index)
  end
  at = at + 1
  local groups, max_types = group_argv.NONE, 0
  if count > 0 then
    groups = {}
    max_types = tonumber(src[at])
    if max_types == nil then
      bad('group type cap of op ' .. index)
    end
    at = at + 1
  end
  for j = 1, count do
    local flags, nprops = tonumber(src[at + 3]), tonumber(src[at + 4])
    if src[at] == nil or src[at + 1] == nil or src[at + 2] == nil or flags == nil
        or flags < 0 or flags > 3 or nprops == nil then
      bad('group ' .. j .. ' of op ' .. index)
    end
    local group = {
      type = src[at], key = src[at + 1], key_text = src[at + 2],
      attach = flags % 2 == 1, remember = flags >= 2, props = {},
    }
    at = at + 5
    for k = 1, nprops do
      if src[at] == nil or src[at + 1] == nil or src[at + 2] == nil then
        bad('property operation ' .. k .. ' of group ' .. j .. ' of op ' .. index)
      end
      local props, n = group.props, k * 3
      props[n - 2], props[n - 1], props[n] = src[at], src[at + 1], src[at + 2]
      at = at + 3
    end
    groups[j] = group
  end
  return groups, max_types, at
end

return group_argv
