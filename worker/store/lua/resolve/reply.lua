--[[
reply.lua: the JSON texts of the reply, built by concatenation (no value is decoded).

reply.entry(person_id, person_mode, created_at_ms, is_identified, properties, merged,
    person_created, warnings, overrides, person_version, person_changed, groups, group_changes)
  -> text: one reply entry, a JSON array of its arguments, which are in the order of
  PROTOCOL.reply_entry_fields (positional, so no table is made per op): person_id (text),
  person_mode (PROTOCOL.person_mode), created_at_ms (digits, or nil: null), is_identified,
  merged, person_created (booleans), properties (a JSON object text), warnings (array of
  PROTOCOL.warning names), overrides (array of {distinct_id, old_person_id, new_person_id}),
  person_version (digits, or nil: null), person_changed (boolean: the event created its person
  or moved its version), groups (a JSON object text, or nil: {}), group_changes (a JSON array
  text, or nil: []).
reply.released(event_uuid, reason, ingested_ms, entry, released_ms, entry_id) -> text: a
  released entry, a JSON array in the order of PROTOCOL.released_entry_fields (entry is a
  reply.entry text; released_ms the time of its first release, digits).
reply.whole(entries, released, next_due) -> text: the reply, a JSON array of the entries (one per
  op), the released entries, and next_due: false when the call left the buffer as it was, else
  the earliest due time or lease deadline of the tenant's buffer (null when nothing waits).
  Changes entries[1] and entries[#entries] (the last use of entries).
reply.NONE: an empty array, for warnings or overrides.
]]
local reply = {}

local concat = table.concat

reply.NONE = {}

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

-- The entry's fields in the order reply.entry writes them; checked against PROTOCOL at load.
local ENTRY_ORDER = { 'person_id', 'person_mode', 'created_at_ms', 'is_identified',
  'properties', 'merged', 'person_created', 'warnings', 'overrides', 'person_version',
  'person_changed', 'groups', 'group_changes' }
if #ENTRY_ORDER ~= #PROTOCOL.reply_entry_fields then
  error('reply.lua: PROTOCOL.reply_entry_fields changed')
end
for k, name in ipairs(PROTOCOL.reply_entry_fields) do
  if ENTRY_ORDER[k] ~= name then
    error('reply.lua: PROTOCOL.reply_entry_fields changed')
  end
end

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

-- One concatenation (one string made), in the order of ENTRY_ORDER: an entry is made per op.
function reply.entry(person_id, person_mode, created_at_ms, is_identified, properties_text,
    merged, person_created, warning_names, override_list, person_version, person_changed,
    groups_text, group_changes)
  local overrides_text = #override_list == 0 and '[]' or overrides(override_list)
  return '["' .. person_id .. '","' .. person_mode .. '",' ..
    (created_at_ms or 'null') .. ',' .. (is_identified and 'true' or 'false') .. ',' ..
    properties_text .. ',' .. (merged and 'true' or 'false') .. ',' ..
    (person_created and 'true' or 'false') .. ',' ..
    (#warning_names == 0 and '[]' or warnings(warning_names)) .. ',' ..
    overrides_text .. ',' .. (person_version or 'null') .. ',' ..
    (person_changed and 'true' or 'false') .. ',' .. (groups_text or '{}') .. ',' ..
    (group_changes or '[]') .. ']'
end

function reply.released(event_uuid, reason, ingested_ms, entry, released_ms, entry_id)
  return encode(PROTOCOL.released_entry_fields, RELEASED_ENCODERS, {
    event_uuid = event_uuid, reason = reason, ingested_ms = ingested_ms, entry = entry,
    released_ms = released_ms, entry_id = entry_id,
  })
end

function reply.whole(entries, released, next_due)
  local due = next_due == false and 'false' or number_or_null(next_due)
  local n = #entries
  if n == 0 then
    return '[[],[' .. concat(released, ',') .. '],' .. due .. ']'
  end
  -- the text is joined once (not joined, then copied into the brackets): the brackets go
  -- onto the first and last entries, which entries then holds
  entries[1] = '[[' .. entries[1]
  entries[n] = entries[n] .. '],[' .. concat(released, ',') .. '],' .. due .. ']'
  return concat(entries, ',')
end

return reply
