--[[
groups.lua: the group rules (contract A9; worker/identity/groups.py is the same), run for each
applied op after the person rules, on three keys under ctx.keys.groups (the tenant's hash tag):
  <g>types     set: the tenant's group types
  <g>records   hash: group type .. "\0" .. group key -> cjson {m = meta, v = vals, n = version}
  <g>members   hash: person id -> cjson {m = meta, v = vals}: the person's memberships, one
               state per group type whose text is the group key's JSON text
meta and vals are those of a person record (records.lua), so group properties and memberships
are ordered and limited by properties.lua exactly as person properties (A4).

groups.apply(ctx, op, person) -> { groups = text, changes = text, warnings = {names} }: the
  op's groups (op.groups, op.max_group_types; group_argv.lua) applied: the type cap (warning
  group_type_limit), each group's property operations (warning group_properties_size when the
  size limit refuses them), and, with a person (full mode), its remembered memberships. groups
  is the JSON object {type: [key, properties]} of the event (the person's memberships overlaid
  by the op's attached groups), changes the JSON array of [type, key, version, properties] of
  each group the op changed. person is nil for a personless op.
groups.NOTHING: what groups.apply returns for an op without groups when the tenant has no group
  type (then ctx.no_group_types is true: set when the call reads the types, cleared when it adds
  one), so a caller can skip the call (read only).
groups.merge(ctx, into_person, other_person): A3.6, the memberships of other_person joined into
  into_person's (timestamp mode: the newer per type; arrival mode: into's win).
groups.write(ctx): every write of the group state (called by write_back.lua).
]]
local groups = {}

local concat = table.concat
local TYPE_LIMIT = PROTOCOL.warning.group_type_limit
local SIZE = PROTOCOL.warning.group_properties_size
local SET = PROTOCOL.code.set

local function state(ctx)
  local g = ctx.group_state
  if g == nil then
    g = { types = nil, type_count = 0, new_types = {}, records = {}, dirty = {},
      members = {}, members_dirty = {}, members_dropped = {} }
    ctx.group_state = g
  end
  return g
end

local function pseudo(meta, vals)
  local size = 0
  for key, text in pairs(vals) do
    size = size + #key + #text
  end
  return { meta = meta, vals = vals, properties_size = size, snapshot = false }
end

local function decoded(raw)
  if not raw then
    return {}, {}, 0
  end
  local value = cjson.decode(raw)
  local meta = type(value.m) == 'table' and value.m or {}
  local vals = type(value.v) == 'table' and value.v or {}
  return meta, vals, tonumber(value.n) or 0
end

local function types_of(ctx, g)
  if g.types == nil then
    g.types = {}
    for _, name in ipairs(redis.call('SMEMBERS', ctx.keys.groups .. 'types')) do
      g.types[name] = true
      g.type_count = g.type_count + 1
    end
    ctx.no_group_types = g.type_count == 0
  end
  return g.types
end

local function record_of(ctx, g, field)
  local record = g.records[field]
  if record == nil then
    local meta, vals, version = decoded(redis.call('HGET', ctx.keys.groups .. 'records', field))
    record = pseudo(meta, vals)
    record.version = version
    g.records[field] = record
  end
  return record
end

local function members_of(ctx, g, person_id)
  local m = g.members[person_id]
  if m == nil then
    local meta, vals = decoded(redis.call('HGET', ctx.keys.groups .. 'members', person_id))
    m = pseudo(meta, vals)
    g.members[person_id] = m
  end
  return m
end

-- What an op without groups gets when it has no memberships either (read only).
local NOTHING = { groups = '{}', changes = '[]', warnings = {} }
groups.NOTHING = NOTHING

