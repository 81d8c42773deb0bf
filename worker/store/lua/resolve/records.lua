--[[
records.lua: person records, decoded once per call into ctx.persons (root -> person) and encoded
back by write_back.lua for every root of ctx.dirty (root -> true). The stored layout (format 9;
formats 7 and 6 still read) is record_codec.lua's.

A person table: person_id, person_id_bytes (its 16 bytes; nil: stored as text; false: not
made yet), implicit_root (the root at which its record was read implicit: its person id that
root's, record_codec.person_uuid), created_at /
created_at_text, last_seen / last_seen_text, identified, version / version_text, id_count,
spilled (the tree's ids are kept in the root's members string, union_find.lua), others_text
and others (the tree's ids other than the root as stored, and as an array once decoded:
record_codec.others_of), stored_members (a members string of the root exists in Redis), props
(the stored property states, record_codec.lua), meta and vals (false until decoded),
properties_size (bytes of the visible keys and texts, once vals is decoded), snapshot (the
visible properties as one JSON object text; false once properties changed) and layout (its
layout, record_codec.snapshot_of, once made by this call), properties_changed
(props and snapshot to be re-encoded). An event that changes no property costs no property
decoding at all: its reply takes the stored snapshot as is.

A format-6 record is migrated by the call that loads it: its meta and vals are decoded, its
members set read (and deleted at the end: ctx.dropped), and the root marked dirty, so the call
writes it back in format 9. A format-7 record is read as it is and written in format 9 when its
person changes (a person written back is always encoded in format 9).

records.load(ctx, root) -> person: decoded on first use; raises on an unreadable record.
records.create(ctx, id, person_id, ts, ts_text) -> person: a new person rooted at id.
records.seen_at(ctx, ts, ts_text) -> the last-seen time an event at ts gives its person, and
  its text: ts rounded down to a multiple of the last-seen resolution (ctx.config.last_seen_ms;
  worker/identity/timestamps.py, last_seen_at).
records.new_person(fields) -> person: a person table with the given fields.
records.vals_of(person) -> vals, decoded on first use (and properties_size computed).
records.meta_of(person) -> meta, decoded on first use.
records.snapshot(person) -> the visible properties as a JSON object text.
records.tenant(ctx) -> the call's raw tenant (from its ids key), or nil.
records.encode(person, root, ctx) -> the record text of person at root: implicit (no person id
  stored) when its person id is the one root creates.
]]
local records = {}

local function measure(person)
  local size = 0
  for key, text in pairs(person.vals) do
    size = size + #key + #text
  end
  person.properties_size = size
end

local function decode_properties(person)
  person.meta, person.vals = record_codec.decode_props(person.snapshot, person.props)
  measure(person)
end

local function migrate(ctx, root, person, fields)
  local meta, vals = cjson.decode(fields.meta_text), cjson.decode(fields.vals_text)
  person.legacy, person.meta_text, person.vals_text = false, nil, nil
  person.meta = type(meta) == 'table' and meta or {}
  person.vals = type(vals) == 'table' and vals or {}
  measure(person)
  person.properties_changed = true
  person.person_id_bytes = record_codec.person_id_bytes(person.person_id)
  local others = {}
  if person.id_count ~= 1 then
    for _, id in ipairs(redis.call('SMEMBERS', ctx.keys.members .. root)) do
      if id ~= root then
        others[#others + 1] = id
      end
    end
    ctx.dropped[root] = true -- the format-6 set goes
  end
  person.others, person.others_text, person.spilled = others, '', false
  ctx.dirty[root] = true
  if #others + 1 > record_codec.MEMBERS_INLINE then
    union_find.spill(ctx, root, person)
  end
end

-- The person id Python sent for id (ARGV: uuid5 of "<tenant>:<id>", worker/identity/ids.py),
-- when an op of the call names id: what record_codec.person_uuid computes, without its SHA-1.
-- Built once per call from ctx.ops; an id that deleted.rederive gave another person id
-- (ctx.deleted[id] truthy) is left out, as its op holds that other id now.
local function sent_person_id(ctx, id)
  local sent = ctx.sent_person_ids
  if sent == nil then
    sent = {}
    for _, op in ipairs(ctx.ops or {}) do
      sent[op.into] = op.into_person_id
      if op.other ~= '' then
        sent[op.other] = op.other_person_id
      end
    end
    ctx.sent_person_ids = sent
  end
  local person_id = sent[id]
  if person_id and not (ctx.deleted and ctx.deleted[id]) then
    return person_id
  end
  return nil
end

-- The person id that root creates (an implicit record's).
local function root_person_id(ctx, root)
  local person_id = sent_person_id(ctx, root)
  if person_id == nil then
    local tenant = records.tenant(ctx)
    person_id = tenant and record_codec.person_uuid(tenant, root)
  end
  return person_id
end

function records.tenant(ctx)
  local tenant = ctx.tenant
  if tenant == nil then
    tenant = record_codec.tenant_of(ctx.keys.ids) or false
    ctx.tenant = tenant
  end
  return tenant or nil
end

function records.load(ctx, root)
  local person = ctx.persons[root]
  if person then
    return person
  end
  person = { -- every field, so that the table is made at its size once
    person_id = false, person_id_bytes = false, created_at = 0, created_at_text = false,
    last_seen = 0, last_seen_text = false, identified = false, version = 0,
    version_text = false, id_count = 0, spilled = false, others_text = '', others = false,
    stored_members = false, props = '', meta = false, vals = false, properties_size = 0,
    snapshot = false, properties_changed = false, legacy = false, implicit = false,
    implicit_root = false,
  }
  if not record_codec.fill(person, ctx.values[root]) then
    error('resolve_batch: unreadable person record at ' .. root)
  end
  person.others = nil -- decoded on first use (record_codec.others_of)
  if person.implicit then
    person.person_id, person.implicit_root = root_person_id(ctx, root), root
    if not person.person_id then
      error('resolve_batch: unreadable person record at ' .. root)
    end
  end
  if person.created_at == nil or person.last_seen == nil then
    error('resolve_batch: unreadable person record at ' .. root)
  end
  person.stored_members = person.spilled
  ctx.persons[root] = person
  if person.legacy then
    migrate(ctx, root, person, person)
  end
  return person
end

function records.vals_of(person)
  if not person.vals then
    decode_properties(person)
  end
  return person.vals
end

function records.meta_of(person)
  if not person.meta then
    decode_properties(person)
  end
  return person.meta
end

function records.new_person(fields)
  return {
    person_id = fields.person_id,
    person_id_bytes = fields.person_id_bytes,
    created_at = fields.created_at,
    created_at_text = fields.created_at_text,
    last_seen = fields.last_seen,
    last_seen_text = fields.last_seen_text,
    identified = fields.identified,
    version = fields.version,
    version_text = fields.version_text,
    id_count = fields.id_count,
    spilled = fields.spilled,
    others_text = fields.others_text,
    others = fields.others,
    stored_members = fields.stored_members,
    props = '',
    meta = fields.meta,
    vals = fields.vals,
    properties_size = fields.properties_size,
    snapshot = fields.snapshot,
    properties_changed = true,
  }
end

function records.seen_at(ctx, ts, ts_text)
  local at = ts - ts % ctx.config.last_seen_ms
  if at == ts then
    return ts, ts_text
  end
  return at, string.format('%d', at)
end

function records.create(ctx, id, person_id, ts, ts_text)
  local last_seen, last_seen_text = records.seen_at(ctx, ts, ts_text)
  local person = { -- as records.new_person makes it, in one table
    person_id = person_id,
    person_id_bytes = false, -- made at write-back if the record is not implicit
    created_at = ts,
    created_at_text = ts_text,
    last_seen = last_seen,
    last_seen_text = last_seen_text,
    identified = false,
    version = 0,
    version_text = '0',
    id_count = 1,
    spilled = false,
    others_text = '',
    others = nil,
    stored_members = false,
    props = '',
    meta = {},
    vals = {},
    properties_size = 0,
    snapshot = '{}',
    properties_changed = true,
  }
  ctx.persons[id] = person
  ctx.dirty[id] = true
  union_find.put(ctx, id, 'R') -- a root; the record replaces this placeholder at the end
  return person
end

function records.snapshot(person)
  local snapshot = person.snapshot
  if not snapshot then
    snapshot, person.layout = record_codec.snapshot_of(records.vals_of(person))
    person.snapshot = snapshot
  end
  return snapshot
end

function records.encode(person, root, ctx)
  local implicit = person.implicit_root == root
  if not implicit then
    implicit = person.person_id == root_person_id(ctx, root)
    if implicit then
      person.implicit_root = root
    elseif person.person_id_bytes == false then
      person.person_id_bytes = record_codec.person_id_bytes(person.person_id)
    end
  end
  if person.properties_changed then
    person.snapshot, person.props = record_codec.encode_props(person.meta, person.vals,
      person.snapshot, person.layout)
    person.properties_changed = false
  end
  if person.others ~= nil and not person.spilled then -- decoded, so maybe changed
    person.others_text = record_codec.members_text(person.others)
  end
  return record_codec.encode(person, implicit)
end

return records
