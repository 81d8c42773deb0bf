--[[
reply.lua: the JSON texts of the reply, built by concatenation (no value is decoded).

reply.entry(fields) -> text: one reply entry, a JSON array of the fields in the order of
  PROTOCOL.reply_entry_fields. fields: person_id (text), person_mode (PROTOCOL.person_mode),
  created_at_ms (digits, or nil: null), is_identified, merged, person_created (booleans),
  properties (a JSON object text), warnings (array of PROTOCOL.warning names), overrides (array
  of {distinct_id, old_person_id, new_person_id}), person_version (digits, or nil: null),
  person_changed (boolean: the event created its person or moved its version).
reply.released(event_uuid, reason, ingested_ms, entry, released_ms, entry_id) -> text: a
  released entry, a JSON array in the order of PROTOCOL.released_entry_fields (entry is a
  reply.entry text; released_ms the time of its first release, digits).
reply.whole(entries, released, next_due) -> text: the reply, a JSON array of the entries (one per
  op), the released entries, and next_due: false when the call left the buffer as it was, else
  the earliest due time or lease deadline of the tenant's buffer (null when nothing waits).
reply.NONE: an empty array, for warnings or overrides.
]]
local reply = {}

local concat = table.concat

reply.NONE = {}

local function boolean(value)
  return value and 'true' or 'false'
end

local function quoted(text)
  return '"' .. text .. '"'
end

local function number_or_null(digits)
  return digits or 'null'
end

local function warnings(names)
  if #names == 0 then
    return '[]'
  end
  return '["' .. concat(names, '","') .. '"]'
end

local function overrides(list)
  local parts = {}
  for k, o in ipairs(list) do
    parts[k] = '[' .. cjson.encode(o[1]) .. ',"' .. o[2] .. '","' .. o[3] .. '"]'
  end
  return '[' .. concat(parts, ',') .. ']'
end

local function text(value)
  return value
end

local ENTRY_ENCODERS = {
  person_id = quoted,
  person_mode = quoted,
  created_at_ms = number_or_null,
  is_identified = boolean,
  properties = text,
  merged = boolean,
  person_created = boolean,
  warnings = warnings,
  overrides = overrides,
  person_version = number_or_null,
  person_changed = boolean,
  groups = function(value) return value or '{}' end,
  group_changes = function(value) return value or '[]' end,
}

local RELEASED_ENCODERS = {
  event_uuid = cjson.encode,
  reason = quoted,
  ingested_ms = text,
  entry = text,
  released_ms = text,
  entry_id = cjson.encode,
}

local function encode(names, encoders, fields)
  local parts = {}
  for k, name in ipairs(names) do
    parts[k] = encoders[name](fields[name])
  end
  return '[' .. concat(parts, ',') .. ']'
end

function reply.entry(fields)
  return encode(PROTOCOL.reply_entry_fields, ENTRY_ENCODERS, fields)
end

function reply.released(event_uuid, reason, ingested_ms, entry, released_ms, entry_id)
  return encode(PROTOCOL.released_entry_fields, RELEASED_ENCODERS, {
    event_uuid = event_uuid, reason = reason, ingested_ms = ingested_ms, entry = entry,
    released_ms = released_ms, entry_id = entry_id,
  })
end

function reply.whole(entries, released, next_due)
  local due = next_due == false and 'false' or number_or_null(next_due)
  return '[[' .. concat(entries, ',') .. '],[' .. concat(released, ',') .. '],' .. due .. ']'
end

return reply