function groups.apply(ctx, op, person)
  local g = ctx.group_state or state(ctx)
  local types = g.types or types_of(ctx, g) -- one SMEMBERS per call
  if #op.groups == 0 and (person == nil or g.type_count == 0) then
    return NOTHING -- the common case: no group, no membership to report
  end
  local out = { warnings = {} }
  local kept = {}
  if #op.groups > 0 then
    for _, group in ipairs(op.groups) do
      if not types[group.type] then
        if g.type_count >= op.max_group_types then
          out.warnings[#out.warnings + 1] = TYPE_LIMIT
        else
          types[group.type] = true
          g.type_count = g.type_count + 1
          ctx.no_group_types = false
          g.new_types[#g.new_types + 1] = group.type
          kept[#kept + 1] = group
        end
      else
        kept[#kept + 1] = group
      end
    end
  end

  local changes = {}
  for _, group in ipairs(kept) do
    if #group.props > 0 then
      local field = group.type .. '\0' .. group.key
      local record = record_of(ctx, g, field)
      local changed, refused = properties.update(ctx, record, { props = group.props, ord = op.ord })
      if refused then
        out.warnings[#out.warnings + 1] = SIZE
      elseif changed then
        record.version = record.version + 1
        g.dirty[field] = true
        changes[#changes + 1] = '[' .. cjson.encode(group.type) .. ',' .. group.key_text ..
          ',' .. record.version .. ',' .. records.snapshot(record) .. ']'
      end
    end
  end

  local keys = {} -- type -> key text
  if person and g.type_count > 0 then -- a tenant without group types has no memberships
    local m = members_of(ctx, g, person.person_id)
    local remembered = {}
    for _, group in ipairs(kept) do
      if group.remember then
        local n = #remembered
        remembered[n + 1], remembered[n + 2], remembered[n + 3] = SET, group.type, group.key_text
      end
    end
    if #remembered > 0 then
      -- memberships are not held to the properties size limit
      local unlimited = { config = { timestamp_mode = ctx.config.timestamp_mode,
        max_bytes = math.huge } }
      if properties.update(unlimited, m, { props = remembered, ord = op.ord }) then
        g.members_dirty[person.person_id] = true
      end
    end
    for t, text in pairs(m.vals) do
      keys[t] = text
    end
  end
  for _, group in ipairs(kept) do
    if group.attach then
      keys[group.type] = group.key_text
    end
  end
  local parts = {}
  for t, text in pairs(keys) do
    local key = cjson.decode(text)
    local field = t .. '\0' .. key
    local props = '{}'
    local record = g.records[field]
    if record == nil then
      record = record_of(ctx, g, field)
    end
    if next(record.vals) ~= nil then
      props = records.snapshot(record)
    end
    parts[#parts + 1] = cjson.encode(t) .. ':[' .. text .. ',' .. props .. ']'
  end
  out.groups = '{' .. concat(parts, ',') .. '}'
  out.changes = '[' .. concat(changes, ',') .. ']'
  return out
end

function groups.merge(ctx, into_person, other_person)
  local g = state(ctx)
  types_of(ctx, g)
  if g.type_count == 0 then
    return -- a tenant without group types has no memberships (the common case: no HGET)
  end
  local into_m = members_of(ctx, g, into_person.person_id)
  local other_m = members_of(ctx, g, other_person.person_id)
  if next(other_m.meta) == nil then
    return
  end
  local meta, vals = properties.join(ctx, into_m, other_m)
  g.members[into_person.person_id] = pseudo(meta, vals)
  g.members_dirty[into_person.person_id] = true
  g.members[other_person.person_id] = pseudo({}, {})
  g.members_dirty[other_person.person_id] = nil
  g.members_dropped[other_person.person_id] = true
end

function groups.write(ctx)
  local g = ctx.group_state
  if g == nil then
    return
  end
  local prefix = ctx.keys.groups
  if #g.new_types > 0 then
    redis.call('SADD', prefix .. 'types', unpack(g.new_types))
  end
  for field in pairs(g.dirty) do
    local r = g.records[field]
    redis.call('HSET', prefix .. 'records', field,
      cjson.encode({ m = r.meta, v = r.vals, n = r.version }))
  end
  for person_id in pairs(g.members_dropped) do
    if not g.members_dirty[person_id] then
      redis.call('HDEL', prefix .. 'members', person_id)
    end
  end
  for person_id in pairs(g.members_dirty) do
    local m = g.members[person_id]
    redis.call('HSET', prefix .. 'members', person_id, cjson.encode({ m = m.meta, v = m.vals }))
  end
end

return groups
