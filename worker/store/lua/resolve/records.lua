--[[
records.lua: person records, decoded once per call into ctx.persons (root -> person) and encoded
back by write_back.lua for every root of ctx.dirty (root -> true).

A record (the value of a root in the ids hash):
  "R" person_id "|" created_at_ms "|" last_seen_ms "|" identified (1/0) "|" version "|"
      id_count "|" len(meta) "|" len(vals) "|" meta vals snapshot
id_count is the number of distinct ids of the tree; meta and vals are cjson objects of strings:
  meta: key -> op code .. order key   for every key with a state, tombstones included
  vals: key -> text                   for every visible key
(ordering.lua says what an order key is; text is the value's canonical JSON, made in Python).
snapshot is the visible properties as one JSON object text (the texts of vals spliced in), ready
for the reply: an event that changes no property costs no decoding at all; meta and vals are
decoded only when properties change. Lua never decodes a value: it stores, compares and
concatenates texts, so no float or big-integer precision is ever lost.

A person table: person_id, created_at / created_at_text, last_seen / last_seen_text,
identified, version / version_text, id_count, has_members_set (a members set exists in Redis),
meta and vals (false until decoded), meta_length, vals_length and tail (meta .. vals ..
snapshot as read), properties_size (bytes of the visible keys and texts, once vals is decoded),
snapshot (false once properties changed), properties_changed (meta and vals to be re-encoded).

records.load(ctx, root) -> person: decoded on first use; raises on an unreadable record.
records.create(ctx, id, person_id, ts, ts_text) -> person: a new person rooted at id.
records.new_person(fields) -> person: a person table with the given fields.
records.vals_of(person) -> vals, decoded on first use (and properties_size computed).
records.meta_of(person) -> meta, decoded on first use.
records.snapshot(person) -> the visible properties as a JSON object text.
records.encode(person) -> the record text.
]]
local records = {}

local sub, concat = string.sub, table.concat

function records.load(ctx, root)
  local person = ctx.persons[root]
  if person then
    return person
  end
  local person_id, created_at, last_seen, identified, version, id_count, meta_length,
      vals_length, tail = string.match(ctx.values[root],
        '^R([^|]*)|(-?%d+)|(-?%d+)|([01])|(%d+)|(%d+)|(%d+)|(%d+)|(.*)$')
  if person_id == nil then
    error('resolve_batch: unreadable person record at ' .. root)
  end
  person = {
    person_id = person_id,
    created_at = tonumber(created_at),
    created_at_text = created_at,
    last_seen = tonumber(last_seen),
    last_seen_text = last_seen,
    identified = identified == '1',
    version = tonumber(version),
    version_text = version,
    id_count = tonumber(id_count),
    has_members_set = id_count ~= '1',
    meta_length = tonumber(meta_length),
    vals_length = tonumber(vals_length),
    tail = tail,
    meta = false,
    vals = false,
    properties_size = 0,
    snapshot = sub(tail, meta_length + vals_length + 1),
    properties_changed = false,
  }
  ctx.persons[root] = person
  return person
end

function records.vals_of(person)
  local vals = person.vals
  if not vals then
    vals = cjson.decode(sub(person.tail, person.meta_length + 1,
      person.meta_length + person.vals_length))
    local size = 0
    for key, text in pairs(vals) do
      size = size + #key + #text
    end
    person.vals, person.properties_size = vals, size
  end
  return vals
end

function records.meta_of(person)
  if not person.meta then
    person.meta = cjson.decode(sub(person.tail, 1, person.meta_length))
  end
  return person.meta
end

function records.new_person(fields)
  return {
    person_id = fields.person_id,
    created_at = fields.created_at,
    created_at_text = fields.created_at_text,
    last_seen = fields.last_seen,
    last_seen_text = fields.last_seen_text,
    identified = fields.identified,
    version = fields.version,
    version_text = fields.version_text,
    id_count = fields.id_count,
    has_members_set = fields.has_members_set,
    meta = fields.meta,
    vals = fields.vals,
    properties_size = fields.properties_size,
    snapshot = fields.snapshot,
    properties_changed = true,
  }
end

function records.create(ctx, id, person_id, ts, ts_text)
  local person = records.new_person({
    person_id = person_id,
    created_at = ts,
    created_at_text = ts_text,
    last_seen = ts,
    last_seen_text = ts_text,
    identified = false,
    version = 0,
    version_text = '0',
    id_count = 1,
    has_members_set = false,
    meta = {},
    vals = {},
    properties_size = 0,
    snapshot = '{}',
  })
  ctx.persons[id] = person
  ctx.dirty[id] = true
  union_find.put(ctx, id, 'R') -- a root; the record replaces this placeholder at the end
  return person
end

function records.snapshot(person)
  local snapshot = person.snapshot
  if not snapshot then
    local parts = {}
    for key, text in pairs(records.vals_of(person)) do
      parts[#parts + 1] = cjson.encode(key) .. ':' .. text
    end
    snapshot = '{' .. concat(parts, ',') .. '}'
    person.snapshot = snapshot
  end
  return snapshot
end

function records.encode(person)
  local tail, meta_length, vals_length = person.tail, person.meta_length, person.vals_length
  if person.properties_changed then
    local meta, vals = cjson.encode(person.meta), cjson.encode(person.vals)
    tail, meta_length, vals_length = meta .. vals .. records.snapshot(person), #meta, #vals
  end
  return 'R' .. person.person_id .. '|' .. person.created_at_text .. '|' ..
    person.last_seen_text .. '|' .. (person.identified and '1' or '0') .. '|' ..
    person.version_text .. '|' .. person.id_count .. '|' .. meta_length .. '|' .. vals_length ..
    '|' .. tail
end

return records
